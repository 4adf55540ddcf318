"""Scheduling and memory of the benchmark harness, measured in one process. Run it; it prints ratios.

    python -m refine_agent.benchmarks.perf.schedule            # the schedule benchmark, then peak RSS at 1,000 / 10,000
    python -m refine_agent.benchmarks.perf.schedule --quick    # smaller: 16 samples, RSS at 200 / 2,000

Schedule: the real ``bench`` runner on synthetic samples with simulated service times (editor capacity 1,
50 ms; judge capacity 8, 150 ms; critic capacity 8, 100 ms) and a fixed 3 re-edit rounds. It prints the
makespan, the resource lower bound (the larger of: each tool's total service time over its capacity, and
the longest chain of one sample's calls), their ratio, and the makespan of a stage-by-stage schedule like
RE-Edit's (all edits, then all judgments, then all critiques, round after round) run here with the same
tools. Target: makespan within 1.10x of the lower bound.

Memory: peak RSS of ``bench`` at N and 10N samples with zero latency, each in a fresh process. Samples
stream through a fixed number of workers and images go to disk, so it should stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from refine_agent.benchmarks.runner import Bench, BenchSettings

from refine_agent.cache import cache_key
from refine_agent.config import RunConfig, ToolSpec
from refine_agent.loop import LoopPolicy, derive_seed
from refine_agent.protocols import tool_identity
from refine_agent.runtime import Runtime
from refine_agent.store import RunStore
from refine_agent.types import CritiqueRequest, EditRequest, JudgeRequest, Round, Verdict

TOOLS = {
    "editor": ToolSpec(spec="sim", options={"max_concurrency": 1, "latency_ms": 50}),
    "judge": ToolSpec(spec="verify", options={"max_concurrency": 8, "latency_ms": 150}),
    "critic": ToolSpec(spec="repeat", options={"max_concurrency": 8, "latency_ms": 100, "until_pass": False}),
}
CAPACITY = {"editor": 1, "judge": 8, "critic": 8}


def fixed_rounds_config(rounds: int) -> RunConfig:
    return RunConfig(editor=TOOLS["editor"], judge=TOOLS["judge"], critic=TOOLS["critic"],
                     budget={"max_rounds": rounds}, policy=LoopPolicy(stop_on_pass=False))


def pipelined(samples: int, rounds: int, max_samples: int) -> tuple[float, dict[str, float], float, dict[str, int]]:
    """Makespan of the real runner, total service time per tool kind, the longest sample chain, and the
    calls per tool kind."""
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "run")
        bench = Bench(fixed_rounds_config(rounds), BenchSettings(dataset="synthetic", limit=samples,
                                                                 max_samples=max_samples), store)
        data = bench.prepare(resume=False)
        start = time.perf_counter()
        asyncio.run(bench.run(data))
        makespan = time.perf_counter() - start
        service: dict[str, float] = defaultdict(float)
        calls: dict[str, int] = defaultdict(int)
        chain = 0.0
        for rec in store.iter_samples():
            assert rec.trajectory is not None
            mine = 0.0
            for r in rec.trajectory.rounds:
                for c in r.calls:
                    service[c.kind] += c.service_s
                    calls[c.kind] += 1
                    mine += c.service_s
            chain = max(chain, mine)
        store.close()
    return makespan, dict(service), chain, dict(calls)


async def _staged(samples: int, rounds: int) -> float:
    """All edits, then all judgments, then all critiques, round after round, with the same tools and limits."""
    from refine_agent.tools.synthetic.generate import iter_samples

    from refine_agent.registry import create_tool

    editor, judge, critic = (create_tool(k, s.spec, s.options) for k, s in TOOLS.items())
    rt = Runtime()
    items = list(iter_samples(samples, seed=0))
    sources = {s.id: s.image() for s in items}
    current = dict(sources)
    instruction = {s.id: s.instruction for s in items}
    history: dict[str, list[Round]] = {s.id: [] for s in items}
    verdicts: dict[str, Verdict] = {}

    async def edit(sid: str, k: int) -> None:
        req = EditRequest(image=current[sid], instruction=instruction[sid], seed=derive_seed(0, sid, k, "edit"),
                          source=sources[sid])
        key = cache_key(tool_identity(editor), "edit", images=[req.image.sha256], text=req.instruction, seed=req.seed)
        current[sid] = (await rt.call("editor", editor, lambda: editor.edit(req), key=key)).value.image

    async def grade(sid: str, k: int) -> None:
        req = JudgeRequest(source=sources[sid], edited=current[sid], instruction=instruction[sid],
                           seed=derive_seed(0, sid, k, "judge"))
        verdicts[sid] = (await rt.call("judge", judge, lambda: judge.judge(req))).value

    async def critique(sid: str, k: int) -> None:
        history[sid].append(Round(index=k, instruction=instruction[sid], base="source", verdict=verdicts[sid]))
        req = CritiqueRequest(source=sources[sid], edited=current[sid], instruction=instruction[sid],
                              verdict=verdicts[sid], history=history[sid], seed=derive_seed(0, sid, k, "critic"))
        await rt.call("critic", critic, lambda: critic.critique(req))
        current[sid] = sources[sid]  # repeat restarts from the source

    start = time.perf_counter()
    for k in range(rounds + 1):
        await asyncio.gather(*(edit(s.id, k) for s in items))
        await asyncio.gather(*(grade(s.id, k) for s in items))
        if k < rounds:
            await asyncio.gather(*(critique(s.id, k) for s in items))
    return time.perf_counter() - start


def schedule(samples: int, rounds: int, max_samples: int) -> dict[str, float]:
    makespan, service, chain, calls = pipelined(samples, rounds, max_samples)
    per_tool = {k: service.get(k, 0.0) / CAPACITY[k] for k in CAPACITY}
    bound = max(max(per_tool.values()), chain)
    # The measured service time includes the tools' own compute under contention; the simulated latency
    # alone gives a stricter (lower) bound, printed beside it.
    nominal = max(calls.get(k, 0) * TOOLS[k].options["latency_ms"] / 1000 / CAPACITY[k] for k in CAPACITY)
    staged = asyncio.run(_staged(samples, rounds))
    return {"samples": samples, "rounds": rounds, "max_samples": max_samples, "makespan_s": makespan,
            "lower_bound_s": bound, "ratio_to_bound": makespan / bound, "latency_bound_s": nominal,
            "ratio_to_latency_bound": makespan / nominal, "staged_makespan_s": staged,
            "staged_over_pipelined": staged / makespan, "longest_chain_s": chain,
            **{f"{k}_busy_s": v for k, v in per_tool.items()}}


RSS_CHILD = """
import json, resource, sys, tempfile
from pathlib import Path
from refine_agent.config import RunConfig
from refine_agent.store import RunStore
from refine_agent.benchmarks.runner import Bench, BenchSettings
import asyncio
n = int(sys.argv[1])
with tempfile.TemporaryDirectory() as tmp:
    store = RunStore(Path(tmp) / "run")
    bench = Bench(RunConfig(budget={"max_rounds": 1}), BenchSettings(dataset="synthetic", limit=n, max_samples=8),
                  store)
    data = bench.prepare(resume=False)
    asyncio.run(bench.run(data))
    from refine_agent.benchmarks.evaluate import summarize
    summarize(store, bench.info)
    done = store.count_samples().get("done", 0)
print(json.dumps({"n": n, "done": done, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss(n: int) -> dict[str, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, str(n)], capture_output=True, text=True, check=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a fast look")
    ap.add_argument("--samples", type=int, default=None, help="samples for the schedule benchmark (64)")
    ap.add_argument("--max-samples", type=int, default=64, help="samples in flight in the runner")
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    n = args.samples or (16 if args.quick else 64)
    s = schedule(n, 3, args.max_samples)
    print(f"schedule: {s['samples']} samples x (1 + {s['rounds']}) rounds, {s['max_samples']} in flight")
    print(f"  makespan            {s['makespan_s']:7.2f} s")
    print(f"  lower bound         {s['lower_bound_s']:7.2f} s  (editor {s['editor_busy_s']:.2f}, judge "
          f"{s['judge_busy_s']:.2f}, critic {s['critic_busy_s']:.2f}, longest chain {s['longest_chain_s']:.2f})")
    print(f"  makespan / bound    {s['ratio_to_bound']:7.3f}   (target <= 1.10)")
    print(f"  latency-only bound  {s['latency_bound_s']:7.2f} s  (simulated service times alone, no compute): "
          f"ratio {s['ratio_to_latency_bound']:.3f}")
    print(f"  stage-by-stage      {s['staged_makespan_s']:7.2f} s  = {s['staged_over_pipelined']:.2f}x the pipelined "
          "makespan")
    if not args.skip_rss:
        small, large = (200, 2000) if args.quick else (1000, 10000)
        a, b = peak_rss(small), peak_rss(large)
        print(f"memory: peak RSS {a['peak_rss_mb']:.0f} MB at {a['n']} samples ({a['seconds']:.0f} s), "
              f"{b['peak_rss_mb']:.0f} MB at {b['n']} samples ({b['seconds']:.0f} s): ratio "
              f"{b['peak_rss_mb'] / a['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
