"""Tools as Ray actors: throughput over editor actors, and what one actor call costs. Run it; it prints ratios.

    python -m refine_agent.benchmarks.perf.ray_scaling             # 1, 2, 4, 8 editor actors on a local Ray
    python -m refine_agent.benchmarks.perf.ray_scaling --quick     # 1, 2, 4 actors, fewer samples
    python -m refine_agent.benchmarks.perf.ray_scaling --ray auto  # on a running cluster (see the README)

Scaling: synthetic samples through the real loop (round 0: an edit, then a judgment), many at once, with
simulated service times: the sim editor takes 200 ms and serves one call at a time per actor; the verify judge
takes 100 ms and serves 4 at a time per actor, with half as many judge actors as editor actors (so the judge
never limits). At N = 1, 2, 4, 8 editor actors it prints samples per second and the scaling efficiency,
throughput(N) / (N x throughput(1)). Target: 0.9 or more at 8 actors.

Overhead: the same edit with no simulated latency, one call at a time, through the runtime, with the editor in
this process and then as one actor. The difference per call is what the actor call costs (the request and its
images to the actor, the result back). Target: 5 ms or less.

The simulated tools also do their real work (parse, detect, draw, verify) on a CPU: on a machine with few cores
that work, not Ray, can be what limits the larger N; the report prints the cores it ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from refine_agent.tools.synthetic.generate import iter_samples

from refine_agent.config import RunConfig, ToolSpec
from refine_agent.images import Image
from refine_agent.placement import RayConfig
from refine_agent.pool import model_pool
from refine_agent.protocols import close_tools, load_tools
from refine_agent.runtime import Runtime, RuntimeConfig
from refine_agent.session import build_tools, make_tool, run_one
from refine_agent.types import EditRequest

EDIT_MS, EDIT_CAP = 200, 1
JUDGE_MS, JUDGE_CAP = 100, 4


def scenes(n: int) -> list[tuple[str, Image, str]]:
    """Samples made before any clock starts: drawing them is not what is measured."""
    return [(s.id, s.image(), s.instruction) for s in iter_samples(n, seed=0)]


async def throughput(editors: int, samples: list[tuple[str, Image, str]], ray: RayConfig) -> float:
    """Samples per second through round 0 with ``editors`` editor actors."""
    cfg = RunConfig(
        editor=ToolSpec(spec="sim", options={"workers": editors, "latency_ms": EDIT_MS, "max_concurrency": EDIT_CAP}),
        judge=ToolSpec(spec="verify", options={"workers": max(1, editors // 2), "latency_ms": JUDGE_MS,
                                               "max_concurrency": JUDGE_CAP}),
        budget={"max_rounds": 0}, runtime=RuntimeConfig(cache=False), ray=ray)
    tools = build_tools(cfg)
    await tools.load()
    runtime = Runtime(cfg.runtime)
    gate = asyncio.Semaphore(4 * editors * EDIT_CAP + 4)  # enough in flight to keep every actor busy

    async def one(sample_id: str, image: Image, instruction: str) -> None:
        async with gate:
            await run_one(cfg, tools, image, instruction, sample_id=sample_id, runtime=runtime)

    try:
        await asyncio.gather(*(one(*s) for s in samples[: 2 * editors]))  # warm: first calls on every actor
        start = time.perf_counter()
        await asyncio.gather(*(one(*s) for s in samples))
        return len(samples) / (time.perf_counter() - start)
    finally:
        await tools.aclose()


async def sequential(tool: Any, requests: list[EditRequest]) -> float:
    """Seconds per edit, one at a time through the runtime, after ten to warm up."""
    runtime = Runtime(RuntimeConfig(cache=False))
    for i, req in enumerate(requests):
        if i == 10:
            start = time.perf_counter()
        await runtime.call("editor", tool, lambda r=req: tool.edit(r))  # type: ignore[misc]
    return (time.perf_counter() - start) / (len(requests) - 10)


async def per_call(calls: int, ray: RayConfig) -> dict[str, float]:
    """Seconds per sequential edit: in this process, through one actor, and a bare Ray actor round trip."""
    _, image, instruction = scenes(1)[0]
    requests = [EditRequest(image=image, instruction=instruction, seed=i) for i in range(calls + 10)]
    out: dict[str, float] = {}
    for where, options in (("in_process", {}), ("actor", {"workers": 1})):
        tool = make_tool("editor", ToolSpec(spec="sim", options={**options, "max_concurrency": 1}), ray)
        await load_tools(tool)
        out[where] = await sequential(tool, requests)
        await close_tools(tool)
    out["ray_round_trip"] = await round_trip(calls)
    return out


async def round_trip(calls: int) -> float:
    """Seconds per call of a method that does nothing on a bare async actor: Ray's own floor here."""
    import ray

    @ray.remote
    class Nothing:
        async def call(self) -> None:
            return None

    actor = Nothing.remote()  # type: ignore[attr-defined]
    for _ in range(10):
        await actor.call.remote()
    start = time.perf_counter()
    for _ in range(calls):
        await actor.call.remote()
    seconds = (time.perf_counter() - start) / calls
    ray.kill(actor)
    return seconds


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    ray = RayConfig(address=args.ray, num_cpus=64 if args.ray == "local" else None)
    sizes = [1, 2, 4] if args.quick else [1, 2, 4, 8]
    per_actor = args.samples_per_actor
    pool = scenes(per_actor * max(sizes))
    rates = {n: await throughput(n, pool[: per_actor * n], ray) for n in sizes}
    cost = await per_call(args.calls, ray)
    return {"cores": os.cpu_count(), "samples_per_second": rates,
            "efficiency": {n: rates[n] / (n * rates[1]) for n in sizes},
            "per_call_ms": {k: v * 1000 for k, v in cost.items()},
            "overhead_ms": (cost["actor"] - cost["in_process"]) * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1, 2 and 4 actors, fewer samples")
    ap.add_argument("--ray", default="local", help="local (default), auto or ray://HOST:PORT")
    ap.add_argument("--samples-per-actor", type=int, default=None, help="samples per editor actor")
    ap.add_argument("--calls", type=int, default=200, help="sequential calls for the overhead")
    args = ap.parse_args()
    args.samples_per_actor = args.samples_per_actor or (15 if args.quick else 40)
    try:
        result = asyncio.run(measure(args))
    finally:
        model_pool().close()  # the Ray connection: a local cluster stops here
    for n, rate in result["samples_per_second"].items():
        eff = result["efficiency"][n]
        print(f"{n} editor actor(s): {rate:6.2f} samples/s, scaling efficiency {eff:.2f}"
              f"{'' if n < 8 else '  (target >= 0.90)'}")
    ms = result["per_call_ms"]
    print(f"per call, no latency: {ms['in_process']:.2f} ms in process, {ms['actor']:.2f} ms through an actor: "
          f"overhead {result['overhead_ms']:.2f} ms (target <= 5 ms); a bare Ray actor round trip here: "
          f"{ms['ray_round_trip']:.2f} ms; {result['cores']} cores")
    print(json.dumps(result, default=lambda v: round(v, 4) if isinstance(v, float) else str(v)))


if __name__ == "__main__":
    main()
