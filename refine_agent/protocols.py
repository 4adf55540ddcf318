"""The three tool protocols, one async method each, and ``ToolBase`` for tools with typed options.

A tool needs only a ``name`` and its method. ``capacity`` (calls it can serve at once, default 1),
``identity()`` (what goes into cache keys and run records) and ``is_transient(exc)`` (retry
classification) are optional hooks the runtime reads when present.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError, validation_message
from .types import (
    ControllerDecision,
    ControllerRequest,
    Critique,
    CritiqueRequest,
    EditRequest,
    EditResult,
    JudgeRequest,
    ToolKind,
    Verdict,
)


@runtime_checkable
class Editor(Protocol):
    name: str

    async def edit(self, req: EditRequest) -> EditResult: ...


@runtime_checkable
class Judge(Protocol):
    name: str

    async def judge(self, req: JudgeRequest) -> Verdict: ...


@runtime_checkable
class Critic(Protocol):
    name: str

    async def critique(self, req: CritiqueRequest) -> Critique: ...


@runtime_checkable
class Controller(Protocol):
    """Drives refinement itself (agentic mode): picks the next tool call from what happened so far."""

    name: str

    async def decide(self, req: ControllerRequest) -> ControllerDecision: ...


METHOD_OF_KIND: dict[str, str] = {"editor": "edit", "judge": "judge", "critic": "critique", "controller": "decide"}


def tool_capacity(tool: object) -> int:
    """How many calls the tool serves at once (a GPU editor: 1 or its batch size; an API: its connections)."""
    cap = getattr(tool, "capacity", 1)
    return max(1, int(cap))


def tool_identity(tool: object) -> dict[str, Any]:
    """The tool's stable id and the params that change its outputs. Part of every cache key."""
    ident = getattr(tool, "identity", None)
    if callable(ident):
        return dict(ident())
    return {"name": getattr(tool, "name", type(tool).__name__), "params": {}}


async def close_tools(*tools: object) -> None:
    """Let tools that hold connections (API clients) close them before the event loop ends."""
    seen: set[int] = set()
    for tool in tools:
        close = getattr(tool, "aclose", None)
        if tool is not None and id(tool) not in seen and callable(close):
            seen.add(id(tool))
            await close()


def check_tool(kind: ToolKind, tool: object) -> None:
    """Fail early, with a clear line, if an object does not implement the protocol for ``kind``."""
    method = METHOD_OF_KIND[kind]
    if not isinstance(getattr(tool, "name", None), str):
        raise ConfigError(f"{kind} {type(tool).__name__} needs a string attribute 'name'")
    if not callable(getattr(tool, method, None)):
        raise ConfigError(f"{kind} {type(tool).__name__} has no async method '{method}()'")


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolBase:
    """Convenience base for tools configured by a pydantic options model.

    Subclasses set ``name``, ``kind``, ``Options`` and, for options that do not change outputs
    (latency, concurrency, ...), ``runtime_only_options`` so that they stay out of cache keys.
    """

    name: ClassVar[str] = "tool"
    kind: ClassVar[ToolKind]
    summary: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    runtime_only_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: BaseModel | dict[str, Any] | None = None, **kwargs: Any) -> None:
        if isinstance(options, BaseModel):
            self.options = options
        else:
            raw = {**(options or {}), **kwargs}
            try:
                self.options = self.Options.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(validation_message(exc, f"{self.kind} '{self.name}' option")) from None

    @classmethod
    def from_spec(cls, model: str | None, options: dict[str, Any]) -> ToolBase:
        if model:
            raise ConfigError(f"{cls.kind} '{cls.name}' takes no model name (got '{cls.name}:{model}')")
        return cls(options)

    @property
    def capacity(self) -> int:
        return int(getattr(self.options, "max_concurrency", 1))

    def identity(self) -> dict[str, Any]:
        params = self.options.model_dump(mode="json", exclude=set(self.runtime_only_options))
        return {"name": self.name, "params": params}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"
