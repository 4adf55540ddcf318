"""Tools as actors over several nodes. ``ray.cluster_utils.Cluster`` runs a head and two more raylets on this
machine, the two with fake GPUs, so 'one actor per GPU over two nodes' is Ray's real scheduling, and removing a
node kills its processes as a lost machine would."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refine_agent.config import ToolSpec
from refine_agent.errors import ConfigError, ToolUnavailableError
from refine_agent.placement import RayConfig
from refine_agent.session import make_tool
from refine_agent.types import EditRequest

from .common import cli, no_actors_left, records, same_numbers, summary
from .test_local import RUN, bench_with, finish, scene

FAST_HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 3}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    import ray
    from ray._private.utils import get_ray_address_file
    from ray.cluster_utils import Cluster

    # Cluster records its head as this machine's current Ray (what 'auto' finds): put back what was there
    address_file = Path(get_ray_address_file(None))
    before = address_file.read_text() if address_file.is_file() else None
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                      "_system_config": FAST_HEALTH})
    for _ in range(2):
        c.add_node(num_cpus=2, num_gpus=2)
    ray.init(address=c.address, log_to_driver=False, logging_level=logging.WARNING)
    c.wait_for_nodes()
    yield c
    ray.shutdown()
    c.shutdown()
    if before is None:
        address_file.unlink(missing_ok=True)
    else:
        address_file.write_text(before)


def test_one_actor_per_gpu_over_two_nodes_and_a_node_lost_mid_run(cluster: Any, tmp_path: Path,
                                                                  release_pool: None) -> None:
    import ray

    base = tmp_path / "in-process"
    cli("bench", "synthetic", "--run-dir", base, *RUN)
    run = tmp_path / "run"
    bench = bench_with(run, editor_opt=["workers=4", "num_gpus=1", "latency_ms=150"])
    data = bench.prepare(False)
    placed = bench.info["cluster"]["tools"]["editor"]["actors"]
    by_node: dict[str, list[str]] = {}
    for actor in placed:
        by_node.setdefault(actor["node_id"], []).extend(actor["accelerators"]["GPU"])
    assert sorted(map(sorted, by_node.values())) == [["0", "1"], ["0", "1"]]  # two nodes, one actor per GPU
    assert all(a["resources"]["GPU"] == 1 for a in placed)
    lost = next(node for node in cluster.worker_nodes if node.node_id in by_node)
    removed: list[float] = []

    def remove_a_node(event: Any) -> None:
        if event.kind == "editor" and event.phase == "end" and not removed:
            cluster.remove_node(lost, allow_graceful=False)  # its raylet and its actors die at once
            removed.append(time.monotonic())

    finish(bench, data, remove_a_node)
    assert removed and bench.runtime.stats.retries >= 1
    assert records(run) == ({"done": 12}, 0)
    same_numbers(summary(run), summary(base))
    states = {a["node_id"]: a["state"] for a in bench.placement()["tools"]["editor"]["actors"]}
    assert states[lost.node_id] == "restarting"  # no GPU left anywhere for it: never placed again
    no_actors_left(ray)


async def test_when_no_actor_can_come_back_calls_fail_in_bounded_time(cluster: Any, release_pool: None) -> None:
    import ray

    node = cluster.add_node(num_cpus=2, num_gpus=2, resources={"doomed": 2})
    cluster.wait_for_nodes()
    config = RayConfig(address="auto", revive_timeout_s=2)
    options = {"workers": 2, "num_gpus": 1, "resources": {"doomed": 1}}  # both actors on the node removed below
    with pytest.raises(ConfigError, match="room for 2"):  # refused at once, not left pending
        await make_tool("editor", ToolSpec(spec="sim", options={**options, "workers": 3}), config).load()
    tool = make_tool("editor", ToolSpec(spec="sim", options=options), config)
    await tool.load()
    assert {a.info["node_id"] for a in tool.actors} == {node.node_id}
    image, instruction = scene()
    req = EditRequest(image=image, instruction=instruction, seed=1)
    await tool.edit(req)
    cluster.remove_node(node, allow_graceful=False)
    started = time.monotonic()
    for _ in range(3):  # the first calls find their actors lost; then none comes back within revive_timeout_s
        try:
            await asyncio.wait_for(tool.edit(req), 30)
        except ToolUnavailableError as exc:
            assert "none of its 2 Ray actors came back within 2s" in str(exc)
            break
        except Exception as exc:
            assert tool.is_transient(exc), exc
    else:
        pytest.fail("no ToolUnavailableError")
    assert time.monotonic() - started < 20
    await tool.aclose()
    no_actors_left(ray)
