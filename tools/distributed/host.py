"""The actor side: one tool built, loaded and called inside a Ray actor, on behalf of the driver's ``RayTool``.

The tool is built here from its spec and options (``create_tool``), so its model loads once, in the actor, and
its batcher gathers the calls that arrive together. Errors come back as values (``Failed``), never as Ray task
errors: the driver then raises the tool's own exception, classified by the tool's own ``is_transient``, which
only the actor can ask.
"""

from __future__ import annotations

import asyncio
import os
import pickle
from dataclasses import dataclass, field
from typing import Any

import ray

from refine_agent.errors import ToolError, describe
from refine_agent.protocols import METHOD_OF_KIND, close_tools, load_tools, tool_capacity, tool_identity
from refine_agent.registry import create_tool
from refine_agent.runtime import call_scope, is_transient
from refine_agent.types import Usage

from .shipping import unpack


@dataclass
class Failed:
    """A call (or the tool's build or load) that raised in the actor: the error, whether a retry may help, and
    what the failed attempt was billed for, so the driver's runtime still counts it."""

    error: BaseException
    transient: bool = False
    billed: list[Usage] = field(default_factory=list)


def portable(exc: BaseException) -> BaseException:
    """The error itself when it survives pickling as it is, else a ToolError with its one line."""
    try:
        copy = pickle.loads(pickle.dumps(exc))
        if type(copy) is type(exc) and str(copy) == str(exc):
            return copy
    except Exception:  # an exception whose constructor takes other arguments than it stores
        pass
    return ToolError(describe(exc))


class ToolHost:
    """One tool in one actor. Ray re-runs ``__init__`` when it restarts the actor; the tool loads again on the
    first ``load()`` or call after that."""

    def __init__(self, kind: str, spec: str, options: dict[str, Any]) -> None:
        self.kind = kind
        self.tool: Any = None
        self._broken: Failed | None = None
        self._loaded = False
        self._lock: asyncio.Lock | None = None  # made in the actor's event loop, on first use
        try:
            self.tool = create_tool(kind, spec, options)  # type: ignore[arg-type]
        except Exception as exc:  # told by load() as one line, instead of an actor dead with a traceback
            self._broken = Failed(portable(exc))

    async def _ready(self) -> Failed | None:
        """Load the tool once (the first caller loads; the others wait for it)."""
        if self._broken is not None or self._loaded:
            return self._broken
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._loaded:
                try:
                    await load_tools(self.tool)
                except Exception as exc:
                    return Failed(portable(exc))
                self._loaded = True
        return None

    async def load(self) -> dict[str, Any] | Failed:
        """Load the tool; then what the driver needs to know of it and of where it runs."""
        failed = await self._ready()
        if failed is not None:
            return failed
        ctx = ray.get_runtime_context()
        return {"name": self.tool.name, "identity": tool_identity(self.tool), "capacity": tool_capacity(self.tool),
                "node_id": ctx.get_node_id(), "node_ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "resources": dict(ctx.get_assigned_resources()),
                "accelerators": {k: list(v) for k, v in ctx.get_accelerator_ids().items() if v}}

    async def call(self, attempt: int, request: Any, *images: Any) -> Any:
        """One attempt of one call, numbered by the driver's runtime (simulated failures and seeds read it)."""
        failed = await self._ready()
        if failed is not None:
            return failed
        req = unpack(request, images)
        method = getattr(self.tool, METHOD_OF_KIND[self.kind])
        with call_scope(attempt) as billed:
            try:
                return await method(req)
            except Exception as exc:
                return Failed(portable(exc), is_transient(self.tool, exc), list(billed))

    async def close(self) -> None:
        """Let the tool release what it holds outside this process (servers it started) before the kill."""
        if self.tool is not None:
            await close_tools(self.tool)
