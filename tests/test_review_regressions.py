"""Regression tests for problems found in review: cache keys, determinism, cancellation, misuse."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from refine_agent.tools.synthetic.generate import iter_samples

from refine_agent import Budget, LoopPolicy, Runtime, RuntimeConfig, refine
from refine_agent.cache import cache_key, canonical
from refine_agent.errors import TransientToolError
from refine_agent.registry import create_tool
from refine_agent.runtime import RetryPolicy
from refine_agent.testing import FunctionEditor
from refine_agent.types import EditResult, StopReason

from .conftest import solid

ROOT = Path(__file__).resolve().parents[1]
FAST = RuntimeConfig(retry=RetryPolicy(max_attempts=10, initial_wait=0, max_wait=0, jitter=0))


async def test_a_shared_runtime_never_reuses_a_critique_made_for_another_judge() -> None:
    """Two judges that differ only in their pass threshold see the same images; their critiques differ."""
    rt = Runtime(FAST)
    kit = dict(editor=create_tool("editor", "sim"), critic=create_tool("critic", "repeat"),
               policy=LoopPolicy(stop_on_pass=False), budget=Budget(max_rounds=1), runtime=rt)
    for s in iter_samples(20, seed=2):
        strict = await refine(s.image(), s.instruction, judge=create_tool("judge", "verify"), **kit)
        if not strict.trajectory.rounds[0].verdict.passed:  # type: ignore[union-attr]
            break
    else:
        pytest.fail("no failing one-shot edit among 20 samples")
    assert strict.trajectory.rounds[0].critique.satisfied is False  # type: ignore[union-attr]
    lenient = await refine(s.image(), s.instruction, judge=create_tool("judge", "verify", {"pass_threshold": 0}),
                           **kit)
    assert lenient.trajectory.stop_reason is StopReason.critic_satisfied and len(lenient.trajectory.rounds) == 1


async def _run_samples(concurrent: bool, fail_rate: float) -> list[list[tuple]]:
    kit = dict(editor=create_tool("editor", "sim", {"fail_rate": fail_rate}),
               judge=create_tool("judge", "verify", {"fail_rate": fail_rate}),
               critic=create_tool("critic", "rule", {"fail_rate": fail_rate}))
    rt = Runtime(FAST)
    samples = list(iter_samples(10, seed=8))

    async def one(s):  # type: ignore[no-untyped-def]
        # every sample shares the default sample id: nothing may depend on which one runs first
        t = (await refine(s.image(), s.instruction, budget=Budget(max_rounds=2), runtime=rt, **kit)).trajectory
        return [(r.instruction, r.image, r.verdict.overall if r.verdict else None) for r in t.rounds]

    if concurrent:
        return list(await asyncio.gather(*[one(s) for s in samples]))
    return [await one(s) for s in samples]


async def test_results_do_not_depend_on_scheduling_or_retry_history() -> None:
    sequential = await _run_samples(False, 0.3)
    assert await _run_samples(True, 0.3) == sequential
    assert await _run_samples(False, 0.0) == sequential


def test_results_do_not_depend_on_hash_randomisation() -> None:
    code = ("import asyncio, json; from tests.test_review_regressions import _run_samples; "
            "print(json.dumps(asyncio.run(_run_samples(True, 0.2))))")
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        outs.add(subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=300, check=True).stdout)
    assert len(outs) == 1


async def test_cancellation_is_never_retried() -> None:
    class Greedy:
        name = "greedy"
        calls = 0

        def is_transient(self, exc: BaseException) -> bool:
            return True  # a careless hook

        async def edit(self) -> EditResult:
            self.calls += 1
            await asyncio.sleep(10)
            return EditResult(image=solid(1))

    tool = Greedy()
    task = asyncio.create_task(Runtime(FAST).call("editor", tool, tool.edit))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
    assert tool.calls == 1


def test_a_runtime_serves_several_event_loops() -> None:
    from refine_agent.types import EditRequest

    rt = Runtime(FAST)
    editor = FunctionEditor(lambda r: solid(5), latency=0.01)
    req = EditRequest(image=solid(1), instruction="x", seed=0)

    async def burst() -> int:
        return len(await asyncio.gather(*[rt.call("editor", editor, lambda: editor.edit(req)) for _ in range(4)]))

    assert asyncio.run(burst()) == 4 and asyncio.run(burst()) == 4


async def test_a_tool_returning_the_wrong_type_is_a_recorded_failure() -> None:
    class Sloppy:
        name = "sloppy"

        async def edit(self, req):  # type: ignore[no-untyped-def]
            return {"image": "oops"}

    res = await refine(solid(0), "x", editor=Sloppy(), judge=create_tool("judge", "verify"),
                       critic=create_tool("critic", "rule"), runtime=Runtime(FAST))
    assert res.trajectory.stop_reason is StopReason.editor_failed
    assert "returned a dict, not a EditResult" in (res.trajectory.rounds[0].error or "")


async def test_cached_calls_are_not_billed_twice() -> None:
    class Paid:
        name = "paid"

        async def edit(self, req):  # type: ignore[no-untyped-def]
            from refine_agent.types import Usage

            return EditResult(image=solid(9), usage=Usage(cost_usd=0.2))

    rt = Runtime(FAST)
    kit = dict(editor=Paid(), judge=create_tool("judge", "verify"), critic=create_tool("critic", "rule"),
               budget=Budget(max_rounds=0), runtime=rt)
    first = (await refine(solid(0), "make it brighter", **kit)).trajectory
    second = (await refine(solid(0), "make it brighter", **kit)).trajectory
    assert first.usage.cost_usd == second.usage.cost_usd == pytest.approx(0.2)
    assert first.usage.cached_cost_usd == 0 and second.usage.cached_cost_usd == pytest.approx(0.2)


def test_cache_keys_are_exact_and_refuse_unstable_values() -> None:
    a = np.zeros(5000)
    b = a.copy()
    b[2500] = 1  # differs only in the middle, which numpy's repr would elide
    assert canonical(a) != canonical(b)
    assert canonical({"s": {3, 1, 2}}) == {"s": [1, 2, 3]}
    assert canonical(solid(1)) == {"image": solid(1).sha256}
    with pytest.raises(TypeError, match="cannot build a cache key"):
        cache_key({"name": "x", "params": {"thing": object()}}, "edit", images=[], text="", seed=0)


async def test_transient_failures_use_the_runtime_s_attempt_number() -> None:
    tool = create_tool("editor", "sim", {"fail_rate": 0.5})
    s = next(iter(iter_samples(1, seed=0)))
    from refine_agent.types import EditRequest

    req = EditRequest(image=s.image(), instruction=s.instruction, seed=7)
    outcomes = []
    for _ in range(3):  # the same call on the same instance, with fresh runtimes: the same story each time
        try:
            out = await Runtime(RuntimeConfig(retry=RetryPolicy(max_attempts=2, initial_wait=0, max_wait=0,
                                                                jitter=0))).call("editor", tool, lambda: tool.edit(req))
            outcomes.append(("ok", out.record.attempts))
        except Exception as exc:  # noqa: BLE001
            outcomes.append(("failed", type(exc).__name__))
    assert len(set(outcomes)) == 1
    with pytest.raises(TransientToolError):
        from refine_agent.runtime import _ATTEMPT

        for attempt in range(1, 50):
            token = _ATTEMPT.set(attempt)
            try:
                await tool.simulate("x", attempt)
            finally:
                _ATTEMPT.reset(token)


def test_results_json_is_plain(tmp_path: Path) -> None:
    assert json.dumps(canonical({"p": Path("a/b")})) == '{"p": "a/b"}'
