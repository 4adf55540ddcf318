"""The Ray cluster a run's actors live on: connect to it (or start a local one), describe it for run.json, and
clean up after the run: the actors this process created are killed, and a cluster is stopped only if this
process started it."""

from __future__ import annotations

import logging
import socket
from types import ModuleType
from typing import Any

from refine_agent.errors import ConfigError, MissingExtraError, RefineAgentError, describe
from refine_agent.placement import Placement, RayConfig
from refine_agent.pool import ModelKey, model_pool

from .shipping import ImageRefs

NAMESPACE = "refine-agent"  # our actors' names are unique per run inside it, so drivers never collide
_BOOKKEEPING = ("memory", "object_store_memory")  # resources that say nothing about what a node can run


def import_ray() -> ModuleType:
    try:
        import ray
    except ModuleNotFoundError:
        raise MissingExtraError("ray", "ray", "running tools as Ray actors (--ray, workers=N)") from None
    return ray


class RayCluster:
    """A connection to a Ray cluster, shared by every tool of a run through the model pool, so that whatever
    ends the command (its end, Ctrl-C, an error) closes it: ``close()`` kills the actors this process created,
    forgets the images it put, and stops the cluster only if it started it."""

    def __init__(self, address: str, started_here: bool) -> None:
        self.ray = import_ray()
        self.address = address
        self.started_here = started_here
        self.images = ImageRefs(self.ray.put)
        self._actors: dict[str, Any] = {}  # name -> handle: each live actor we created

    def track(self, name: str, handle: Any) -> None:
        self._actors[name] = handle

    def kill(self, name: str) -> None:
        handle = self._actors.pop(name, None)
        if handle is not None and self.ray.is_initialized():
            try:
                self.ray.kill(handle, no_restart=True)
            except Exception:  # already gone with its node, or the cluster with it: nothing left to stop
                pass

    def nodes(self) -> list[dict[str, Any]]:
        """The live nodes: id, address and what they offer (CPU, GPU, custom resources)."""
        out = []
        for node in self.ray.nodes():
            if not node.get("Alive"):
                continue
            res = node.get("Resources", {})
            out.append({"node_id": node["NodeID"], "ip": node.get("NodeManagerAddress"),
                        "head": "node:__internal_head__" in res,
                        "resources": {k: v for k, v in sorted(res.items())
                                      if not k.startswith("node:") and k not in _BOOKKEEPING}})
        return out

    def record(self) -> dict[str, Any]:
        """For run.json: Ray's version, how we reached the cluster, and its nodes."""
        return {"ray_version": self.ray.__version__, "address": self.address, "started_here": self.started_here,
                "nodes": self.nodes()}

    def check_room(self, kind: str, placement: Placement) -> None:
        """Refuse at once what the cluster's nodes cannot hold, instead of actors that wait forever for room."""
        demand = {k: v for k, v in placement.demand().items() if v > 0}
        if not demand:
            return
        nodes = self.nodes()
        room = sum(min(int(n["resources"].get(k, 0) // v) for k, v in demand.items()) for n in nodes)
        if room < placement.workers:
            asked = ", ".join(f"{k}={v:g}" for k, v in demand.items())
            offer = "; ".join(", ".join(f"{k}={v:g}" for k, v in n["resources"].items()) or "nothing"
                              for n in nodes)
            raise ConfigError(f"{kind} workers={placement.workers} ask for {asked} each, but the Ray cluster has "
                              f"room for {room} (its nodes: {offer}); lower workers or add nodes")

    def close(self) -> None:
        for name in list(self._actors):
            self.kill(name)
        self.images.forget()
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()


def connect(config: RayConfig) -> RayCluster:
    """Connect to the cluster ``config`` names; ``local`` starts one here (stopped when the run ends). A process
    already connected (a notebook, a test) keeps its own connection, which is never stopped by us."""
    ray = import_ray()
    if ray.is_initialized():
        return RayCluster(config.address, started_here=False)
    local = config.address == "local"
    if not local and (config.num_cpus is not None or config.num_gpus is not None):
        raise ConfigError("ray num_cpus and num_gpus size a local cluster (--ray local); a running cluster has "
                          "its own")
    sizes = {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus, "include_dashboard": False} if local else {}
    if not local:
        _check_reachable(ray, config.address)
    try:
        # Actors' own logs stay in the cluster's session folder: they would garble the progress bar here.
        ray.init(address=config.address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                 **sizes)
    except Exception as exc:
        where = "start a local Ray cluster" if local else f"connect to the Ray cluster at {config.address}"
        how = "" if local else " (is its head running? 'ray start --head' starts one; --ray local starts one here)"
        raise RefineAgentError(f"cannot {where}: {describe(exc)}{how}") from None
    return RayCluster(config.address, started_here=local)


def _check_reachable(ray: ModuleType, address: str) -> None:
    """Fail in seconds on a head that is not there: Ray itself retries a dead address for minutes."""
    target = address.removeprefix("ray://")
    if target == "auto":
        try:  # RAY_ADDRESS, else the cluster 'ray start' last started here
            target = ray._private.services.canonicalize_bootstrap_address("auto") or ""
        except Exception:  # none found: Ray's own error says so at once
            return
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise RefineAgentError(f"cannot connect to the Ray cluster at {address} ({host}:{port}): "
                               f"{exc.strerror or describe(exc)} (is its head running? 'ray start --head' starts "
                               "one; --ray local starts one here)") from None


async def shared_cluster(config: RayConfig) -> RayCluster:
    """The process's one connection to ``config.address``, held by the model pool (which every command closes)."""

    async def start() -> RayCluster:
        return connect(config)  # ray.init blocks for seconds, once, before any call is in flight

    return await model_pool().aget(ModelKey(path=config.address, kind="ray-cluster"), start)
