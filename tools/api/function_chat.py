"""``FunctionChat``: a real chat backend driven by a Python function, the test double of the chat seam.

The function gets each request as a ``ChatCall`` (messages, schema, tools, temperature, seed, ...) and returns
the reply: a ``ChatReply``, a string (the reply's text), a dict (the structured output where a schema was
asked for, else its JSON as text), or an exception to raise (a ToolError the runtime classifies). It may be
async. Every call is recorded in ``calls`` in the order it was issued. Like a batching backend it is
``concurrent``, so a judge issues its repeats and viescore's SC and PQ together; pass ``concurrent=False``
to see the order an HTTP backend gets.

    chat = FunctionChat(lambda call: '{"reasoning": "ok", "passed": true}')
    judge = VLMJudge("my-model", {"mode": "yesno"}, chat=chat)
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Union

from refine_agent.images import Image
from refine_agent.runtime import bill

from .backend import ChatReply, Msg, ToolDef, wire_seed

Reply = Union[ChatReply, str, dict[str, Any], BaseException]
Responder = Callable[["ChatCall"], Union[Reply, Awaitable[Reply]]]


@dataclass
class ChatCall:
    """One request to a ``FunctionChat``, as the backend received it."""

    messages: list[Msg]
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    tools: list[ToolDef] | None = None
    force_tool: str | None = None
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int = 1024
    index: int = 0  # the call's place among all calls to this backend

    @property
    def text(self) -> str:
        """Every text part of every message, in order, one per line."""
        return "\n".join(p for m in self.messages for p in m.parts if isinstance(p, str))

    @property
    def images(self) -> list[Image]:
        return [p for m in self.messages for p in m.parts if isinstance(p, Image)]


class FunctionChat:
    """A ``ChatBackend`` whose replies come from ``fn``."""

    provider = "function"

    def __init__(self, fn: Responder, *, model: str = "function", capacity: int = 8, concurrent: bool = True,
                 takes_seed: bool = True, tokens: tuple[int, int] = (0, 0)) -> None:
        self.fn = fn
        self.model = model
        self.capacity = capacity
        self.concurrent = concurrent
        self.takes_seed = takes_seed
        self.tokens = tokens  # (input, output) tokens each reply reports, unless the reply sets its own
        self.calls: list[ChatCall] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False

    def sent_seed(self, seed: int) -> int | None:
        return wire_seed(seed, self.takes_seed)

    async def aclose(self) -> None:
        self.closed = True

    async def complete(self, messages: list[Msg], *, schema: dict[str, Any] | None = None,
                       schema_name: str = "answer", tools: list[ToolDef] | None = None,
                       force_tool: str | None = None, temperature: float | None = None, seed: int | None = None,
                       max_tokens: int = 1024) -> ChatReply:
        call = ChatCall(list(messages), schema, schema_name, tools, force_tool, temperature,
                        None if seed is None else self.sent_seed(seed), max_tokens, index=len(self.calls))
        self.calls.append(call)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            out = self.fn(call)
            if inspect.isawaitable(out):
                out = await out
        finally:
            self.in_flight -= 1
        if isinstance(out, BaseException):
            raise out
        reply = self._reply(out, call)
        bill(reply.usage)
        return reply

    def _reply(self, out: Any, call: ChatCall) -> ChatReply:
        if isinstance(out, ChatReply):
            return out
        tokens_in, tokens_out = self.tokens
        if isinstance(out, dict):
            if call.schema is not None:
                return ChatReply(text="", model=self.model, structured=out, finish_reason="stop",
                                 input_tokens=tokens_in, output_tokens=tokens_out)
            out = json.dumps(out)
        if isinstance(out, str):
            return ChatReply(text=out, model=self.model, finish_reason="stop", input_tokens=tokens_in,
                             output_tokens=tokens_out)
        raise TypeError(f"a FunctionChat function returned {type(out).__name__}; return a ChatReply, a str, "
                        "a dict or an exception")
