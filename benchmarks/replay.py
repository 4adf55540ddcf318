"""Replay a stored trajectory under a smaller budget or a different stop rule, without new tool calls.

Every stop decision of ``refine()`` depends only on the past, and every random choice is seeded by
(seed, sample, round, role). So a fresh run with ``max_rounds=b`` makes exactly the first rounds of a run
with a larger budget, and stops where the replay says. What can be replayed:

- ``max_rounds`` below the run's;
- ``threshold`` and ``patience``, and ``stop_on_pass``, whenever the new rule stops within the stored
  rounds, or the run itself ended for a reason the new rule shares (a budget, the critic, a tool failure).

What cannot: a rule that would have gone on past a round where the run stopped because of its own rule
(say, a higher threshold than the run's), and any change to the call, cost or time budgets. Those samples
are reported as not replayable, and ``ablate`` refuses rather than guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from refine_agent.loop import LoopPolicy, best_round_index
from refine_agent.types import CallRecord, Round, StopReason, Trajectory

POLICY_REASONS = {StopReason.passed, StopReason.threshold, StopReason.patience}
# Decided after the round-limit check in refine(): at the last replayed round they become max_rounds.
AFTER_ROUND_CHECK = {StopReason.max_rounds, StopReason.max_tool_calls, StopReason.max_seconds,
                     StopReason.max_cost, StopReason.critic_satisfied, StopReason.critic_failed}


class NotReplayable(Exception):
    """The stored run cannot tell what the new rule would have done."""


@dataclass
class Replayed:
    rounds: list[Round]
    best_round: int | None
    stop_reason: StopReason
    calls: list[CallRecord] = field(default_factory=list)

    @property
    def calls_by_kind(self) -> dict[str, int]:
        out = {"editor": 0, "judge": 0, "critic": 0}
        for c in self.calls:
            out[c.kind] = out.get(c.kind, 0) + 1
        return out

    @property
    def cost_usd(self) -> float:
        return sum(c.usage.cost_usd for c in self.calls)

    @property
    def tool_seconds(self) -> float:
        """Time the calls held a tool (service time, without queueing); calls served from the cache count 0."""
        return sum(c.service_s for c in self.calls)


def _policy_stop(rounds: list[Round], policy: LoopPolicy) -> StopReason | None:
    """The same rules as refine()'s, applied to the last of ``rounds``."""
    last = rounds[-1]
    v = last.verdict
    if v is None or not v.ok:
        return StopReason.judge_unsupported if v is not None and v.status == "unsupported" else StopReason.judge_failed
    if policy.stop_on_pass and v.passed:
        return StopReason.passed
    if policy.threshold is not None and v.overall is not None and v.overall >= policy.threshold:
        return StopReason.threshold
    if policy.patience is not None:
        best = best_round_index(rounds)
        if best is not None and last.index - best >= policy.patience:
            return StopReason.patience
    return None


def replay(traj: Trajectory, max_rounds: int, policy: LoopPolicy | None = None,
           run_policy: LoopPolicy | None = None) -> Replayed:
    """The trajectory a fresh run with ``max_rounds`` (and ``policy``, default the run's) would produce."""
    stored = traj.rounds
    run_policy = run_policy or LoopPolicy()
    policy = policy or run_policy
    if not stored:
        return Replayed([], None, traj.stop_reason)
    if traj.controller is not None:
        return _replay_controller(traj, max_rounds)
    end, reason = None, None
    for k, rnd in enumerate(stored):
        if rnd.image is None:  # the edit itself failed here; any run would fail the same way
            end, reason = k, StopReason.editor_failed
            break
        stop = _policy_stop(stored[:k + 1], policy)
        if stop is not None:
            end, reason = k, stop
            break
        if k + 1 > max_rounds:
            end, reason = k, StopReason.max_rounds
            break
    if end is None:  # the new rule never stopped within the stored rounds
        end = len(stored) - 1
        reason = traj.stop_reason
        if reason in POLICY_REASONS:
            raise NotReplayable(
                f"sample {traj.sample_id} stopped at round {end} by the run's own rule ({reason.value}); "
                "a rule that goes on from there needs a new run")
    assert reason is not None
    rounds = [r.model_copy(deep=True) for r in stored[:end + 1]]
    if end == len(stored) - 1 and reason == traj.stop_reason and end < max_rounds:
        keep_last_critique = reason in (StopReason.critic_satisfied, StopReason.critic_failed)
    else:
        keep_last_critique = False
        if reason in AFTER_ROUND_CHECK:
            reason = StopReason.max_rounds
    calls = [c for r in rounds[:-1] for c in r.calls]
    last = rounds[-1]
    calls += [c for c in last.calls if keep_last_critique or c.kind != "critic"]
    if not keep_last_critique:
        last.critique = None
    return Replayed(rounds=rounds, best_round=best_round_index(rounds), stop_reason=reason, calls=calls)


def _replay_controller(traj: Trajectory, max_rounds: int) -> Replayed:
    """A controller plans with its whole budget in view, so only two budgets are known: the one-shot round 0,
    which it never touched, and the run itself (where its own choice of round stands)."""
    last = len(traj.rounds) - 1
    if max_rounds >= last:
        calls = [c for r in traj.rounds for c in r.calls]
        return Replayed(rounds=list(traj.rounds), best_round=traj.best_round, stop_reason=traj.stop_reason,
                        calls=calls)
    if max_rounds == 0:
        r0 = traj.rounds[0].model_copy(deep=True)
        r0.critique = None
        calls = [c for c in r0.calls if c.kind in ("editor", "judge")]
        return Replayed(rounds=[r0], best_round=0 if r0.scored else None, stop_reason=StopReason.max_rounds,
                        calls=calls)
    raise NotReplayable(f"sample {traj.sample_id} was driven by the controller {traj.controller}, which plans with its "
                        "whole budget in view; only budget 0 and the run's own budget are known")


def replayable_fields(run_policy: LoopPolicy) -> str:
    """A one-line statement of what can be replayed from a run with this policy."""
    return ("max_rounds (up to the run's), threshold, patience and stop_on_pass where the stored rounds "
            "decide them; not max_calls, max_cost or max_seconds")
