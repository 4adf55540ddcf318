"""Test doubles that are real implementations of the protocols. Tests use them, and so can the CLI
(``--judge refine_agent.testing:FunctionJudge``), e.g. to try a config without any model.

- ``ScriptedEditor`` returns scripted images in order, records every request, and fails on a step that
  is an exception; ``assert_done()`` fails if scripted steps were left unused.
- ``FunctionJudge`` / ``FunctionCritic`` / ``FunctionEditor`` wrap a plain function.
- ``ScriptedCritic`` returns scripted critiques in order.

The chat backend double (a backend driven by a function, for VLM judges, critics and the controller) is
``refine_agent.tools.api.function_chat.FunctionChat``: it lives with the chat seam, which the core does not import.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .images import Image
from .types import Critique, CritiqueRequest, EditRequest, EditResult, JudgeRequest, Verdict


class _Scripted:
    kind = "tool"

    def __init__(self, steps: Sequence[Any], *, name: str, capacity: int = 1, latency: float = 0.0) -> None:
        self.name = name
        self.capacity = capacity
        self.latency = latency
        self._steps = list(steps)
        self.requests: list[Any] = []

    async def _next(self, req: Any) -> Any:
        self.requests.append(req)
        if self.latency:
            await asyncio.sleep(self.latency)
        if not self._steps:
            raise AssertionError(f"{self.kind} {self.name!r} was called more often than scripted "
                                 f"({len(self.requests)} calls)")
        step = self._steps.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step(req) if callable(step) else step

    def assert_done(self) -> None:
        if self._steps:
            raise AssertionError(f"{self.kind} {self.name!r} has {len(self._steps)} unused scripted steps")

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "params": {"id": id(self)}}


class ScriptedEditor(_Scripted):
    """Each step is an Image, an EditResult, an exception to raise, or a function of the request."""

    kind = "editor"

    def __init__(self, steps: Sequence[Any] = (), *, name: str = "scripted-editor", **kw: Any) -> None:
        super().__init__(steps, name=name, **kw)

    async def edit(self, req: EditRequest) -> EditResult:
        out = await self._next(req)
        return out if isinstance(out, EditResult) else EditResult(image=out)


class ScriptedCritic(_Scripted):
    kind = "critic"

    def __init__(self, steps: Sequence[Any] = (), *, name: str = "scripted-critic", **kw: Any) -> None:
        super().__init__(steps, name=name, **kw)

    async def critique(self, req: CritiqueRequest) -> Critique:
        return await self._next(req)


class _Function:
    def __init__(self, fn: Callable[[Any], Any] | None = None, *, name: str, capacity: int = 1,
                 latency: float = 0.0) -> None:
        self.fn = fn
        self.name = name
        self.capacity = capacity
        self.latency = latency
        self.calls = 0

    async def _call(self, req: Any, default: Callable[[Any], Any]) -> Any:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        out = (self.fn or default)(req)
        return await out if isinstance(out, Awaitable) else out

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "params": {"id": id(self)}}


class FunctionEditor(_Function):
    """An editor from ``fn(EditRequest) -> Image``; by default it returns the input unchanged."""

    def __init__(self, fn: Callable[[EditRequest], Image] | None = None, *, name: str = "function-editor",
                 **kw: Any) -> None:
        super().__init__(fn, name=name, **kw)

    async def edit(self, req: EditRequest) -> EditResult:
        out = await self._call(req, lambda r: r.image)
        return out if isinstance(out, EditResult) else EditResult(image=out)


class FunctionJudge(_Function):
    """A judge from ``fn(JudgeRequest) -> Verdict``; by default every edit passes with 10/10."""

    def __init__(self, fn: Callable[[JudgeRequest], Verdict] | None = None, *, name: str = "function-judge",
                 **kw: Any) -> None:
        super().__init__(fn, name=name, **kw)

    async def judge(self, req: JudgeRequest) -> Verdict:
        return await self._call(req, lambda r: Verdict(scores={"SC": [10, 10], "PQ": [10, 10]}, passed=True))


class FunctionCritic(_Function):
    """A critic from ``fn(CritiqueRequest) -> Critique``; by default it asks for the instruction again."""

    def __init__(self, fn: Callable[[CritiqueRequest], Critique] | None = None, *, name: str = "function-critic",
                 **kw: Any) -> None:
        super().__init__(fn, name=name, **kw)

    async def critique(self, req: CritiqueRequest) -> Critique:
        return await self._call(req, lambda r: Critique(satisfied=False, instruction=r.instruction, base="source"))


class ScriptedController(_Scripted):
    """A controller whose decisions are scripted: ``("edit", {"instruction": ..., "base": ...})`` tuples,
    ControllerDecision objects, exceptions, or functions of the request."""

    kind = "controller"

    def __init__(self, steps: Sequence[Any] = (), *, name: str = "scripted-controller", **kw: Any) -> None:
        super().__init__(steps, name=name, **kw)

    async def decide(self, req: Any) -> Any:
        from .types import ControllerDecision

        out = await self._next(req)
        if isinstance(out, tuple):
            name, args = out
            return ControllerDecision(id=f"call-{len(self.requests)}", name=name, arguments=dict(args))
        return out
