import asyncio
import time

import pytest

from refine_agent import Budget, CallLimits, LoopPolicy, RetryPolicy, Runtime, RuntimeConfig, refine
from refine_agent.errors import ConfigError, InputError, PermanentToolError, UnsupportedInstructionError
from refine_agent.loop import derive_seed
from refine_agent.testing import FunctionCritic, FunctionEditor, FunctionJudge, ScriptedCritic, ScriptedEditor
from refine_agent.types import Critique, EditResult, JudgeRequest, StopReason, Usage, Verdict

from .conftest import solid

SOURCE = solid(0)
FAST = Runtime(RuntimeConfig(retry=RetryPolicy(initial_wait=0, max_wait=0, jitter=0)))


def score_judge(pass_at: float = 8.0) -> FunctionJudge:
    """Scores an image by its grey value: value 200 -> 8.0. Passes at ``pass_at``."""
    def fn(req: JudgeRequest) -> Verdict:
        s = round(float(req.edited.array[0, 0, 0]) / 25.0, 3)
        return Verdict(scores={"SC": [s, 10.0], "PQ": [10.0, 10.0]}, passed=s >= pass_at)
    return FunctionJudge(fn)


def again(base: str = "current") -> Critique:
    return Critique(satisfied=False, analysis="try again", instruction="do it better", base=base)  # type: ignore[arg-type]


async def run(editor, critic, *, judge=None, **kw):  # type: ignore[no-untyped-def]
    return await refine(SOURCE, "make it bright", editor=editor, judge=judge or score_judge(), critic=critic,
                        runtime=Runtime(FAST.config), **kw)


async def test_stops_when_the_judge_passes() -> None:
    editor = ScriptedEditor([solid(100), solid(220)])
    critic = ScriptedCritic([again()])
    res = await run(editor, critic)
    t = res.trajectory
    assert t.stop_reason is StopReason.passed and t.best_round == 1 and len(t.rounds) == 2
    assert t.rounds[0].critique is not None and t.rounds[1].critique is None
    assert t.rounds[1].instruction == "do it better" and t.rounds[1].base == "current"
    assert res.best_image == solid(220)
    editor.assert_done()
    critic.assert_done()


async def test_max_rounds_counts_re_edits() -> None:
    editor = ScriptedEditor([solid(10 * i) for i in range(1, 4)])
    t = (await run(editor, ScriptedCritic([again(), again()]), budget=Budget(max_rounds=2))).trajectory
    assert t.stop_reason is StopReason.max_rounds and len(t.rounds) == 3 and t.best_round == 2
    assert t.usage.calls == {"editor": 3, "judge": 3, "critic": 2}


async def test_max_rounds_zero_is_one_shot() -> None:
    t = (await run(ScriptedEditor([solid(10)]), ScriptedCritic([]), budget=Budget(max_rounds=0))).trajectory
    assert t.stop_reason is StopReason.max_rounds and len(t.rounds) == 1


async def test_threshold() -> None:
    editor = ScriptedEditor([solid(100), solid(150), solid(160)])
    policy = LoopPolicy(threshold=7.0, stop_on_pass=False)  # overall = sqrt(4 * 10), then sqrt(6 * 10)
    t = (await run(editor, ScriptedCritic([again(), again()]), policy=policy)).trajectory
    assert t.stop_reason is StopReason.threshold and len(t.rounds) == 2


async def test_keep_going_past_a_pass_until_the_critic_is_satisfied() -> None:
    editor = ScriptedEditor([solid(210), solid(240)])
    critic = ScriptedCritic([again(), Critique(satisfied=True, analysis="good")])
    t = (await run(editor, critic, policy=LoopPolicy(stop_on_pass=False))).trajectory
    assert t.stop_reason is StopReason.critic_satisfied and t.best_round == 1
    assert t.rounds[1].critique is not None and t.rounds[1].critique.satisfied


async def test_patience() -> None:
    editor = ScriptedEditor([solid(125), solid(100), solid(100)])
    t = (await run(editor, ScriptedCritic([again(), again()]), policy=LoopPolicy(patience=2),
                   budget=Budget(max_rounds=5))).trajectory
    assert t.stop_reason is StopReason.patience and len(t.rounds) == 3 and t.best_round == 0


async def test_best_round_is_never_worse_than_round_zero() -> None:
    editor = ScriptedEditor([solid(150), solid(50), solid(75)])
    res = await run(editor, ScriptedCritic([again(), again()]), budget=Budget(max_rounds=2))
    assert res.trajectory.best_round == 0 and res.best_image == solid(150)


async def test_passing_beats_a_higher_score_that_fails() -> None:
    def fn(req: JudgeRequest) -> Verdict:
        v = int(req.edited.array[0, 0, 0])
        return Verdict(scores={"SC": [9.0 if v == 1 else 7.0, 10], "PQ": [10, 10]}, passed=v == 2)
    editor = ScriptedEditor([solid(1), solid(2)])
    t = (await run(editor, ScriptedCritic([again()]), judge=FunctionJudge(fn))).trajectory
    assert t.best_round == 1


async def test_tool_call_budget() -> None:
    editor = ScriptedEditor([solid(10), solid(20)])
    t = (await run(editor, ScriptedCritic([again()]), budget=Budget(max_calls=CallLimits(editor=2)))).trajectory
    assert t.stop_reason is StopReason.max_tool_calls and len(t.rounds) == 2


async def test_cost_budget() -> None:
    editor = ScriptedEditor([EditResult(image=solid(10), usage=Usage(cost_usd=0.3)),
                             EditResult(image=solid(20), usage=Usage(cost_usd=0.3))])
    t = (await run(editor, ScriptedCritic([again()]), budget=Budget(max_cost=0.5))).trajectory
    assert t.stop_reason is StopReason.max_cost and len(t.rounds) == 2
    assert t.usage.cost_usd == pytest.approx(0.6) and t.rounds[1].usage.cost_usd == pytest.approx(0.3)


async def test_wall_time_budget_lets_the_round_in_flight_finish() -> None:
    editor = ScriptedEditor([solid(10), solid(20)], latency=0.05)
    t = (await run(editor, ScriptedCritic([again()]), budget=Budget(max_seconds=0.01))).trajectory
    assert t.stop_reason is StopReason.max_seconds and len(t.rounds) == 1
    assert t.rounds[0].verdict is not None and t.rounds[0].verdict.ok  # the round completed, judged


async def test_unsupported_judgment_stops_without_a_score() -> None:
    judge = FunctionJudge(lambda r: Verdict.failed("unsupported", "cannot check that"))
    res = await run(ScriptedEditor([solid(10)]), ScriptedCritic([]), judge=judge)
    t = res.trajectory
    assert t.stop_reason is StopReason.judge_unsupported and t.best_round is None
    assert t.rounds[0].image is not None


async def test_judge_failure_is_an_error_verdict_not_a_zero() -> None:
    def boom(req: JudgeRequest) -> Verdict:
        raise PermanentToolError("401: key rejected")
    res = await run(ScriptedEditor([solid(10)]), ScriptedCritic([]), judge=FunctionJudge(boom))
    v = res.trajectory.rounds[0].verdict
    assert v is not None and v.status == "error" and v.overall is None and "401" in v.reasoning
    assert res.trajectory.stop_reason is StopReason.judge_failed and res.failure is not None


async def test_editor_failure_in_round_zero() -> None:
    res = await run(ScriptedEditor([UnsupportedInstructionError("no such op")]), ScriptedCritic([]))
    t = res.trajectory
    assert t.stop_reason is StopReason.editor_failed and t.best_round is None
    assert t.rounds[0].image is None and "no such op" in (t.rounds[0].error or "")
    assert res.failure is not None and res.failure.exit_code == 2


async def test_editor_failure_later_keeps_the_best_so_far() -> None:
    editor = ScriptedEditor([solid(100), PermanentToolError("content policy")])
    res = await run(editor, ScriptedCritic([again()]))
    t = res.trajectory
    assert t.stop_reason is StopReason.editor_failed and t.best_round == 0 and len(t.rounds) == 2
    assert t.rounds[1].calls[0].error is not None


async def test_critic_failure() -> None:
    res = await run(ScriptedEditor([solid(100)]), ScriptedCritic([PermanentToolError("bad reply")]))
    assert res.trajectory.stop_reason is StopReason.critic_failed and res.trajectory.best_round == 0


@pytest.mark.parametrize("base,expected", [("current", 120), ("source", 0), ("best", 150)])
async def test_the_critic_chooses_the_base(base: str, expected: int) -> None:
    editor = ScriptedEditor([solid(150), solid(120), solid(10)])
    await run(editor, ScriptedCritic([again(), again(base)]), budget=Budget(max_rounds=2))
    assert editor.requests[2].image == solid(expected)
    assert editor.requests[2].source == SOURCE


async def test_policy_can_force_the_base() -> None:
    editor = ScriptedEditor([solid(150), solid(120)])
    t = (await run(editor, ScriptedCritic([again("current")]), policy=LoopPolicy(force_base="source"),
                   budget=Budget(max_rounds=1))).trajectory
    assert editor.requests[1].image == SOURCE and t.rounds[1].base == "source"


async def test_refine_an_existing_edit_with_a_different_refine_editor() -> None:
    primary = ScriptedEditor([], name="primary")
    fixer = ScriptedEditor([solid(230)], name="fixer")
    res = await refine(SOURCE, "make it bright", editor=primary, refine_editor=fixer, edited=solid(100),
                       judge=score_judge(), critic=ScriptedCritic([again()]), runtime=Runtime(FAST.config))
    t = res.trajectory
    assert t.rounds[0].base == "given" and t.rounds[0].editor is None and t.rounds[1].editor == "fixer"
    assert t.usage.calls["editor"] == 1 and t.stop_reason is StopReason.passed
    assert primary.requests == []


async def test_re_edits_use_the_refine_editor() -> None:
    primary = ScriptedEditor([solid(100)], name="primary")
    fixer = ScriptedEditor([solid(230)], name="fixer")
    t = (await refine(SOURCE, "x", editor=primary, refine_editor=fixer, judge=score_judge(),
                      critic=ScriptedCritic([again()]), runtime=Runtime(FAST.config))).trajectory
    assert [r.editor for r in t.rounds] == ["primary", "fixer"]


async def test_the_judge_always_sees_the_original_instruction_and_source() -> None:
    seen: list[tuple[str, str]] = []

    def fn(req: JudgeRequest) -> Verdict:
        seen.append((req.instruction, req.source.sha256))
        return Verdict(scores={"SC": [1, 1], "PQ": [1, 1]}, passed=False)
    await run(ScriptedEditor([solid(1), solid(2)]), ScriptedCritic([again()]), judge=FunctionJudge(fn),
              budget=Budget(max_rounds=1))
    assert seen == [("make it bright", SOURCE.sha256)] * 2


async def test_seeds_depend_on_run_seed_sample_and_round() -> None:
    editor = FunctionEditor(lambda r: solid(r.seed % 200))
    critic = FunctionCritic()
    kw = dict(judge=score_judge(pass_at=11), critic=critic, budget=Budget(max_rounds=2))
    a = (await refine(SOURCE, "x", editor=editor, sample_id="a", seed=1, **kw)).trajectory  # type: ignore[arg-type]
    b = (await refine(SOURCE, "x", editor=editor, sample_id="a", seed=1, **kw)).trajectory  # type: ignore[arg-type]
    c = (await refine(SOURCE, "x", editor=editor, sample_id="b", seed=1, **kw)).trajectory  # type: ignore[arg-type]
    assert [r.seed for r in a.rounds] == [r.seed for r in b.rounds]
    assert len({r.seed for r in a.rounds}) == 3 and a.rounds[0].seed != c.rounds[0].seed
    assert a.rounds[1].seed == derive_seed(1, "a", 1, "edit")


async def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="empty"):
        await refine(SOURCE, "  ", editor=FunctionEditor(), judge=score_judge(), critic=FunctionCritic())
    with pytest.raises(ConfigError, match="editor"):
        await refine(SOURCE, "x", judge=score_judge(), critic=FunctionCritic())
    with pytest.raises(ConfigError, match="name"):
        await refine(SOURCE, "x", editor=FunctionEditor(), judge=score_judge(), critic=object())
    with pytest.raises(ConfigError, match="critic"):
        await refine(SOURCE, "x", editor=FunctionEditor(), judge=score_judge(), critic=None)  # type: ignore[arg-type]
    ok = await refine(SOURCE, "x", editor=FunctionEditor(), judge=score_judge(), critic=None,  # type: ignore[arg-type]
                      budget=Budget(max_rounds=0))
    assert len(ok.trajectory.rounds) == 1  # one-shot needs no critic


async def test_a_shared_cache_replays_a_sample_without_calling_tools() -> None:
    editor = FunctionEditor(lambda r: solid((r.seed % 97) + 100))
    judge, critic = score_judge(pass_at=11), FunctionCritic()
    rt = Runtime(FAST.config)
    kw = dict(editor=editor, judge=judge, critic=critic, budget=Budget(max_rounds=2), runtime=rt)
    first = (await refine(SOURCE, "x", **kw)).trajectory  # type: ignore[arg-type]
    calls = (editor.calls, judge.calls, critic.calls)
    second = (await refine(SOURCE, "x", **kw)).trajectory  # type: ignore[arg-type]
    assert (editor.calls, judge.calls, critic.calls) == calls
    assert [r.image for r in first.rounds] == [r.image for r in second.rounds]
    assert second.usage.cached_calls == 8 and second.usage.calls == first.usage.calls


async def test_concurrent_refines_overlap() -> None:
    """20 samples x 4 calls of 50 ms each would take 4 s one after another."""
    editor = FunctionEditor(lambda r: solid(100), latency=0.05, capacity=20)
    judge = FunctionJudge(lambda r: Verdict(scores={"SC": [5, 5], "PQ": [5, 5]}, passed=False), latency=0.05,
                          capacity=20)
    critic = FunctionCritic(latency=0.05, capacity=20)
    rt = Runtime(RuntimeConfig(cache=False))
    start = time.perf_counter()
    results = await asyncio.gather(*[
        refine(SOURCE, "x", editor=editor, judge=judge, critic=critic, budget=Budget(max_rounds=1),
               sample_id=str(i), runtime=rt) for i in range(20)])
    wall = time.perf_counter() - start
    serial = sum(r.trajectory.usage.total_calls for r in results) * 0.05
    assert serial == pytest.approx(5.0)
    assert wall < serial / 5


def test_judge_request_key_is_pinned() -> None:
    """Resume and rejudge find earlier judgments only if the key never changes: these values were computed
    before the loop, the bench and rejudge shared one function, from the three copies it replaced."""
    import numpy as np

    from refine_agent.cache import identity_hash, judge_request_key
    from refine_agent.images import Image

    def img(v: int) -> Image:
        return Image(np.full((4, 4, 3), v, np.uint8))

    s, e, m = img(10), img(200), img(255)
    ident = {"name": "sim-judge", "params": {"strict": True, "w": 0.5}}
    full = JudgeRequest(source=s, edited=e, instruction="make it blue", seed=12345, mask=m,
                        context={"rationale": "why", "n": [1, 2]})
    assert judge_request_key(ident, full) == "b4581da0ffecf98093777cc4dc917c77cf25d0f57eb69d7eeb3cfcbfc7ffc39b"
    bare = JudgeRequest(source=s, edited=e, instruction="make it blue", seed=7)
    assert judge_request_key(ident, bare) == "f389dd35773fd36c672c787d2fd81d0359e53f77ae139ccd4c70b223df8eb04d"
    assert identity_hash(ident) == "d61b17e0e4da89f7"
