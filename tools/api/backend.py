"""The chat backend seam: what VLM judges, critics and the LLM controller call, whatever serves the model.

A backend takes provider-neutral messages (text and images) and gives back a ``ChatReply``: the text, the
parsed structured output if the backend produced one, the reasoning text if it was split out, the finish
reason, usage, and the model id the backend reports. Everything above it (the judge's modes, repeats,
aggregation, masks and verdict records; the critic; the controller) is written once against ``ChatBackend``.

Backends are registered by provider name (``openai``, ``anthropic``; later ``transformers``, ``vllm``) as
``"package.module:Factory"`` strings, so registering imports nothing and a missing optional package says
which extra to install. A factory is called as ``Factory(model, transport)``, where ``transport`` is the
backend's own options (endpoint, key, rate limits and prices for the HTTP backends).

Optional hooks, looked up with ``getattr``: ``sent_seed(seed)`` (the seed a request actually carries, as
verdicts record it; None where the backend takes no seed), ``aclose()``, ``capacity`` (requests it serves
at once), ``concurrent`` (True: a caller with several independent requests, such as a judge's repeats or
viescore's SC and PQ, issues them together so that a batching backend can batch them; False, the HTTP
default: one after another, so servers and rate limits see them in a fixed order), ``takes_pattern`` (True:
``complete`` also takes ``pattern=``, a regular expression the reply must match, for tag formats such as
IE-Critic's), ``continues_final_message`` (True: a final assistant message is continued, not answered, and
the reply's text starts with it) and ``record()`` (what verdicts record about a local model).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from refine_agent.errors import ConfigError, MissingExtraError
from refine_agent.images import Image
from refine_agent.types import Usage


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class ToolDef:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass
class Msg:
    role: Literal["system", "user", "assistant", "tool"]
    parts: list[str | Image] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool result


@dataclass
class ChatReply:
    text: str
    model: str  # the model id the backend reports (may differ from the one asked for)
    structured: dict[str, Any] | None = None  # the backend's structured output (json_schema / forced tool)
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    refusal: str | None = None
    reasoning: str | None = None  # reasoning text, where the backend split it out of the answer
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def refused(self) -> bool:
        return self.refusal is not None

    @property
    def usage(self) -> Usage:
        return Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens, cost_usd=self.cost_usd)


@runtime_checkable
class ChatBackend(Protocol):
    """One model behind one backend. ``complete`` raises ToolErrors the runtime knows how to retry (or not);
    a refusal is a reply with ``refusal`` set (or ``api.errors.Refused``), never a made-up answer."""

    model: str

    async def complete(self, messages: list[Msg], *, schema: dict[str, Any] | None = None,
                       schema_name: str = "answer", tools: list[ToolDef] | None = None,
                       force_tool: str | None = None, temperature: float | None = None, seed: int | None = None,
                       max_tokens: int = 1024) -> ChatReply: ...


def continued_text(messages: list[Msg]) -> str | None:
    """The text of a final assistant message (no tool calls) that a ``continues_final_message`` backend
    continues, e.g. IE-Critic's ``<think>`` prefill; None when the reply is a new turn."""
    last = messages[-1] if messages else None
    if last is None or last.role != "assistant" or last.tool_calls:
        return None
    return "".join(p for p in last.parts if isinstance(p, str))


def wire_seed(seed: int, takes_seed: bool = True) -> int | None:
    """The seed a request with ``seed`` carries on the wire: 31 bits, or None for a backend that takes none."""
    return seed % (2**31) if takes_seed else None


def sent_seed(backend: Any, seed: int) -> int | None:
    """The seed a request with ``seed`` carries, as records show it (the backend's hook, else ``wire_seed``)."""
    hook = getattr(backend, "sent_seed", None)
    return hook(seed) if callable(hook) else wire_seed(seed)


T = TypeVar("T")


async def issue_all(backend: Any, calls: Sequence[Callable[[], Awaitable[T]]],
                    stop: Callable[[T], bool] | None = None) -> list[T]:
    """Run independent requests to ``backend``: together (``asyncio.gather``) where the backend is
    ``concurrent``, else in order, stopping after the first result for which ``stop`` says so. The results
    come back in the order of ``calls`` either way; an exception from one call cancels the others."""
    if getattr(backend, "concurrent", False):
        tasks = [asyncio.ensure_future(call()) for call in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # one failed (or we were cancelled): the others stop too, none is left running
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    out: list[T] = []
    for call in calls:
        out.append(await call())
        if stop is not None and stop(out[-1]):
            break
    return out


BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "pattern", "minLength", "maxLength")


def without_bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without numeric and length bounds, for strict modes that reject them (Anthropic's tools); the
    output contracts keep each range in the property's description too, and the parser checks it."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in BOUND_KEYS}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(schema)  # type: ignore[no-any-return]


def backend_record(backend: Any) -> dict[str, Any]:
    """What a local backend adds to verdict records (its ``record()`` hook: weights, dtype, device), under
    ``backend``; nothing for the HTTP backends, whose replies name their model."""
    hook = getattr(backend, "record", None)
    return {"backend": hook()} if callable(hook) else {}


def backend_capacity(chat: Any, options: Any) -> int:
    """Requests a VLM tool serves at once: its backend's capacity, else the transport's max_concurrency."""
    cap = getattr(chat, "capacity", None)
    if isinstance(cap, int) and cap >= 1:
        return cap
    transport = getattr(options, "transport", None)
    return int(getattr(transport, "max_concurrency", 1))


async def aclose(backend: Any) -> None:
    close = getattr(backend, "aclose", None)
    if callable(close):
        await close()


@dataclass(frozen=True)
class BackendEntry:
    provider: str
    target: str  # "package.module:Factory"
    extra: str | None = None  # the pip extra that provides its dependencies


CHAT_BACKENDS: dict[str, BackendEntry] = {
    "openai": BackendEntry("openai", "refine_agent.tools.api.openai_chat:OpenAIChat", "api"),
    "anthropic": BackendEntry("anthropic", "refine_agent.tools.api.anthropic_chat:AnthropicChat", "api"),
    "transformers": BackendEntry("transformers", "refine_agent.tools.local.transformers_chat:TransformersChat",
                                 "local"),
    "vllm": BackendEntry("vllm", "refine_agent.tools.local.vllm_chat:VLLMChat", "vllm"),
}


def register_chat_backend(provider: str, target: str, *, extra: str | None = None) -> None:
    """Make ``provider`` name a chat backend (a plugin, or a test); ``target`` is imported when first used."""
    CHAT_BACKENDS[provider] = BackendEntry(provider, target, extra)


def _load(entry: BackendEntry) -> Any:
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if entry.extra and missing and missing != "refine_agent":
            raise MissingExtraError(missing, entry.extra, f"the {entry.provider} chat backend") from None
        raise
    return getattr(module, attr)


def backend_entry(provider: str) -> BackendEntry:
    entry = CHAT_BACKENDS.get(provider)
    if entry is None:
        raise ConfigError(f"unknown chat backend '{provider}'; known: {', '.join(sorted(CHAT_BACKENDS))}")
    return entry


def make_chat(provider: str, model: str, transport: Any = None) -> ChatBackend:
    """The chat backend registered as ``provider``, serving ``model``, built with its transport options."""
    entry = backend_entry(provider)
    factory = _load(entry)
    return factory(model, transport)  # type: ignore[no-any-return]
