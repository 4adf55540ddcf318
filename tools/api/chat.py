"""The shared half of the HTTP chat backends: endpoint choice, rate limits, error classification, cost.
The wire formats live in ``openai_chat`` and ``anthropic_chat``; the provider-neutral messages, replies and
the ``ChatBackend`` protocol they implement live in ``backend``."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from refine_agent.errors import MissingExtraError, ToolError
from refine_agent.images import Image
from refine_agent.runtime import bill

from .backend import ChatReply, Msg, ToolCall, ToolDef, wire_seed
from .errors import classify
from .options import APIOptions, Endpoints
from .pricing import chat_cost
from .ratelimit import estimate_tokens, limiter_for


class ClientPools:
    """SDK clients per event loop: an HTTP connection pool belongs to the loop that opened it, and a tool may
    serve several ``asyncio.run`` calls. ``aclose()`` closes the current loop's clients before it ends."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._by_loop: dict[int, tuple[Any, list[Any]]] = {}

    def get(self) -> list[Any]:
        loop = asyncio.get_running_loop()
        entry = self._by_loop.get(id(loop))
        if entry is None or entry[0] is not loop:
            entry = (loop, self._make())
            self._by_loop[id(loop)] = entry
        return entry[1]

    async def aclose(self) -> None:
        entry = self._by_loop.pop(id(asyncio.get_running_loop()), None)
        for client in entry[1] if entry else []:
            await client.close()


def png_base64(image: Image) -> str:
    return base64.b64encode(image.png_bytes()).decode("ascii")


def data_url(image: Image) -> str:
    return "data:image/png;base64," + png_base64(image)


class ChatAdapter:
    """A ``ChatBackend`` over HTTP: one model behind one or more endpoints of one provider."""

    provider = "openai"
    sdk = "openai"
    takes_seed = True

    def __init__(self, model: str, opts: APIOptions | dict[str, Any] | None = None) -> None:
        self.model = model
        self.opts = opts if isinstance(opts, APIOptions) else APIOptions.model_validate(opts or {})
        self.endpoints = Endpoints(self.provider, self.opts)
        self._pools = ClientPools(lambda: [self._client(url) for url in self.endpoints.urls])
        try:
            __import__(self.sdk)
        except ModuleNotFoundError:
            raise MissingExtraError(self.sdk, "api", f"the {self.provider} backend") from None

    @property
    def capacity(self) -> int:
        return self.opts.max_concurrency

    @property
    def clients(self) -> list[Any]:
        return self._pools.get()

    async def aclose(self) -> None:
        await self._pools.aclose()

    def _client(self, base_url: str) -> Any:
        raise NotImplementedError

    async def _send(self, client: Any, messages: list[Msg], *, schema: dict[str, Any] | None, schema_name: str,
                    tools: list[ToolDef] | None, force_tool: str | None, temperature: float | None,
                    seed: int | None, max_tokens: int, extra_body: dict[str, Any] | None = None) -> ChatReply:
        raise NotImplementedError

    def sent_seed(self, seed: int) -> int | None:
        """The seed a request with ``seed`` carries, as verdicts record it: 31 bits, or None where the API
        takes no seed (Anthropic)."""
        return wire_seed(seed, self.takes_seed)

    async def complete(self, messages: list[Msg], *, schema: dict[str, Any] | None = None,
                       schema_name: str = "answer", tools: list[ToolDef] | None = None,
                       force_tool: str | None = None, temperature: float | None = None, seed: int | None = None,
                       max_tokens: int = 1024, extra_body: dict[str, Any] | None = None) -> ChatReply:
        """One request. Failures come out as ToolErrors the runtime knows how to retry (or not). ``extra_body``:
        request fields beyond the wire format's own, on top of the ``extra_body`` option (e.g. vLLM's)."""
        i = self.endpoints.pick()
        url = self.endpoints.urls[i]
        limiter = limiter_for(url, self.opts.rpm, self.opts.tpm)
        texts = [p for m in messages for p in m.parts if isinstance(p, str)]
        n_images = sum(1 for m in messages for p in m.parts if isinstance(p, Image))
        estimate = estimate_tokens(texts, n_images, max_tokens)
        if limiter is not None:
            await limiter.acquire(estimate)
        try:
            reply = await self._send(self.clients[i], messages, schema=schema, schema_name=schema_name, tools=tools,
                                     force_tool=force_tool, temperature=temperature, seed=seed,
                                     max_tokens=max_tokens, extra_body=extra_body)
        except ToolError:
            raise
        except Exception as exc:
            raise classify(exc, provider=self.provider, base_url=url, key_env=self.endpoints.key_env,
                           model=self.model, redact=self.endpoints.redact) from None
        if limiter is not None:
            limiter.settle(estimate, reply.input_tokens + reply.output_tokens)
        reply.cost_usd = chat_cost(reply.model or self.model, reply.input_tokens, reply.output_tokens,
                                   self.opts.price_in, self.opts.price_out, requested=self.model)
        bill(reply.usage)
        return reply


__all__ = ["ChatAdapter", "ChatReply", "ClientPools", "Msg", "ToolCall", "ToolDef", "data_url", "png_base64"]
