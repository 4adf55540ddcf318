"""Best-of-N rounds (``policy.candidates``): seeds, choice, records, budgets and failures, under the real loop."""

from __future__ import annotations

from typing import ClassVar

import pytest
from refine_agent.tools.editors.sim import SimEditor
from refine_agent.tools.synthetic.generate import iter_samples

from refine_agent import Budget, LoopPolicy, Runtime, refine
from refine_agent.budget import CallLimits
from refine_agent.config import validate_config
from refine_agent.errors import ConfigError, ToolUnavailableError
from refine_agent.loop import derive_seed
from refine_agent.registry import create_tool
from refine_agent.types import EditRequest, EditResult, JudgeRequest, StopReason, Trajectory, Usage, Verdict

SAMPLES = list(iter_samples(12, seed=5))


async def run(sample_index: int = 0, *, width: int, max_rounds: int = 0, editor: object = None, judge: object = None,
              max_calls: dict[str, int] | None = None, stop_on_pass: bool = True,
              max_cost: float | None = None) -> Trajectory:
    s = SAMPLES[sample_index]
    result = await refine(s.image(), s.instruction, editor=editor or create_tool("editor", "sim", {}),
                          judge=judge or create_tool("judge", "verify", {"noise": 0.5}),
                          critic=create_tool("critic", "rule", {}), sample_id=s.id, seed=3,
                          budget=Budget(max_rounds=max_rounds, max_calls=CallLimits(**(max_calls or {})),
                                        max_cost=max_cost),
                          policy=LoopPolicy(candidates=width, stop_on_pass=stop_on_pass), runtime=Runtime())
    return result.trajectory


def signature(c: object) -> tuple:
    return (c.seed, c.image, c.verdict.model_dump() if c.verdict else None)  # type: ignore[attr-defined]


async def test_a_round_keeps_the_best_of_its_candidates_and_records_all() -> None:
    t = await run(width=6, stop_on_pass=False)
    r0 = t.rounds[0]
    assert [c.index for c in r0.candidates] == list(range(6))
    assert len({c.seed for c in r0.candidates}) == 6  # independent seeds
    best = max(r0.candidates, key=lambda c: (c.verdict.passed is True, c.verdict.overall, -c.index))
    assert r0.chosen == best.index
    assert (r0.seed, r0.image, r0.verdict) == (best.seed, best.image, best.verdict)
    # the round's calls and usage are all of its candidates'
    assert [c.kind for c in r0.calls].count("editor") == 6 and [c.kind for c in r0.calls].count("judge") == 6
    assert t.usage.calls == {"editor": 6, "judge": 6, "critic": 0}
    assert all(len(c.calls) == 2 for c in r0.candidates)


async def test_narrower_runs_are_prefixes_and_width_one_is_a_plain_round() -> None:
    wide = await run(2, width=8)
    for n in (2, 4):
        narrow = await run(2, width=n)
        assert [signature(c) for c in narrow.rounds[0].candidates] == [signature(c) for c in
                                                                        wide.rounds[0].candidates[:n]]
    plain = await run(2, width=1)
    assert plain.rounds[0].candidates == [] and plain.rounds[0].chosen is None
    assert signature(plain.rounds[0]) == signature(wide.rounds[0].candidates[0])


async def test_width_helps_in_the_synthetic_world() -> None:
    one = [await run(i, width=1) for i in range(len(SAMPLES))]
    eight = [await run(i, width=8) for i in range(len(SAMPLES))]
    passed = [sum(bool(t.best and t.best.verdict.passed) for t in ts) for ts in (one, eight)]
    assert passed[1] > passed[0]


async def test_every_refine_round_has_its_candidates_and_the_critic_reads_the_kept_one() -> None:
    deep = [await run(i, width=3, max_rounds=2, stop_on_pass=False) for i in range(len(SAMPLES))]
    assert any(len(t.rounds) == 3 for t in deep)
    for t in deep:
        for r in t.rounds:
            assert len(r.candidates) == 3 and r.image == r.candidates[r.chosen].image
        critiques = sum(r.critique is not None for r in t.rounds)
        assert t.usage.calls == {"editor": 3 * len(t.rounds), "judge": 3 * len(t.rounds), "critic": critiques}
        for r in t.rounds[1:]:  # re-edits start from what the critic chose, given the kept images
            assert r.base_round is None or t.rounds[r.base_round].image is not None


@pytest.mark.parametrize(("limits", "rounds", "widths", "calls"), [
    ({"editor": 6}, 3, [4, 2], {"editor": 6, "judge": 6, "critic": 1}),  # round 1 runs the 2 that fit
    ({"editor": 3}, 0, [3], {"editor": 3, "judge": 3, "critic": 0}),  # even round 0 (the baseline) is cut
    ({"total": 12}, 3, [4, 1], {"editor": 5, "judge": 5, "critic": 1}),  # 8 + critic + 1 + 1 = 11; 2 more: 13
    ({"judge": 4}, 3, [4], {"editor": 4, "judge": 4, "critic": 0}),  # nothing fits after round 0: no critique
])
async def test_budgets_count_every_candidate(limits: dict[str, int], rounds: int, widths: list[int],
                                             calls: dict[str, int]) -> None:
    t = await run(8, width=4, max_rounds=rounds, max_calls=limits, stop_on_pass=False)  # not fixed by round 0
    assert [len(r.candidates) for r in t.rounds] == widths
    assert t.usage.calls == calls
    assert t.stop_reason == StopReason.max_tool_calls


class FlakyEditor(SimEditor):
    """Fails for good (not a transient error) on the candidates whose seed is in ``bad``."""

    name: ClassVar[str] = "flaky-sim"
    bad: ClassVar[set[int]] = set()

    async def edit(self, req: EditRequest) -> EditResult:
        if req.seed in self.bad:
            raise ValueError("this seed crashes the editor")
        return await super().edit(req)


class FailingJudge:
    """The verify judge, except that it fails for good on the seeds in ``bad``."""

    name = "failing-verify"

    def __init__(self, bad: set[int]) -> None:
        self.inner = create_tool("judge", "verify", {"noise": 0.5})
        self.bad = bad

    async def judge(self, req: JudgeRequest) -> Verdict:
        if req.seed in self.bad:
            raise ValueError("this seed crashes the judge")
        return await self.inner.judge(req)


async def test_failed_candidates_are_recorded_and_the_round_goes_on() -> None:
    ref = await run(4, width=4, stop_on_pass=False)
    seeds = [c.seed for c in ref.rounds[0].candidates]
    FlakyEditor.bad = {seeds[0], seeds[2]}
    t = await run(4, width=4, editor=FlakyEditor(), stop_on_pass=False)
    r0 = t.rounds[0]
    assert [c.image is None for c in r0.candidates] == [True, False, True, False]
    assert all("crashes the editor" in (r0.candidates[k].error or "") for k in (0, 2))
    assert r0.chosen in (1, 3) and r0.error is None and t.stop_reason == StopReason.max_rounds
    assert t.usage.failed_calls == 2

    FlakyEditor.bad = set(seeds)
    t = await run(4, width=4, editor=FlakyEditor())
    assert t.stop_reason == StopReason.editor_failed and t.rounds[0].image is None
    assert "crashes the editor" in (t.rounds[0].error or "")


async def test_a_failed_judgment_is_never_chosen_over_a_scored_one() -> None:
    ref = await run(4, width=3, stop_on_pass=False)
    s = SAMPLES[4]
    judge_seeds = {k: derive_seed(3, s.id, 0, "judge", k) for k in range(3)}
    t = await run(4, width=3, judge=FailingJudge({judge_seeds[0], judge_seeds[1]}), stop_on_pass=False)
    r0 = t.rounds[0]
    assert [c.verdict.status for c in r0.candidates] == ["error", "error", "ok"]
    assert r0.chosen == 2 and r0.verdict.ok and t.stop_reason == StopReason.max_rounds
    assert r0.candidates[2].verdict == ref.rounds[0].candidates[2].verdict

    t = await run(4, width=3, judge=FailingJudge(set(judge_seeds.values())))
    assert t.stop_reason == StopReason.judge_failed and not t.rounds[0].verdict.ok


def test_candidates_are_for_the_fixed_policy_loop() -> None:
    with pytest.raises(ConfigError, match="controller decides its own edits"):
        validate_config({"controller": "llm:openai:gpt-4o", "policy": {"candidates": 2}})
    with pytest.raises(ConfigError, match="candidates"):
        validate_config({"policy": {"candidates": 0}})


class LostEditor(SimEditor):
    """Its actors are gone for the candidates whose seed is in ``lost`` (a Ray tool's lost actor)."""

    name: ClassVar[str] = "lost-sim"
    lost: ClassVar[set[int]] = set()

    async def edit(self, req: EditRequest) -> EditResult:
        if req.seed in self.lost:
            raise ToolUnavailableError("editor 'sim': every actor is gone")
        return await super().edit(req)


async def test_a_lost_tool_in_one_candidate_marks_the_sample_for_resume() -> None:
    s = SAMPLES[4]
    LostEditor.lost = {derive_seed(3, s.id, 0, "edit", 1)}
    # candidate 0's judgment fails too, later: the lost tool must still be what the caller sees
    judge = FailingJudge({derive_seed(3, s.id, 0, "judge", 0)})
    result = await refine(s.image(), s.instruction, editor=LostEditor(), judge=judge,
                          critic=create_tool("critic", "rule", {}), sample_id=s.id, seed=3,
                          budget=Budget(max_rounds=0), policy=LoopPolicy(candidates=3), runtime=Runtime())
    assert result.trajectory.rounds[0].chosen == 2
    assert result.failure is not None and isinstance(result.failure.cause, ToolUnavailableError)


class PricedEditor(SimEditor):
    """The simulated editor at $1 an edit."""

    name: ClassVar[str] = "priced-sim"

    async def edit(self, req: EditRequest) -> EditResult:
        out = await super().edit(req)
        return out.model_copy(update={"usage": Usage(cost_usd=1.0)})


async def test_a_cost_budget_limits_the_candidates_of_a_round() -> None:
    t = await run(8, width=4, max_rounds=3, editor=PricedEditor(), stop_on_pass=False, max_cost=6.0)
    # round 0 (the baseline) costs $4; $2 are left, at $1 a candidate: 2, then the budget is spent
    assert [len(r.candidates) for r in t.rounds] == [4, 2]
    assert t.usage.cost_usd == 6.0 and t.stop_reason == StopReason.max_cost
