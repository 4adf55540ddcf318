"""Replay a stored trajectory under a smaller budget or a different stop rule, without new tool calls.

Every stop decision of ``refine()`` depends only on the past, and every random choice is seeded by
(seed, sample, round, role). So a fresh run with ``max_rounds=b`` makes exactly the first rounds of a run
with a larger budget, and stops where the replay says. What can be replayed:

- ``max_rounds`` below the run's;
- ``threshold`` and ``patience``, and ``stop_on_pass``, whenever the new rule stops within the stored
  rounds, or the run itself ended for a reason the new rule shares (a budget, the critic, a tool failure).

What cannot: a rule that would have gone on past a round where the run stopped because of its own rule
(say, a higher threshold than the run's), and any change to the call, cost or time budgets. Those samples
are reported as not replayable, and ``ablate`` refuses rather than guess. A run driven by a controller, which
plans with its whole budget in view, is known only at budget 0 and at its own budget (and past it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Generic, TypeVar

from refine_agent.loop import LoopPolicy, best_round_index
from refine_agent.types import CallRecord, Round, StopReason, Trajectory, round_key

POLICY_REASONS = {StopReason.passed, StopReason.threshold, StopReason.patience}
# Decided after the round-limit check in refine(): at the last replayed round they become max_rounds.
# The critic's answer after a round: also decided after the round-limit check, and the round keeps its critique.
CRITIC_REASONS = {StopReason.critic_satisfied, StopReason.critic_gave_up, StopReason.critic_failed}
AFTER_ROUND_CHECK = {StopReason.max_rounds, StopReason.max_tool_calls, StopReason.max_seconds,
                     StopReason.max_cost} | CRITIC_REASONS


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


def rule_stop(last: Round, best: Round | None, policy: LoopPolicy) -> StopReason | None:
    """The same rules as refine()'s, applied to ``last``; ``best`` is the best round up to it (inclusive)."""
    v = last.verdict
    if v is None or not v.ok:
        return StopReason.judge_unsupported if v is not None and v.status == "unsupported" else StopReason.judge_failed
    if policy.stop_on_pass and v.passed:
        return StopReason.passed
    if policy.threshold is not None and v.overall is not None and v.overall >= policy.threshold:
        return StopReason.threshold
    if policy.patience is not None and best is not None and last.index - best.index >= policy.patience:
        return StopReason.patience
    return None


def _better(best: Round | None, rnd: Round) -> Round | None:
    """The running ``best_round_index``: the same order (round_key), kept round by round so a pass over the
    rounds stays linear in them."""
    if rnd.scored and (best is None or round_key(rnd) > round_key(best)):
        return rnd
    return best


def _stop(rnd: Round, best: Round | None, policy: LoopPolicy) -> StopReason | None:
    """Why any run, whatever its budget, stops right after ``rnd``: its edit failed, or the rule says so."""
    if rnd.image is None:  # the edit itself failed here; any run would fail the same way
        return StopReason.editor_failed
    return rule_stop(rnd, best, policy)


def _plan(traj: Trajectory, max_rounds: int, policy: LoopPolicy) -> tuple[int, StopReason, bool]:
    """Where a fresh run with ``max_rounds`` stops: its last round, the stop reason, and whether that round's
    critique was made (a critique comes after the round-limit check in refine())."""
    stored = traj.rounds
    end, reason, best = None, None, None
    for k, rnd in enumerate(stored):
        best = _better(best, rnd)
        stop = _stop(rnd, best, policy)
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
    if end == len(stored) - 1 and reason == traj.stop_reason and end < max_rounds:
        return end, reason, reason in CRITIC_REASONS
    return end, StopReason.max_rounds if reason in AFTER_ROUND_CHECK else reason, False


def replay(traj: Trajectory, max_rounds: int, policy: LoopPolicy | None = None,
           run_policy: LoopPolicy | None = None, *, run_budget: int | None = None) -> Replayed:
    """The trajectory a fresh run with ``max_rounds`` (and ``policy``, default the run's) would produce.

    The plain definition, round by round, with copies of the rounds; ``replay_budgets`` answers every budget
    at once from the same rules (and the tests hold the two to the same answers). ``run_budget``, the run's own
    ``max_rounds``, matters only for a controller run (see ``_replay_controller``)."""
    stored = traj.rounds
    run_policy = run_policy or LoopPolicy()
    policy = policy or run_policy
    if not stored:
        return Replayed([], None, traj.stop_reason)
    if traj.controller is not None:
        return _replay_controller(traj, max_rounds, run_budget)
    end, reason, keep_last_critique = _plan(traj, max_rounds, policy)
    rounds = [r.model_copy(deep=True) for r in stored[:end + 1]]
    calls = [c for r in rounds[:-1] for c in r.calls]
    last = rounds[-1]
    calls += [c for c in last.calls if keep_last_critique or c.kind != "critic"]
    if not keep_last_critique:
        last.critique = None
    return Replayed(rounds=rounds, best_round=best_round_index(rounds), stop_reason=reason, calls=calls)


@dataclass(frozen=True, slots=True)
class Cut:
    """What the metrics read of a replay (its kept round and what reaching it cost), without copying rounds."""

    best_round: int | None
    n_rounds: int
    calls_by_kind: dict[str, int]
    cost_usd: float
    tool_seconds: float


@dataclass(slots=True)
class _Tally:
    """Running totals of calls, in call order (so sums match ``Replayed``'s to the bit)."""

    calls: dict[str, int] = field(default_factory=lambda: {"editor": 0, "judge": 0, "critic": 0})
    cost_usd: float = 0.0
    seconds: float = 0.0

    def add(self, calls: Iterable[CallRecord]) -> None:
        for c in calls:
            self.calls[c.kind] = self.calls.get(c.kind, 0) + 1
            self.cost_usd += c.usage.cost_usd
            self.seconds += c.service_s

    def cut(self, best: int | None, n_rounds: int, last_calls: Iterable[CallRecord] = ()) -> Cut:
        """These totals plus ``last_calls``, as the cut after ``n_rounds`` rounds that keeps round ``best``."""
        t = _Tally(dict(self.calls), self.cost_usd, self.seconds)
        t.add(last_calls)
        return Cut(best, n_rounds, t.calls, t.cost_usd, t.seconds)


T = TypeVar("T")
U = TypeVar("U")


@dataclass(slots=True)
class PerBudget(Generic[T]):
    """A value for every budget at once: one per asked-for budget below ``settles``, and ``settled`` for every
    budget from ``settles`` on (past the first round where every run stops anyway, or past the stored rounds,
    a larger budget changes nothing)."""

    explicit: dict[int, T]
    settled: T
    settles: int

    def at(self, budget: int) -> T:
        return self.settled if budget >= self.settles else self.explicit[budget]

    def map(self, fn: Callable[[T], U]) -> PerBudget[U]:
        """``fn`` of every value, once each."""
        return PerBudget({b: fn(v) for b, v in self.explicit.items()}, fn(self.settled), self.settles)


Cuts = PerBudget[Cut | NotReplayable]  # a NotReplayable: why that budget cannot be replayed


def cut(traj: Trajectory, max_rounds: int, policy: LoopPolicy | None = None,
        run_policy: LoopPolicy | None = None, *, run_budget: int | None = None) -> Cut:
    """``replay(...)`` reduced to a ``Cut`` (one budget of ``replay_budgets``); raises ``NotReplayable``."""
    got = replay_budgets(traj, [max_rounds], policy, run_policy, run_budget=run_budget).at(max_rounds)
    if isinstance(got, NotReplayable):
        raise got
    return got


def _no_critique(calls: list[CallRecord]) -> list[CallRecord]:
    return [c for c in calls if c.kind != "critic"]


def replay_budgets(traj: Trajectory, budgets: Sequence[int], policy: LoopPolicy | None = None,
                   run_policy: LoopPolicy | None = None, *, run_budget: int | None = None) -> Cuts:
    """``traj`` at each of ``budgets`` (sorted; a ``range`` is fine, however long: it is only walked as far as
    the stored rounds), and at any budget past them, in one pass over its rounds: the work is linear in the
    stored rounds whatever the budgets. ``run_budget``: the run's own ``max_rounds``; a controller run is known
    only at budget 0 and from there on (see ``_replay_controller``)."""
    policy = policy or run_policy or LoopPolicy()
    stored = traj.rounds
    if not stored:
        return PerBudget({}, _Tally().cut(None, 0), 0)
    if traj.controller is not None:
        return _controller_budgets(traj, budgets, run_budget)
    explicit: dict[int, Cut | NotReplayable] = {}
    asked = iter(budgets)
    wanted = next(asked, None)  # the next asked-for budget not yet passed
    tally, best = _Tally(), None
    previous: Cut | None = None  # the cut at budget k - 1
    for k, rnd in enumerate(stored):
        best = _better(best, rnd)
        here = tally.cut(_index(best), k + 1, _no_critique(rnd.calls))
        if _stop(rnd, best, policy) is not None:
            # every budget from k on stops after round k, before its critique: refine() stops before asking
            return PerBudget(explicit, here, k)
        # budget k keeps rounds 0..k and drops round k's critique (refine() checks the round limit first)
        while wanted is not None and wanted < k:
            wanted = next(asked, None)
        if wanted == k:
            explicit[k] = here
        tally.add(rnd.calls)
        previous = here
    # Past the stored rounds every budget ends as the run did, with the last critique if the run's stop came
    # from it; unless the run stopped by its own rule, which the new one did not share.
    n, reason = len(stored), traj.stop_reason
    if reason in POLICY_REASONS:
        return PerBudget(explicit, _own_rule_stop(traj), n)
    if reason in CRITIC_REASONS:
        settled = tally.cut(_index(best), n)
    else:
        settled = previous
    if settled == previous:  # budget n - 1 already ends as the run did (no critique of its last round counts)
        explicit.pop(n - 1, None)
        return PerBudget(explicit, settled, n - 1)
    return PerBudget(explicit, settled, n)


def _index(rnd: Round | None) -> int | None:
    return None if rnd is None else rnd.index


def _own_rule_stop(traj: Trajectory) -> NotReplayable:
    end, reason = len(traj.rounds) - 1, traj.stop_reason
    return NotReplayable(f"sample {traj.sample_id} stopped at round {end} by the run's own rule ({reason.value}); "
                         "a rule that goes on from there needs a new run")


def _controller_known_from(traj: Trajectory, run_budget: int | None) -> int:
    """The smallest budget past 0 at which a controller run is known: its own (at least its last round)."""
    return max(len(traj.rounds) - 1, run_budget if run_budget is not None else 0)


def _controller_budgets(traj: Trajectory, budgets: Sequence[int], run_budget: int | None) -> Cuts:
    """A controller run at ``budgets``: round 0 at budget 0, the run itself from its own budget on, and not
    replayable between (asked-for controller budgets are a short list: 0 and the run's own)."""
    own = _controller_known_from(traj, run_budget)
    r0 = traj.rounds[0]
    one_shot = _Tally().cut(0 if r0.scored else None, 1, [c for c in r0.calls if c.kind in ("editor", "judge")])
    explicit: dict[int, Cut | NotReplayable] = {
        b: one_shot if b == 0 else _controller_unknown(traj) for b in takewhile(lambda b: b < own, budgets)}
    tally = _Tally()
    for r in traj.rounds:
        tally.add(r.calls)
    return PerBudget(explicit, tally.cut(traj.best_round, len(traj.rounds)), own)


def _controller_unknown(traj: Trajectory) -> NotReplayable:
    return NotReplayable(f"sample {traj.sample_id} was driven by the controller {traj.controller}, which plans with "
                         "its whole budget in view; only budget 0 and the run's own budget are known")


def _replay_controller(traj: Trajectory, max_rounds: int, run_budget: int | None = None) -> Replayed:
    """A controller plans with its whole budget in view, so only two budgets are known: the one-shot round 0,
    which it never touched, and the run itself (where its own choice of round stands): ``run_budget`` and up
    (when not given, from the last stored round on)."""
    if max_rounds >= _controller_known_from(traj, run_budget):
        calls = [c for r in traj.rounds for c in r.calls]
        return Replayed(rounds=list(traj.rounds), best_round=traj.best_round, stop_reason=traj.stop_reason,
                        calls=calls)
    if max_rounds == 0:
        r0 = traj.rounds[0].model_copy(deep=True)
        r0.critique = None
        calls = [c for c in r0.calls if c.kind in ("editor", "judge")]
        return Replayed(rounds=[r0], best_round=0 if r0.scored else None, stop_reason=StopReason.max_rounds,
                        calls=calls)
    raise _controller_unknown(traj)


def replayable_fields(run_policy: LoopPolicy) -> str:
    """A one-line statement of what can be replayed from a run with this policy."""
    return ("max_rounds (up to the run's), threshold, patience and stop_on_pass where the stored rounds "
            "decide them; candidates up to the run's at --max-rounds 0, else the run's own; not max_calls, max_cost "
            "or max_seconds")
