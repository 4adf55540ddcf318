"""The driver's stand-in for a tool that runs as N Ray actors (``workers=N``).

It has the tool's protocol method, and after ``load()`` the tool's name and identity (reported by the actors,
whose devices decide e.g. a dtype), so the runtime, the cache and the records cannot tell it from the tool in
process: the same seeds give the same results. Its capacity is the sum of its actors'. Each call goes to the live
actor with the most free capacity. An actor lost mid-call (its node gone, an OOM kill) turns the call into a
transient error that the runtime retries on another actor, while Ray restarts the lost one (``max_restarts``);
the actor takes calls again once its tool has loaded. When every actor is dead for good, or none comes back
within ``revive_timeout_s``, calls fail at once with ``ToolUnavailableError``: never a hang.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import exceptions as rex

from refine_agent.errors import PermanentToolError, RefineAgentError, ToolUnavailableError, TransientToolError
from refine_agent.placement import Placement, RayConfig
from refine_agent.runtime import bill, current_attempt

from .calls import ACTOR_LOST, TRANSIENT_FLAG, ActorLost, Wakeup, cancel, settle, short
from .cluster import NAMESPACE, RayCluster, shared_cluster
from .host import Failed, ToolHost
from .shipping import pack


@dataclass
class _Actor:
    index: int
    name: str
    handle: Any
    capacity: int = 1
    in_flight: int = 0
    calls: int = 0
    state: str = "starting"  # starting | alive | restarting | dead
    restarts: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    watcher: asyncio.Task[None] | None = None


class RayTool:
    """A tool of one kind run as ``placement.workers`` Ray actors; see the module's docstring."""

    def __init__(self, kind: str, spec: str, options: dict[str, Any], placement: Placement,
                 config: RayConfig) -> None:
        self.kind = kind
        self.spec = spec
        self.options = options
        self.placement = placement
        self.config = config
        self.name = spec  # the tool's own name once its actors report it
        self._identity: dict[str, Any] | None = None
        self._actors: list[_Actor] = []
        self._cluster: RayCluster | None = None
        self._changed = Wakeup()
        self._run = uuid.uuid4().hex[:8]
        self._loading: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._ended: list[_Actor] = []  # the actors as they were when closed, for records after the run

    @property
    def actors(self) -> tuple[_Actor, ...]:
        """The tool's actors: handle, where it runs, calls in flight, state (for records and tests)."""
        return tuple(self._actors)

    # -- the hooks the runtime reads ------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return sum(a.capacity for a in self._actors) or self.placement.workers

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            raise RuntimeError(f"{self.kind} '{self.spec}' runs as Ray actors: its identity is known once they "
                               "have loaded (await load() first)")
        return self._identity

    def is_transient(self, exc: BaseException) -> bool | None:
        flag = getattr(exc, TRANSIENT_FLAG, None)
        return bool(flag) if flag is not None else (True if isinstance(exc, ActorLost) else None)

    # -- life cycle -----------------------------------------------------------------------------------------
    async def load(self) -> None:
        """Start the actors and wait until each has loaded the tool (idempotent)."""
        if self._actors:
            return
        loop = asyncio.get_running_loop()
        if self._loading is None or self._loading[0] is not loop:  # a lock belongs to one event loop
            self._loading = (loop, asyncio.Lock())
        async with self._loading[1]:
            if not self._actors:
                await self._start()

    async def _start(self) -> None:
        cluster = self._cluster = await shared_cluster(self.config)
        p = self.placement
        cluster.check_room(self.kind, p)
        sizes = {"num_cpus": p.num_cpus, "num_gpus": p.num_gpus, "resources": p.resources or None}
        opts = {k: v for k, v in sizes.items() if v is not None}
        restarts = self.config.max_restarts if p.max_restarts is None else p.max_restarts
        host = ray.remote(ToolHost)
        for i in range(p.workers):
            name = f"{self.kind}-{self._run}-{i}"
            # max_task_retries=0: the runtime retries a lost call, on another actor, within its own budget
            handle = host.options(name=name, namespace=NAMESPACE, max_restarts=restarts, max_task_retries=0,
                                  **opts).remote(self.kind, self.spec, self.options)
            cluster.track(name, handle)
            self._actors.append(_Actor(i, name, handle))
        try:
            infos = await asyncio.wait_for(asyncio.gather(*(a.handle.load.remote() for a in self._actors)),
                                           self.config.start_timeout_s)
            failed = next((i for i in infos if isinstance(i, Failed)), None)
            if failed is not None:
                raise failed.error
            if len({json.dumps(i["identity"], sort_keys=True, default=str) for i in infos}) > 1:
                raise RefineAgentError(f"{self.kind} '{self.spec}': its Ray actors built different tools (other "
                                       "model files or settings on some nodes?): "
                                       f"{sorted({json.dumps(i['identity'], default=str) for i in infos})[:2]}")
        except asyncio.TimeoutError:
            await self.aclose()
            raise RefineAgentError(f"{self.kind} '{self.spec}': its {p.workers} Ray actors were not all placed and "
                                   f"loaded within {self.config.start_timeout_s:g}s (ray start_timeout_s); each "
                                   f"asks for {p.demand() or 'the default 1 CPU'}") from None
        except ACTOR_LOST as exc:
            await self.aclose()
            raise RefineAgentError(f"{self.kind} '{self.spec}': a Ray actor died while loading: "
                                   f"{short(exc)}") from None
        except BaseException:
            await self.aclose()
            raise
        for actor, info in zip(self._actors, infos, strict=True):
            self._alive(actor, info)
        self.name = infos[0]["name"]
        self._identity = infos[0]["identity"]

    async def aclose(self) -> None:
        """Stop the actors: their tools release what they hold outside them, briefly; then the kill."""
        actors, self._actors = self._actors, []
        self._ended = actors or self._ended
        for a in actors:
            if a.watcher is not None:
                a.watcher.cancel()
        alive = [a.handle.close.remote() for a in actors if a.state == "alive"]
        if alive:
            await asyncio.wait([asyncio.ensure_future(settle(ref)) for ref in alive], timeout=10)
        for a in actors:
            if self._cluster is not None:
                self._cluster.kill(a.name)
        self._changed.fire()

    # -- calls ----------------------------------------------------------------------------------------------
    async def _call(self, request: Any) -> Any:
        if not self._actors:  # loaded by Toolset.load() before the run; a stand-in used alone loads here
            await self.load()
        assert self._cluster is not None
        actor = await self._acquire()
        actor.in_flight += 1
        actor.calls += 1
        ref = None
        try:
            sent, images = pack(request, self._cluster.images.ship)
            ref = actor.handle.call.remote(current_attempt(), sent, *images)
            reply = await ref
        except ACTOR_LOST as exc:
            self._lost(actor)
            raise ActorLost(f"{self.kind} '{self.name}': Ray actor {actor.index} "
                            f"({actor.info.get('node_ip', '?')}) was lost mid-call: {short(exc)}") from None
        except rex.ObjectLostError as exc:  # an image put earlier went with its node: put it again next time
            self._cluster.images.forget()
            raise TransientToolError(f"{self.kind} '{self.name}': an input was lost: {short(exc)}") from None
        except rex.RayTaskError as exc:  # the call could not even start in the actor (e.g. unpickling)
            raise PermanentToolError(f"{self.kind} '{self.name}': {short(exc.cause or exc)}") from None
        except asyncio.CancelledError:  # a timeout or Ctrl-C here: stop the work there too
            if ref is not None:
                cancel(ref)
            raise
        finally:
            actor.in_flight -= 1
            self._changed.fire()
        if isinstance(reply, Failed):
            for usage in reply.billed:
                bill(usage)
            try:
                setattr(reply.error, TRANSIENT_FLAG, reply.transient)
            except AttributeError:
                pass
            raise reply.error
        return reply

    async def _acquire(self) -> _Actor:
        """The live actor with the most free capacity (the least used among equals); waits while all are busy
        or restarting, but never past ``revive_timeout_s`` with none alive."""
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        while True:
            alive = [a for a in self._actors if a.state == "alive"]
            free = [a for a in alive if a.in_flight < a.capacity]
            if free:
                return max(free, key=lambda a: (a.capacity - a.in_flight, -a.calls))
            if all(a.state == "dead" for a in self._actors):
                raise ToolUnavailableError(
                    f"{self.kind} '{self.name}': all {len(self._actors)} of its Ray actors died and Ray will not "
                    "restart them (max_restarts used up); the samples are recorded as errors: run again with "
                    "--resume to finish them")
            if not alive:
                deadline = deadline or loop.time() + self.config.revive_timeout_s
                if loop.time() >= deadline:
                    raise ToolUnavailableError(
                        f"{self.kind} '{self.name}': none of its {len(self._actors)} Ray actors came back within "
                        f"{self.config.revive_timeout_s:g}s (a node lost, and no room elsewhere?); the samples are "
                        "recorded as errors: run again with --resume to finish them")
            await self._changed.wait(None if deadline is None else max(0.0, deadline - loop.time()))

    def _alive(self, actor: _Actor, info: dict[str, Any]) -> None:
        actor.info, actor.capacity, actor.state = info, max(1, int(info["capacity"])), "alive"

    def _lost(self, actor: _Actor) -> None:
        if actor.state == "alive":
            actor.state = "restarting"
            actor.watcher = asyncio.ensure_future(self._watch(actor))
            self._changed.fire()

    async def _watch(self, actor: _Actor) -> None:
        """Wait until Ray restarted the actor and its tool loaded again, or gave it up."""
        while actor.state == "restarting":
            try:
                info = await actor.handle.load.remote()
            except rex.ActorDiedError:  # dead for good: restarts used up, or killed
                actor.state = "dead"
            except ACTOR_LOST:  # still restarting (or waiting for room on a node)
                await asyncio.sleep(0.5)
                continue
            else:
                if isinstance(info, Failed):  # restarted, but its tool no longer loads
                    actor.state = "dead"
                else:
                    actor.restarts += 1
                    self._alive(actor, info)
        self._changed.fire()

    # -- records --------------------------------------------------------------------------------------------
    def placement_record(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The cluster, and this tool's actors: where each runs, what it holds, how often it was restarted, and
        its state (after the run: as it was at the end)."""
        cluster = self._cluster.record() if self._cluster is not None else {}
        actors = [{"index": a.index, "name": a.name, "state": a.state, "restarts": a.restarts,
                   "capacity": a.capacity, **{k: a.info.get(k) for k in ("node_id", "node_ip", "pid", "resources",
                                                                          "accelerators")}}
                  for a in self._actors or self._ended]
        return cluster, {"tool": self.name, "placement": self.placement.model_dump(exclude_defaults=True),
                         "actors": actors}


class RayEditor(RayTool):
    async def edit(self, req: Any) -> Any:
        return await self._call(req)


class RayJudge(RayTool):
    async def judge(self, req: Any) -> Any:
        return await self._call(req)


class RayCritic(RayTool):
    async def critique(self, req: Any) -> Any:
        return await self._call(req)


def remote_tool(kind: str, spec: str, options: dict[str, Any], placement: Placement, config: RayConfig) -> RayTool:
    """The stand-in for a ``kind`` tool run as Ray actors (what ``session.make_tool`` builds for ``workers=N``)."""
    classes: dict[str, type[RayTool]] = {"editor": RayEditor, "judge": RayJudge, "critic": RayCritic}
    if kind not in classes:
        raise RefineAgentError(f"a {kind} cannot run as Ray actors; only editors, judges and critics can")
    return classes[kind](kind, spec, options, placement, config)
