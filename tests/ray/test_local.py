"""Tools as Ray actors on one local Ray (started once for this module): results equal to the in-process run, an
actor killed mid-call, every actor dead then --resume, kill -9 of the driver then --resume, a tiny diffusers
editor in actors, and a ``--ray local`` cluster that goes away with the command."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from refine_agent.cli.options import config_from_flags
from refine_agent.config import ToolSpec
from refine_agent.errors import ConfigError, ToolUnavailableError, UnsupportedInstructionError
from refine_agent.images import Image
from refine_agent.placement import RayConfig
from refine_agent.session import make_tool
from refine_agent.store import RunStore
from refine_agent.types import EditRequest

from .common import alive, cli, descendants, no_actors_left, our_actors, records, same_numbers, summary

ROOT = Path(__file__).resolve().parents[2]
RUN = ["--limit", "12", "--max-rounds", "2", "--seed", "5"]  # what decides results; latency and workers do not
LOCAL = RayConfig(address="local")


def scene() -> tuple[Image, str]:
    from refine_agent.tools.synthetic.generate import iter_samples

    sample = next(iter(iter_samples(1, seed=3)))
    return sample.image(), sample.instruction


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    """The summary of the same bench run without Ray (memoised: several tests compare with one)."""
    done: dict[tuple[str, ...], dict[str, Any]] = {}

    def run(*args: str) -> dict[str, Any]:
        if args not in done:
            path = tmp_path_factory.mktemp("in-process") / "run"
            cli("bench", "synthetic", "--run-dir", str(path), *args)
            done[args] = summary(path) | {"run.json": json.loads((path / "run.json").read_text())}
        return done[args]

    return run


def bench_with(run: Path, **flags: Any) -> Any:
    """A Bench driven by the test (to act mid-run through runtime events), as 'bench synthetic' builds it."""
    from refine_agent.benchmarks.runner import Bench, BenchSettings

    cfg = config_from_flags(config=None, max_rounds=2, seed=5, ray="local", **flags)
    return Bench(cfg, BenchSettings(dataset="synthetic", limit=12), RunStore(run, writer=True))


def finish(bench: Any, data: Any, on_event: Callable[[Any], None]) -> None:
    from refine_agent.benchmarks.evaluate import summarize
    from refine_agent.benchmarks.summary_file import save_summary

    bench.runtime.subscribe(on_event)
    asyncio.run(bench.run(data))
    save_summary(bench.store.dir / "summary.json", summarize(bench.store, bench.info))
    bench.store.close()


def test_bench_with_tools_as_actors_equals_the_in_process_run(ray_local: Any, tmp_path: Path,
                                                              in_process: Callable[..., dict[str, Any]]) -> None:
    quick = tmp_path / "retry.yaml"  # waits between retries change no result: keep them short
    quick.write_text("runtime: {retry: {initial_wait: 0.02, max_wait: 0.05, jitter: 0.02}}\n")
    # failures seeded per attempt: the runtime's attempt numbers travel to the actors
    flaky = [*RUN, "-E", "fail_rate=0.2", "--max-attempts", "8", "--config", str(quick)]
    base = in_process(*flaky)
    run = tmp_path / "ray"
    cli("bench", "synthetic", "--run-dir", run, *flaky, "--ray", "local", "-E", "workers=2", "-J", "workers=2",
        "-C", "workers=1")
    same_numbers(summary(run), base, keys=("tool_calls", "n_samples", "errors", "by_category"))
    info = json.loads((run / "run.json").read_text())
    assert info["tools"] == base["run.json"]["tools"]  # same identities: same cache keys, same records
    placed = info["cluster"]
    assert placed["cluster"]["ray_version"] == ray_local.__version__ and placed["cluster"]["nodes"]
    assert placed["tools"]["refine_editor"] == {"same_as": "editor"}
    for role, n in (("editor", 2), ("judge", 2), ("critic", 1)):
        actors = placed["tools"][role]["actors"]
        assert len(actors) == n and all(a["state"] == "alive" and a["node_id"] and a["pid"] for a in actors), role
        assert placed["tools"][role]["placement"] == {"workers": n}
    no_actors_left(ray_local)


def test_an_actor_killed_mid_call_is_retried_on_another_and_changes_nothing(
        ray_local: Any, tmp_path: Path, in_process: Callable[..., dict[str, Any]], release_pool: None) -> None:
    base = in_process(*RUN)
    bench = bench_with(tmp_path / "run", editor_opt=["workers=2", "latency_ms=150"])
    data = bench.prepare(False)
    killed: list[int] = []

    def kill_a_busy_actor(event: Any) -> None:
        if event.kind == "editor" and event.phase == "end" and not killed:
            busy = [a for a in bench.tools.editor.actors if a.in_flight and a.state == "alive"]
            if busy:
                ray_local.kill(busy[0].handle, no_restart=False)  # as a node loss or an OOM kill would
                killed.append(busy[0].index)

    finish(bench, data, kill_a_busy_actor)
    assert killed and bench.runtime.stats.retries >= 1
    assert records(tmp_path / "run") == ({"done": 12}, 0)
    same_numbers(summary(tmp_path / "run"), base)
    no_actors_left(ray_local)


def test_when_every_actor_dies_calls_fail_clearly_and_resume_finishes(
        ray_local: Any, tmp_path: Path, in_process: Callable[..., dict[str, Any]], release_pool: None) -> None:
    base = in_process(*RUN)
    run = tmp_path / "run"
    bench = bench_with(run, editor_opt=["workers=1", "max_restarts=0", "latency_ms=100"])
    data = bench.prepare(False)
    ends = [0]

    def kill_for_good(event: Any) -> None:
        if event.kind == "editor" and event.phase == "end":
            ends[0] += 1
            if ends[0] == 3:
                ray_local.kill(bench.tools.editor.actors[0].handle, no_restart=True)

    started = time.monotonic()
    finish(bench, data, kill_for_good)
    assert time.monotonic() - started < 60  # no call waited on the dead actor
    status, _ = records(run)
    assert status.get("error", 0) >= 1
    failed = [r for r in RunStore(run, writer=False).iter_samples() if r.status == "error"]
    assert {r.error_kind for r in failed} == {"tool_unavailable"}
    assert "all 1 of its Ray actors died" in (failed[0].error or "") and "--resume" in (failed[0].error or "")
    cli("bench", "synthetic", "--run-dir", run, *RUN, "--resume", "--ray", "local", "-E", "workers=2")
    assert records(run) == ({"done": 12}, 0)
    same_numbers(summary(run), base)
    no_actors_left(ray_local)


def test_kill_9_of_the_driver_then_resume_with_ray_loses_nothing(
        ray_local: Any, tmp_path: Path, in_process: Callable[..., dict[str, Any]]) -> None:
    args = ["--limit", "16", "--max-rounds", "2", "--seed", "5"]
    base = in_process(*args)
    run = tmp_path / "run"
    # a second driver on this module's cluster (by its head's address), as a user's second shell would be
    address = ray_local.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "refine_agent", "bench", "synthetic", "--run-dir", str(run), *args,
           "--max-samples", "4", "--ray", address, "-E", "workers=2", "-E", "latency_ms=200"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "COLUMNS": "120"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while records_done(run) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    assert len(our_actors(ray_local)) == 2
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    no_actors_left(ray_local)  # owned by the dead driver, they die with it
    assert 4 <= records_done(run) < 16
    cli("bench", "synthetic", "--run-dir", run, *args, "--resume", "--ray", "local", "-E", "workers=2")
    assert records(run) == ({"done": 16}, 0)
    same_numbers(summary(run), base)
    no_actors_left(ray_local)


def test_ctrl_c_stops_our_actors_and_never_a_cluster_we_did_not_start(ray_local: Any, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "refine_agent", "bench", "synthetic", "--run-dir", str(run), "--limit", "40",
           "--max-samples", "4", "--ray", ray_local.get_runtime_context().gcs_address, "-E", "workers=2",
           "-E", "latency_ms=300"]
    # as from a terminal: SIGINT raises KeyboardInterrupt (a background job of a shell would ignore it)
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "COLUMNS": "120"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while records_done(run) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None and len(our_actors(ray_local)) == 2
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" in err and "Traceback" not in err, err
    no_actors_left(ray_local)
    assert ray_local.is_initialized() and all(node["Alive"] for node in ray_local.nodes())  # still up


def records_done(run: Path) -> int:
    if not (run / "records.sqlite").exists():
        return 0
    try:
        return records(run)[0].get("done", 0)
    except Exception:  # the store is being created
        return 0


async def test_a_lost_actor_is_transient_comes_back_and_a_dead_one_fails_at_once(ray_local: Any,
                                                                                 release_pool: None) -> None:
    from refine_agent.tools.distributed.actor_tool import ActorLost

    image, instruction = scene()
    tool = make_tool("editor", ToolSpec(spec="sim", options={"workers": 1, "max_restarts": 1, "latency_ms": 3000}),
                     LOCAL)
    await tool.load()
    fast = EditRequest(image=image, instruction=instruction, seed=1)
    slow = asyncio.ensure_future(tool.edit(fast))
    await asyncio.sleep(0.5)
    ray_local.kill(tool.actors[0].handle, no_restart=False)
    with pytest.raises(ActorLost, match="was lost mid-call") as lost:
        await asyncio.wait_for(slow, 30)
    assert tool.is_transient(lost.value) is True
    out = await asyncio.wait_for(tool.edit(fast), 60)  # served once Ray has restarted it and it has loaded
    assert out.image.size == image.size and tool.actors[0].restarts == 1
    ray_local.kill(tool.actors[0].handle, no_restart=False)  # its last restart is used up: dead for good
    with pytest.raises(ActorLost):
        await asyncio.wait_for(tool.edit(fast), 30)
    started = time.monotonic()
    with pytest.raises(ToolUnavailableError, match="all 1 of its Ray actors died"):
        await asyncio.wait_for(tool.edit(fast), 30)
    assert time.monotonic() - started < 5
    await tool.aclose()


async def test_a_tools_own_errors_keep_their_type_and_classification(ray_local: Any, release_pool: None) -> None:
    image, instruction = scene()
    tool = make_tool("editor", ToolSpec(spec="sim", options={"workers": 1}), LOCAL)
    await tool.load()
    with pytest.raises(UnsupportedInstructionError, match="does not understand") as bad:
        await tool.edit(EditRequest(image=image, instruction="sing a song", seed=1))
    assert tool.is_transient(bad.value) is False and bad.value.exit_code == 2
    big = Image(image.array.repeat(2, axis=0).repeat(2, axis=1))
    refs = tool._cluster.images  # images above Ray's inline size go by reference, put once
    assert refs.ship(big) is refs.ship(big) and not isinstance(refs.ship(big), Image)
    small = Image(image.array[:32, :32])
    assert refs.ship(small) is small  # small ones travel inside the call
    await tool.aclose()
    broken = make_tool("editor", ToolSpec(spec="sim", options={"workers": 1, "skill": 3}), LOCAL)
    with pytest.raises(ConfigError, match="skill"):  # built in the actor: its one-line error comes back
        await broken.load()
    no_actors_left(ray_local)


@pytest.mark.skipif(importlib.util.find_spec("diffusers") is None or importlib.util.find_spec("torch") is None,
                    reason="the local extra (torch, diffusers) is not installed")
def test_a_tiny_diffusers_editor_runs_in_actors(ray_local: Any, tmp_path: Path) -> None:
    from tests.tiny_pipelines import build

    folder = build("ip2p", tmp_path / "pipelines")
    args = ["--limit", "2", "--max-rounds", "0", "--editor", f"diffusers:{folder}", "-E", "num_inference_steps=2"]
    here, there = tmp_path / "here", tmp_path / "there"
    cli("bench", "synthetic", "--run-dir", here, *args)
    cli("bench", "synthetic", "--run-dir", there, *args, "--ray", "local", "-E", "workers=1")
    info = json.loads((there / "run.json").read_text())
    assert info["tools"]["editor"] == json.loads((here / "run.json").read_text())["tools"]["editor"]
    actor = info["cluster"]["tools"]["editor"]["actors"][0]
    assert actor["state"] == "alive" and actor["pid"] != os.getpid()
    assert records(there) == ({"done": 2}, 0)
    no_actors_left(ray_local)


def test_ray_local_starts_a_cluster_and_leaves_no_process_behind(tmp_path: Path) -> None:
    image, instruction = scene()
    image.save(tmp_path / "scene.png")
    cmd = [sys.executable, "-m", "refine_agent", "edit", str(tmp_path / "scene.png"), instruction, "--out",
           str(tmp_path / "out"), "--max-rounds", "1", "--ray", "local", "-E", "workers=1", "-J", "workers=1"]
    env = {**os.environ, "COLUMNS": "120", "RAY_ADDRESS": ""}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[int] = set()
    while proc.poll() is None:  # every process the command starts (Ray's head, raylet, agents, actors)
        seen |= descendants(proc.pid)
        time.sleep(0.1)
    out, err = proc.communicate()
    assert proc.returncode in (0, 1), err  # 1: the simulated edit did not pass
    assert (tmp_path / "out" / "trajectory.json").is_file() and "Traceback" not in err
    assert len(seen) >= 3
    deadline = time.monotonic() + 20
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(seen), [Path(f"/proc/{p}/cmdline").read_text()[:80] for p in alive(seen)]
