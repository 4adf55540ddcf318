"""The tool protocols, one async method each; the optional hooks, declared once (``ToolHooks``); and
``ToolBase`` for tools with typed options.

A tool needs only a ``name`` and its method. Every other hook is optional, read when present, and declared in
``ToolHooks`` below with the one function here that reads it: ``capacity`` (``tool_capacity``),
``identity()`` (``tool_identity``), ``limiter_key()`` (``tool_limiter_key``), ``is_transient(exc)``
(``runtime.is_transient``), ``load()`` (``load_tools``), ``aclose()`` (``close_tools``) and ``from_spec()``
(``registry.create_tool``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar, cast, runtime_checkable

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


Tool: TypeAlias = Editor | Judge | Critic | Controller
"""A tool of any kind: what the runtime calls (the kind itself travels beside it, as a ``ToolKind``)."""


class ToolHooks(Protocol):
    """The optional hooks a tool may have, besides ``name`` and its protocol method. None is required; each
    is read, when present, by the function named in its docstring. This class documents them (and types
    them for a checker); tools need not inherit from it."""

    capacity: int
    """Calls the tool serves at once (a GPU editor: 1 or its batch size; an API: its connections). Default 1.
    Read by ``tool_capacity``; sizes the tool's limiter in the runtime."""

    def identity(self) -> dict[str, Any]:
        """The tool's stable id and the params that change its outputs: part of every cache key and run record.
        Read by ``tool_identity``; default ``{"name": name, "params": {}}``."""
        ...

    def limiter_key(self) -> Hashable | None:
        """Tools returning the same (non-None) key share one limiter, and so one capacity, in a runtime: e.g.
        a judge, a critic and an evaluation judge on the same loaded model (see ``pool.py``). Read by
        ``tool_limiter_key``; default None: a limiter of its own."""
        ...

    def is_transient(self, exc: BaseException) -> bool | None:
        """Whether a failure may succeed on retry; None leaves it to the default classification. Read by
        ``runtime.is_transient``."""
        ...

    async def load(self) -> None:
        """Load weights or warm up before the first call (idempotent). Read by ``load_tools``."""
        ...

    async def aclose(self) -> None:
        """Release connections, worker threads or pooled models at the end of a run. Read by ``close_tools``."""
        ...

    @classmethod
    def from_spec(cls, model: str | None, options: dict[str, Any]) -> Any:
        """Build the tool from a ``provider:model`` spec's model part and its options. Read by
        ``registry.create_tool``; without it the factory is called with the options."""
        ...


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


def tool_limiter_key(tool: object) -> Hashable | None:
    """The key of the limiter the tool shares with others (``ToolHooks.limiter_key``), or None for its own."""
    hook = getattr(tool, "limiter_key", None)
    return hook() if callable(hook) else None


async def load_tools(*tools: object) -> None:
    """Let tools that load a model or warm up (``ToolHooks.load``) do it now, once each, in the order given."""
    await _each_once("load", tools)


async def close_tools(*tools: object) -> None:
    """Let tools that hold connections (API clients) close them before the event loop ends."""
    await _each_once("aclose", tools)


async def _each_once(hook: str, tools: tuple[object, ...]) -> None:
    seen: set[int] = set()
    for tool in tools:
        method = getattr(tool, hook, None)
        if tool is not None and id(tool) not in seen and callable(method):
            seen.add(id(tool))
            await method()


def check_tool(kind: ToolKind, tool: object) -> None:
    """Fail early, with a clear line, if an object does not implement the protocol for ``kind``."""
    method = METHOD_OF_KIND[kind]
    if not isinstance(getattr(tool, "name", None), str):
        raise ConfigError(f"{kind} {type(tool).__name__} needs a string attribute 'name'")
    if not callable(getattr(tool, method, None)):
        raise ConfigError(f"{kind} {type(tool).__name__} has no async method '{method}()'")


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


OptionsT = TypeVar("OptionsT", bound=BaseModel)
"""A tool's options model (``ToolBase[OptionsT]``)."""


class ToolBase(Generic[OptionsT]):
    """Convenience base for tools configured by a pydantic options model.

    Subclasses name their options model twice: as the type parameter, so that ``self.options`` is typed, and
    as ``Options``, which validates them at runtime (``class MyJudge(ToolBase[MyOptions]): Options =
    MyOptions``; a nested ``class Options`` works too, named in quotes: ``ToolBase["MyJudge.Options"]``).
    They also set ``name``, ``kind`` and, for options that do not change outputs (latency, concurrency, ...),
    ``runtime_only_options`` so that they stay out of cache keys.
    """

    name: ClassVar[str] = "tool"
    kind: ClassVar[ToolKind]
    summary: ClassVar[str] = ""
    # A class attribute: ClassVar cannot hold a type variable, hence the plain annotation and the cast.
    Options: type[OptionsT] = cast("type[OptionsT]", NoOptions)
    runtime_only_options: ClassVar[frozenset[str]] = frozenset()
    options: OptionsT

    def __init__(self, options: OptionsT | dict[str, Any] | None = None, **kwargs: Any) -> None:
        if isinstance(options, BaseModel):
            self.options = options
        else:
            raw = {**(options or {}), **kwargs}
            try:
                self.options = self.Options.model_validate(raw)
            except ValidationError as exc:
                raise ConfigError(validation_message(exc, f"{self.kind} '{self.name}' option")) from None

    @classmethod
    def from_spec(cls, model: str | None, options: dict[str, Any]) -> ToolBase[OptionsT]:
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
