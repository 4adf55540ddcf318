"""The OpenAI Chat Completions wire format: one adapter for OpenAI, vLLM's ``serve``, DashScope's
compatible mode and any other OpenAI-compatible server. Images travel as PNG data URLs. Structured output
uses ``response_format`` with a JSON schema; a server that rejects it (400, or 422 from FastAPI servers such as
older ``transformers serve``) is asked again without it, and the reply is then parsed from text. A server that
ignores it (today's ``transformers serve``) sends text, which is parsed the same way. Reasoning a server splits
out of the answer (``message.reasoning_content``, or vLLM's newer ``message.reasoning``) becomes
``ChatReply.reasoning``; the content, even when empty, stays the text."""

from __future__ import annotations

import json
import re
from typing import Any

from refine_agent.errors import PermanentToolError, TransientToolError

from .backend import ChatReply, Msg, ToolCall, ToolDef
from .chat import ChatAdapter, data_url


def _content(m: Msg) -> list[dict[str, Any]] | str:
    parts: list[dict[str, Any]] = []
    for p in m.parts:
        if isinstance(p, str):
            parts.append({"type": "text", "text": p})
        else:
            parts.append({"type": "image_url", "image_url": {"url": data_url(p)}})
    if m.role in ("system", "tool", "assistant"):  # these roles take text only
        return "\n\n".join(x["text"] for x in parts if x["type"] == "text")
    return parts


def to_openai(messages: list[Msg]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": _content(m)})
            images = [p for p in m.parts if not isinstance(p, str)]
            if images:  # tool results cannot hold images here: show them in a user turn right after
                out.append({"role": "user", "content": _content(Msg(role="user", parts=["(images from the tool)",
                                                                                        *images]))})
            continue
        item: dict[str, Any] = {"role": m.role, "content": _content(m)}
        if m.tool_calls:
            item["tool_calls"] = [{"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                                  for c in m.tool_calls]
        out.append(item)
    return out


class OpenAIChat(ChatAdapter):
    provider = "openai"
    sdk = "openai"

    def __init__(self, model: str, opts: Any) -> None:
        super().__init__(model, opts)
        self.structured_ok = [True] * len(self.endpoints.urls)  # off for a server without json_schema support
        # OpenAI's own API wants max_completion_tokens (its reasoning models reject max_tokens); other servers
        # are asked with the older name, which every compatible server knows. A server that rejects the name
        # it was sent gets the other one, per endpoint, from then on.
        self.token_param = ["max_completion_tokens" if "api.openai.com" in url else "max_tokens"
                            for url in self.endpoints.urls]

    def _client(self, base_url: str) -> Any:
        import openai

        return openai.AsyncOpenAI(api_key=self.endpoints.key, base_url=base_url, max_retries=0,
                                  timeout=self.opts.timeout_s)

    async def _send(self, client: Any, messages: list[Msg], *, schema: dict[str, Any] | None, schema_name: str,
                    tools: list[ToolDef] | None, force_tool: str | None, temperature: float | None,
                    seed: int | None, max_tokens: int, extra_body: dict[str, Any] | None = None) -> ChatReply:
        import openai

        i = self.clients.index(client)
        kwargs: dict[str, Any] = {"model": self.model, "messages": to_openai(messages),
                                  self.token_param[i]: max_tokens}
        if temperature is not None:
            kwargs["temperature"] = temperature
        if seed is not None:
            kwargs["seed"] = self.sent_seed(seed)
        if tools:
            kwargs["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                                 "parameters": t.parameters}} for t in tools]
            if force_tool:
                kwargs["tool_choice"] = {"type": "function", "function": {"name": force_tool}}
        if schema is not None and self.structured_ok[i]:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": schema_name, "schema": schema, "strict": True}}
        if self.opts.extra_body or extra_body:
            kwargs["extra_body"] = {**self.opts.extra_body, **(extra_body or {})}
        for _ in range(3):  # each retry drops or renames one parameter the server rejected
            try:
                resp = await client.chat.completions.create(**kwargs)
                break
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:  # 422: FastAPI's validation
                rejected = _rejected_param(exc)
                if "response_format" in kwargs and (rejected == "response_format" or _about_response_format(exc)):
                    self.structured_ok[i] = False
                    kwargs.pop("response_format")
                elif rejected in ("max_tokens", "max_completion_tokens") and rejected in kwargs:
                    other = "max_completion_tokens" if rejected == "max_tokens" else "max_tokens"
                    self.token_param[i] = other
                    kwargs[other] = kwargs.pop(rejected)
                elif rejected == "temperature" and "temperature" in kwargs:
                    raise PermanentToolError(
                        f"openai at {client.base_url}: model '{self.model}' rejects temperature={temperature:g} "
                        "(reasoning models take only their default); set the tool option temperature=none, "
                        "e.g. -J temperature=none") from None
                else:
                    raise
        else:
            raise PermanentToolError(f"openai at {client.base_url} kept rejecting the request's parameters")
        if not hasattr(resp, "choices"):  # a body that was not a chat completion (e.g. an HTML error page)
            raise TransientToolError(f"openai at {client.base_url} sent something that is not a chat completion")
        return _reply(resp, self.model, structured="response_format" in kwargs)


def _rejected_param(exc: Exception) -> str | None:
    """The request parameter a 400 names (OpenAI sets ``param``; other servers only say it in the text)."""
    param = getattr(exc, "param", None)
    if isinstance(param, str) and param:
        return param
    found = re.search(r"['\"`](max_tokens|max_completion_tokens|temperature)['\"`]", _error_text(exc))
    return found.group(1) if found else None


def _error_text(exc: Exception) -> str:
    """The error's message, and the ``detail`` of a FastAPI error body (``{"detail": ...}``), which the SDK's
    message leaves out: it only quotes an ``error.message``."""
    body = getattr(exc, "body", None)
    detail = body.get("detail") if isinstance(body, dict) else None
    return f"{exc} {detail}" if detail else str(exc)


def _about_response_format(exc: Exception) -> bool:
    text = _error_text(exc).lower()
    return any(w in text for w in ("response_format", "json_schema", "structured", "guided"))


def _reply(resp: Any, model: str, *, structured: bool) -> ChatReply:
    choice = resp.choices[0] if resp.choices else None
    message = choice.message if choice is not None else None
    text = (message.content or "") if message is not None else ""
    refusal = getattr(message, "refusal", None) if message is not None else None
    finish = choice.finish_reason if choice is not None else None
    if finish == "content_filter" and not refusal:
        refusal = "the provider's content filter stopped the reply"
    calls = []
    for c in (getattr(message, "tool_calls", None) or []):
        try:
            args = json.loads(c.function.arguments or "{}")
        except json.JSONDecodeError:
            args = {"_unparsed": c.function.arguments}
        calls.append(ToolCall(id=c.id, name=c.function.name, arguments=args if isinstance(args, dict) else {}))
    parsed = None
    if structured and text and refusal is None:
        try:
            value = json.loads(text)
            parsed = value if isinstance(value, dict) else None
        except json.JSONDecodeError:
            parsed = None  # the text parser gets another chance
    usage = getattr(resp, "usage", None)
    # vLLM's reasoning parsers (and some other servers) split the reasoning out of the answer
    reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None)
    return ChatReply(text=text, model=getattr(resp, "model", None) or model, structured=parsed, tool_calls=calls,
                     finish_reason=finish, refusal=refusal,
                     reasoning=reasoning if isinstance(reasoning, str) and reasoning else None,
                     input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                     output_tokens=int(getattr(usage, "completion_tokens", 0) or 0))
