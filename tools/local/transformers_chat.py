"""``transformers:PATH``: an open vision-language model in this process, as a chat backend.

The judge, critic and controller run on it unchanged. Every tool naming the same folder (with the same
dtype and device) shares one loaded copy through the model pool, and one batch queue: a judge's SC and PQ
calls, its repeats and the critic's requests are gathered into one ``generate``. With a schema, a tag
pattern or tools, the reply is constrained by xgrammar (``grammar.py``), so it parses even from a weak model.
A final assistant message is continued rather than answered (IE-Critic-R1's ``<think>`` prefill); the reply's
text then starts with it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from typing import Any

from pydantic import BaseModel
from refine_agent.tools.api.backend import ChatReply, Msg, ToolCall, ToolDef, continued_text, wire_seed

from refine_agent.errors import MissingExtraError
from refine_agent.pool import ModelKey, model_pool
from refine_agent.runtime import bill

from .grammar import Constraint
from .options import TransformersOptions
from .vlm_model import Decoding, LoadedVLM, Prompt, load_vlm
from .weights import resolve_weights

_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)


class TransformersChat:
    """A ``ChatBackend`` over an in-process ``AutoModelForImageTextToText``."""

    provider = "transformers"
    concurrent = True  # independent requests are issued together, so they can share a generate
    takes_pattern = True  # tag formats (IE-Critic) are constrained too
    continues_final_message = True

    def __init__(self, model: str, transport: Any = None) -> None:
        for package in ("torch", "transformers"):
            if importlib.util.find_spec(package) is None:
                raise MissingExtraError(package, "local", "the transformers chat backend")
        self.opts = transport if isinstance(transport, TransformersOptions) else TransformersOptions.model_validate(
            transport.model_dump() if isinstance(transport, BaseModel) else transport or {})
        self.path = resolve_weights(model, what=f"transformers:{model}", revision=self.opts.revision,
                                    allow_download=self.opts.allow_download)
        self.model = model
        self._vlm: LoadedVLM | None = None

    @property
    def capacity(self) -> int:
        return self.opts.max_batch_size

    def model_key(self) -> ModelKey:
        o = self.opts
        kind = f"transformers|attn={o.attn_implementation}|pixels={o.min_pixels},{o.max_pixels}"
        return ModelKey(path=str(self.path), revision=o.revision, dtype=o.dtype, device=o.device_map or o.device,
                        kind=kind)

    def sent_seed(self, seed: int) -> int | None:
        return wire_seed(seed)

    async def load(self) -> LoadedVLM:
        if self._vlm is None:
            self._vlm = await model_pool().aget(self.model_key(), lambda: load_vlm(self.path, self.opts))
        return self._vlm

    def record(self) -> dict[str, Any]:
        """What verdicts record about the model: its folder, config hash, dtype and device."""
        vlm = self._vlm
        return {"backend": "transformers", "path": str(self.path), "revision": self.opts.revision,
                "config_sha256": vlm.config_hash if vlm else None, "dtype": vlm.dtype if vlm else self.opts.dtype,
                "device": vlm.device if vlm else None, "constrained": bool(vlm and vlm.grammars),
                "top_p": self.opts.top_p, "min_pixels": self.opts.min_pixels, "max_pixels": self.opts.max_pixels}

    async def complete(self, messages: list[Msg], *, schema: dict[str, Any] | None = None,
                       schema_name: str = "answer", tools: list[ToolDef] | None = None,
                       force_tool: str | None = None, temperature: float | None = None, seed: int | None = None,
                       max_tokens: int = 1024, pattern: str | None = None) -> ChatReply:
        vlm = await self.load()
        hf_messages, images, prefill = to_hf(messages)
        tool_defs = [t for t in tools or [] if force_tool is None or t.name == force_tool]
        text = _template(vlm, hf_messages, prefill, tools)
        constraint = None
        if tool_defs:
            constraint = Constraint.from_schema(_tool_call_schema(tool_defs), max_tokens)
        elif schema is not None:
            constraint = Constraint.from_schema(schema, max_tokens)
        elif pattern is not None:
            constraint = Constraint(regex=pattern)
        greedy = not temperature
        decoding = Decoding(max_new_tokens=max_tokens, temperature=float(temperature or 0.0),
                            top_p=None if greedy else self.opts.top_p,
                            seed=None if greedy or seed is None else wire_seed(seed),
                            max_batch=self.opts.max_batch_size, wait_s=self.opts.batch_wait_ms / 1000.0)
        out = await vlm.submit(Prompt(text=text, images=images, constraint=constraint, decoding=decoding))
        reply = ChatReply(text=(prefill or "") + out.text, model=str(self.path), finish_reason=out.finish_reason,
                          input_tokens=out.input_tokens, output_tokens=out.output_tokens)
        reply.cost_usd = (out.input_tokens * (self.opts.price_in or 0.0)
                          + out.output_tokens * (self.opts.price_out or 0.0)) / 1e6
        if tool_defs:
            reply.tool_calls = _tool_calls(out.text, {t.name for t in tool_defs})
        elif schema is not None:
            reply.structured = _json_object(out.text)
        bill(reply.usage)
        return reply

    def prompt_text(self, vlm: LoadedVLM, messages: list[Msg], tools: list[ToolDef] | None = None) -> str:
        """The prompt as the model sees it: the chat template applied, continuing a final assistant message."""
        hf_messages, _, prefill = to_hf(messages)
        return _template(vlm, hf_messages, prefill, tools)

    async def aclose(self) -> None:
        """The loaded model stays in the process-wide pool for other tools; ``model_pool().aclose()`` frees it."""


def to_hf(messages: list[Msg]) -> tuple[list[dict[str, Any]], list[Any], str | None]:
    """Messages in the chat-template format, the images in order, and the final assistant text to continue."""
    out: list[dict[str, Any]] = []
    images: list[Any] = []

    def content(parts: list[Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for part in parts:
            if isinstance(part, str):
                items.append({"type": "text", "text": part})
            else:
                items.append({"type": "image"})
                images.append(part.to_pil())
        return items

    for m in messages:
        if m.role == "tool":
            texts = [p for p in m.parts if isinstance(p, str)]
            out.append({"role": "tool", "content": "\n\n".join(texts)})
            pictures = [p for p in m.parts if not isinstance(p, str)]
            if pictures:  # tool turns hold text only in most templates: show images in a user turn after it
                out.append({"role": "user", "content": content(["(images from the tool)", *pictures])})
            continue
        item: dict[str, Any] = {"role": m.role, "content": content(m.parts)}
        if m.tool_calls:
            item["tool_calls"] = [{"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                                  for c in m.tool_calls]
        out.append(item)
    return out, images, continued_text(messages)


def _template(vlm: LoadedVLM, hf_messages: list[dict[str, Any]], prefill: str | None,
              tools: list[ToolDef] | None) -> str:
    return str(vlm.processor.apply_chat_template(
        hf_messages, tools=[_tool_json(t) for t in tools] if tools else None, tokenize=False,
        add_generation_prompt=prefill is None, continue_final_message=prefill is not None))


def _tool_json(tool: ToolDef) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": tool.parameters}}


def _tool_call_schema(tools: list[ToolDef]) -> dict[str, Any]:
    """One tool call as JSON: ``{"name": ..., "arguments": {...}}`` for any of ``tools``."""
    options = [{"type": "object", "properties": {"name": {"type": "string", "enum": [t.name]},
                                                 "arguments": t.parameters},
                "required": ["name", "arguments"], "additionalProperties": False} for t in tools]
    return options[0] if len(options) == 1 else {"anyOf": options}


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _tool_calls(text: str, names: set[str]) -> list[ToolCall]:
    """The call in a constrained reply (bare JSON), or Qwen's ``<tool_call>{...}</tool_call>`` blocks."""
    found = [m.group(1) for m in _TOOL_CALL.finditer(text)] or [text.strip()]
    calls = []
    for i, raw in enumerate(found):
        value = _json_object(raw)
        if value and value.get("name") in names and isinstance(value.get("arguments"), dict):
            calls.append(ToolCall(id=f"call_{i}", name=value["name"], arguments=value["arguments"]))
    return calls
