"""``vllm:PATH``: a managed ``vllm serve`` as a chat backend.

The backend starts the servers itself (``vllm_server.ServerGroup``: one per GPU group, waiting until each
is healthy), talks to them through the OpenAI-compatible adapter (load-balanced over the replicas), and
stops them when the run ends. Every tool naming the same model and server settings shares one group through
the model pool. A replica that stops answering turns its calls into transient errors; the group restarts it
once, and the run goes on with the others. Tag formats are constrained with vLLM's structured outputs
(``regex``); a final assistant message is continued (IE-Critic's ``<think>`` prefill).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from pydantic import BaseModel
from refine_agent.tools.api.backend import ChatReply, Msg, ToolDef, continued_text, wire_seed
from refine_agent.tools.api.openai_chat import OpenAIChat
from refine_agent.tools.api.options import APIOptions

from refine_agent.errors import MissingExtraError, TransientToolError
from refine_agent.pool import ModelKey, model_pool
from refine_agent.run_context import server_log_dir

from .options import VLLMOptions
from .vllm_server import ServerGroup, VLLMServerOptions


class VLLMChat:
    """A ``ChatBackend`` over managed vLLM servers."""

    provider = "vllm"
    concurrent = True  # vLLM batches continuously: independent requests go together
    takes_pattern = True
    continues_final_message = True

    def __init__(self, model: str, transport: Any = None) -> None:
        self.opts = transport if isinstance(transport, VLLMOptions) else VLLMOptions.model_validate(
            transport.model_dump() if isinstance(transport, BaseModel) else transport or {})
        if self.opts.command is None and importlib.util.find_spec("vllm") is None:
            raise MissingExtraError("vllm", "vllm", "the vllm backend (a CUDA machine)")
        self.model = model
        self.served = self.opts.served_model_name or model
        self._group: ServerGroup | None = None
        self._http: OpenAIChat | None = None
        self._urls: list[str] = []

    @property
    def capacity(self) -> int:
        return self.opts.max_concurrency

    def model_key(self) -> ModelKey:
        o = self.opts
        settings = o.model_dump(mode="json", exclude={"max_concurrency", "timeout_s", "price_in", "price_out",
                                                       "startup_timeout_s", "log_dir"})
        return ModelKey(path=self.model, kind=f"vllm|{sorted(settings.items())}")

    def sent_seed(self, seed: int) -> int | None:
        return wire_seed(seed)

    def record(self) -> dict[str, Any]:
        return {"backend": "vllm", "model": self.model, "replicas": self.opts.replicas,
                "tensor_parallel_size": self.opts.tensor_parallel_size, "max_model_len": self.opts.max_model_len,
                "logs": str(self._group.log_dir) if self._group else None}

    async def load(self) -> None:
        """Start the servers (once per process for these settings) and wait until they serve."""
        if self._group is None:
            self._group = await model_pool().aget(self.model_key(), self._start)
        self._connect()

    async def _start(self) -> ServerGroup:
        opts = self.opts
        if opts.log_dir is None and server_log_dir.get() is not None:
            opts = opts.model_copy(update={"log_dir": server_log_dir.get()})
        group = ServerGroup(self.model, VLLMServerOptions.model_validate(
            opts.model_dump(include=set(VLLMServerOptions.model_fields))), name=_log_name(self.model))
        await group.start()
        return group

    def _connect(self) -> None:
        """An adapter over the replicas serving now (rebuilt when one is dropped)."""
        assert self._group is not None
        urls = self._group.available_urls()
        if self._http is None or urls != self._urls:
            o = self.opts
            self._http = OpenAIChat(self.served, APIOptions(base_url=urls, max_concurrency=o.max_concurrency,
                                                            timeout_s=o.timeout_s, price_in=o.price_in or 0.0,
                                                            price_out=o.price_out or 0.0))
            self._urls = urls

    async def complete(self, messages: list[Msg], *, schema: dict[str, Any] | None = None,
                       schema_name: str = "answer", tools: list[ToolDef] | None = None,
                       force_tool: str | None = None, temperature: float | None = None, seed: int | None = None,
                       max_tokens: int = 1024, pattern: str | None = None) -> ChatReply:
        await self.load()
        assert self._http is not None and self._group is not None
        extra: dict[str, Any] = {}
        if pattern is not None and schema is None:
            extra["structured_outputs"] = {"regex": pattern}
        prefill = continued_text(messages)
        if prefill is not None:
            extra.update(continue_final_message=True, add_generation_prompt=False)
        try:
            reply = await self._http.complete(messages, schema=schema, schema_name=schema_name, tools=tools,
                                              force_tool=force_tool, temperature=temperature, seed=seed,
                                              max_tokens=max_tokens, extra_body=extra)
        except TransientToolError:
            for url in list(self._urls):  # a replica that died is restarted once, else dropped
                await self._group.check(url)
            self._connect()
            raise
        if prefill:
            reply.text = prefill + reply.text
        return reply

    async def aclose(self) -> None:
        """The servers stay in the process-wide pool for other tools; the run's end stops them
        (``model_pool().aclose()``, and the exit hooks as a backstop)."""
        if self._http is not None:
            await self._http.aclose()


def _log_name(model: str) -> str:
    """A file-name-safe stem for a model's server logs."""
    stem = model.rstrip("/").rsplit("/", 1)[-1] or "vllm"
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)[:60]
