"""The controller-driven loop (agentic mode) with a scripted controller: tools, budget, records."""

from __future__ import annotations

from refine_agent import Budget, CallLimits, Runtime, RuntimeConfig
from refine_agent.agent import refine_with_controller
from refine_agent.errors import PermanentToolError, RefusedError
from refine_agent.runtime import RetryPolicy
from refine_agent.testing import FunctionEditor, FunctionJudge, ScriptedController
from refine_agent.types import JudgeRequest, StopReason, Verdict

from .conftest import solid

SOURCE = solid(0)
FAST = RuntimeConfig(retry=RetryPolicy(initial_wait=0, max_wait=0, jitter=0))


def brightness_judge() -> FunctionJudge:
    def fn(req: JudgeRequest) -> Verdict:
        s = round(float(req.edited.array[0, 0, 0]) / 25.0, 3)
        return Verdict(scores={"SC": [s, 10.0], "PQ": [10.0, 10.0]}, passed=s >= 8)
    return FunctionJudge(fn)


def editor() -> FunctionEditor:
    """Each edit makes the image brighter by 60 (from whatever base it was given)."""
    return FunctionEditor(lambda r: solid(min(250, int(r.image.array[0, 0, 0]) + 60)))


async def run(steps, **kw):  # type: ignore[no-untyped-def]
    ctrl = ScriptedController(steps)
    res = await refine_with_controller(SOURCE, "make it bright", controller=ctrl, editor=editor(),
                                       judge=brightness_judge(), runtime=Runtime(FAST), **kw)
    return res, ctrl


async def test_the_controller_edits_judges_and_finishes() -> None:
    res, ctrl = await run([("edit", {"instruction": "brighter", "base": "current"}), ("judge", {"image": "1"}),
                           ("edit", {"instruction": "brighter still", "base": "current"}),
                           ("finish", {"image": "1", "reason": "round 1 is enough"})])
    t = res.trajectory
    assert t.stop_reason is StopReason.controller_finished and t.controller == "scripted-controller"
    assert [r.base for r in t.rounds] == ["source", "current", "current"]
    assert [r.image for r in t.rounds] == [solid(60).sha256, solid(120).sha256, solid(180).sha256]
    assert t.best_round == 1  # the controller's choice, even though round 2 scores higher
    assert all(r.verdict is not None for r in t.rounds)  # round 2 judged for the record
    assert [e.name for e in t.controller_log] == ["edit", "judge", "edit", "finish"]
    assert "overall" in t.controller_log[1].result and t.controller_log[0].images == [solid(120).sha256]
    assert t.rounds[0].critique is not None and t.rounds[0].critique.instruction == "brighter"
    assert t.usage.calls["controller"] == 4
    ctrl.assert_done()
    req = ctrl.requests[1]  # the second turn saw the first call and the image it produced
    assert req.transcript[0].name == "edit" and solid(120).sha256 in req.images
    assert req.budget_left["edits_left"] == 2


async def test_edits_past_the_budget_are_refused() -> None:
    res, _ = await run([("edit", {"instruction": "a", "base": "source"}), ("edit", {"instruction": "b",
                                                                                     "base": "source"}),
                        ("finish", {"image": "best", "reason": "out of edits"})], budget=Budget(max_rounds=1))
    t = res.trajectory
    assert len(t.rounds) == 2 and "refused" in t.controller_log[1].result
    assert t.stop_reason is StopReason.controller_finished


async def test_bad_calls_are_answered_and_repeated_ones_end_the_run() -> None:
    res, _ = await run([("paint", {}), ("edit", {"base": "current"}), ("judge", {"image": "7"})])
    t = res.trajectory
    assert t.stop_reason is StopReason.controller_failed and t.best_round == 0
    assert "unknown tool" in t.controller_log[0].result and "non-empty" in t.controller_log[1].result


async def test_running_out_of_turns_keeps_the_best_round() -> None:
    steps = [("edit", {"instruction": "x", "base": "current"}), ("judge", {"image": "current"})] * 3
    res, _ = await run(steps, budget=Budget(max_rounds=5, max_calls=CallLimits(controller=4)))
    t = res.trajectory
    assert t.stop_reason is StopReason.max_tool_calls and t.usage.calls["controller"] == 4
    assert t.best_round == 2 and len(t.rounds) == 3


async def test_refining_a_given_edit() -> None:
    ctrl = ScriptedController([("finish", {"image": "0", "reason": "already fine"})])
    res = await refine_with_controller(SOURCE, "make it bright", controller=ctrl, editor=editor(), edited=solid(220),
                                       judge=brightness_judge(), runtime=Runtime(FAST))
    t = res.trajectory
    assert t.rounds[0].base == "given" and t.best_round == 0 and t.usage.calls["editor"] == 0


async def test_per_kind_call_limits_refuse_edits() -> None:
    # Round 0 uses one edit and one judgment; an edit also reserves the judgment every round gets for the record.
    steps = [("edit", {"instruction": "x", "base": "current"})] * 4 + [("finish", {"image": "best"})]
    res, _ = await run(steps, budget=Budget(max_rounds=4, max_calls=CallLimits(editor=3, judge=3)))
    t = res.trajectory
    assert len(t.rounds) == 3 and t.usage.calls["editor"] == 3 and t.usage.calls["judge"] == 3
    assert [("refused" in e.result) for e in t.controller_log] == [False, False, True, True, False]
    assert "3 editor calls" in t.controller_log[2].result
    res, _ = await run(steps, budget=Budget(max_rounds=4, max_calls=CallLimits(total=10)))
    t = res.trajectory
    # round 0 takes 2 calls, each turn 1, each edit 2 with its judgment: the third turn (2 + 3 + 4 = 9) cannot
    # afford another edit (11), the fourth is refused too (10 with the reserved judgments), and then no turn fits
    assert len(t.rounds) == 3 and t.usage.total_calls == 10 and "tool calls in all" in t.controller_log[2].result
    assert t.stop_reason is StopReason.max_tool_calls and len(t.controller_log) == 4


async def test_a_failed_edit_is_shown_to_the_controller_which_goes_on() -> None:
    def flaky(req):  # type: ignore[no-untyped-def]
        if "forbidden" in req.instruction:
            raise RefusedError("the editor refused this instruction")
        return solid(min(250, int(req.image.array[0, 0, 0]) + 60))

    ctrl = ScriptedController([("edit", {"instruction": "forbidden words", "base": "current"}),
                               ("edit", {"instruction": "brighter", "base": "current"}),
                               ("finish", {"image": "current", "reason": "rephrased"})])
    res = await refine_with_controller(SOURCE, "make it bright", controller=ctrl, editor=FunctionEditor(flaky),
                                       judge=brightness_judge(), runtime=Runtime(FAST))
    t = res.trajectory
    assert "the edit failed" in t.controller_log[0].result and "refused this instruction" in t.controller_log[0].result
    assert t.rounds[1].image is None and t.rounds[1].error and t.rounds[2].image == solid(120).sha256
    assert t.stop_reason is StopReason.controller_finished and t.best_round == 2 and res.failure is None


async def test_an_edit_that_fails_for_good_ends_the_run() -> None:
    def broken(req):  # type: ignore[no-untyped-def]
        if req.instruction != "make it bright":
            raise PermanentToolError("401: the key was rejected")
        return solid(60)

    ctrl = ScriptedController([("edit", {"instruction": "brighter", "base": "current"}),
                               ("edit", {"instruction": "brighter still", "base": "current"})])
    res = await refine_with_controller(SOURCE, "make it bright", controller=ctrl, editor=FunctionEditor(broken),
                                       judge=brightness_judge(), runtime=Runtime(FAST))
    t = res.trajectory
    assert t.stop_reason is StopReason.editor_failed and len(t.rounds) == 2 and t.best_round == 0
    assert res.failure is not None and "401" in str(res.failure) and len(t.controller_log) == 1
