"""The built-in offline world end to end: sim editor, verify judge, rule critic under the real loop."""

import asyncio
import time

from refine_agent.benchmarks.demo import run_set, summarise
from refine_agent.tools.synthetic.generate import iter_samples

from refine_agent import Budget, Runtime, RuntimeConfig, refine
from refine_agent.registry import create_tool
from refine_agent.runtime import RetryPolicy

SAMPLES = list(iter_samples(16, seed=21))


def tools(**sim_opts):  # type: ignore[no-untyped-def]
    return dict(editor=create_tool("editor", "sim", sim_opts), judge=create_tool("judge", "verify"),
                critic=create_tool("critic", "rule"))


async def trajectories(max_rounds: int, runtime: Runtime | None = None, **sim_opts):  # type: ignore[no-untyped-def]
    kit = tools(**sim_opts)
    rt = runtime or Runtime()
    return [(await refine(s.image(), s.instruction, budget=Budget(max_rounds=max_rounds), sample_id=s.id, seed=4,
                          runtime=rt, **kit)).trajectory for s in SAMPLES]


def _signature(r, with_critique: bool = True):  # type: ignore[no-untyped-def]
    return (r.instruction, r.base, r.image, r.verdict.model_dump() if r.verdict else None,
            (r.critique.instruction if r.critique else None) if with_critique else "-")


async def test_a_smaller_budget_replays_as_a_prefix() -> None:
    """Decisions depend only on the past, so the run at budget 1 is a prefix of the run at budget 3."""
    long, short = await trajectories(3), await trajectories(1)
    for a, b in zip(long, short, strict=True):
        n = len(b.rounds)
        # the shorter run never critiques its last round: the budget stopped it first
        assert [_signature(r, i < n - 1) for i, r in enumerate(b.rounds)] == [
            _signature(r, i < n - 1) for i, r in enumerate(a.rounds[:n])]


async def test_runs_reproduce() -> None:
    a, b = await trajectories(2), await trajectories(2)
    assert [[_signature(r) for r in t.rounds] for t in a] == [[_signature(r) for r in t.rounds] for t in b]


async def test_transient_failures_are_retried_without_changing_results() -> None:
    fast = Runtime(RuntimeConfig(retry=RetryPolicy(max_attempts=10, initial_wait=0, max_wait=0, jitter=0)))
    clean = await trajectories(2)
    flaky = await trajectories(2, runtime=fast, fail_rate=0.4)
    assert [[_signature(r) for r in t.rounds] for t in clean] == [[_signature(r) for r in t.rounds] for t in flaky]
    assert sum(t.usage.retries for t in flaky) > 0


async def test_latency_holds_capacity_and_samples_overlap() -> None:
    """Each call holds a slot for 100 ms: one sample after another would take the sum of them all."""
    kit = dict(editor=create_tool("editor", "sim", {"latency_ms": 100, "max_concurrency": 16}),
               judge=create_tool("judge", "verify", {"latency_ms": 100, "max_concurrency": 16}),
               critic=create_tool("critic", "rule", {"latency_ms": 100, "max_concurrency": 16}))
    rt = Runtime()
    start = time.perf_counter()
    results = await asyncio.gather(*[refine(s.image(), s.instruction, budget=Budget(max_rounds=1), sample_id=s.id,
                                            runtime=rt, **kit) for s in SAMPLES])
    wall = time.perf_counter() - start
    serial = sum(r.trajectory.usage.total_calls for r in results) * 0.100
    assert wall < serial / 4, (wall, serial)


async def test_the_demo_numbers_on_100_samples() -> None:
    """The README's promise: refinement beats one-shot by at least 15 points, one-shot stays realistic."""
    samples = list(iter_samples(100, seed=0))
    run = await run_set(samples, critic="rule", max_rounds=3, skill=0.5, noise=0.0, seed=0, concurrency=16)
    one, refined = summarise(run.outcomes, final=False), summarise(run.outcomes, final=True)
    assert 0.40 <= one["pass_rate"] <= 0.75
    assert refined["pass_rate"] - one["pass_rate"] >= 0.15
    assert refined["mean_overall"] > one["mean_overall"]


async def test_a_noisy_loop_judge_is_also_scored_by_the_exact_verifier() -> None:
    samples = list(iter_samples(12, seed=0))
    run = await run_set(samples, critic="rule", max_rounds=2, skill=0.5, noise=2.0, seed=0, concurrency=4)
    assert all(o.exact is not None for o in run.outcomes)
    exact = summarise(run.outcomes, final=True, exact=True)
    noisy = summarise(run.outcomes, final=True)
    assert exact["n"] == noisy["n"] == 12 and exact["mean_overall"] != noisy["mean_overall"]
    exact_v = run.outcomes[0].exact[1]  # type: ignore[index]
    assert exact_v.info["noise"] == 0.0 and exact_v.ok
