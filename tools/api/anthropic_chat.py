"""The Anthropic Messages wire format. Images travel as base64 image blocks. Structured output is a forced
tool whose input schema is the output contract; the tool's input is the structured reply."""

from __future__ import annotations

from typing import Any

from refine_agent.errors import TransientToolError

from .backend import ChatReply, Msg, ToolCall, ToolDef, without_bounds
from .chat import ChatAdapter, png_base64


def _blocks(m: Msg) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for p in m.parts:
        if isinstance(p, str):
            if p:
                blocks.append({"type": "text", "text": p})
        else:
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                       "data": png_base64(p)}})
    return blocks


def to_anthropic(messages: list[Msg]) -> tuple[str, list[dict[str, Any]]]:
    system = "\n\n".join(p for m in messages if m.role == "system" for p in m.parts if isinstance(p, str))
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": _blocks(m)}
            if out and out[-1]["role"] == "user":  # consecutive results share one user turn
                out[-1]["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        content = _blocks(m)
        for c in m.tool_calls:
            content.append({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
        out.append({"role": m.role, "content": content})
    return system, out


class AnthropicChat(ChatAdapter):
    provider = "anthropic"
    sdk = "anthropic"
    takes_seed = False  # the Messages API has no seed

    def _client(self, base_url: str) -> Any:
        import anthropic

        return anthropic.AsyncAnthropic(api_key=self.endpoints.key, base_url=base_url, max_retries=0,
                                        timeout=self.opts.timeout_s)

    async def _send(self, client: Any, messages: list[Msg], *, schema: dict[str, Any] | None, schema_name: str,
                    tools: list[ToolDef] | None, force_tool: str | None, temperature: float | None,
                    seed: int | None, max_tokens: int, extra_body: dict[str, Any] | None = None) -> ChatReply:
        system, msgs = to_anthropic(messages)
        kwargs: dict[str, Any] = {"model": self.model, "messages": msgs, "max_tokens": max_tokens}
        if system:
            kwargs["system"] = system
        defs = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools or []]
        if schema is not None:
            # strict tool schemas reject numeric bounds: the ranges stay in the descriptions (and the parser)
            defs.append({"name": schema_name, "description": "Report your answer with this tool.",
                         "input_schema": without_bounds(schema)})
            force_tool = schema_name
        if defs:
            kwargs["tools"] = defs
            kwargs["tool_choice"] = {"type": "tool", "name": force_tool} if force_tool else {"type": "auto"}
        extra = {**self.opts.extra_body, **(extra_body or {})}
        if temperature is not None:  # no longer a named argument of the SDK; the API still reads it
            extra.setdefault("temperature", temperature)
        if extra:
            kwargs["extra_body"] = extra
        resp = await client.messages.create(**kwargs)
        if not hasattr(resp, "content"):  # a body that was not a message (e.g. an HTML error page)
            raise TransientToolError(f"anthropic at {client.base_url} sent something that is not a message")
        text = "".join(getattr(b, "text", "") for b in resp.content if getattr(b, "type", None) == "text")
        calls = [ToolCall(id=b.id, name=b.name, arguments=dict(b.input or {}))
                 for b in resp.content if getattr(b, "type", None) == "tool_use"]
        structured = None
        if schema is not None:
            structured = next((c.arguments for c in calls if c.name == schema_name), None)
            calls = [c for c in calls if c.name != schema_name]
        refusal = "the model declined to answer" if resp.stop_reason == "refusal" else None
        thinking = "".join(getattr(b, "thinking", "") or "" for b in resp.content
                           if getattr(b, "type", None) == "thinking")
        usage = resp.usage
        return ChatReply(text=text, model=resp.model or self.model, structured=structured, tool_calls=calls,
                         finish_reason=resp.stop_reason, refusal=refusal, reasoning=thinking or None,
                         input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
                         output_tokens=int(getattr(usage, "output_tokens", 0) or 0))
