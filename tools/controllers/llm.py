"""``llm:PROVIDER:MODEL`` controller: a tool-calling LLM (OpenAI-compatible or Anthropic) drives the
refinement loop itself through ``edit``, ``judge`` and ``finish``. It sees the source, the one-shot edit,
every image it asked for, and the budget left; the loop enforces the budget."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from refine_agent.tools.api.backend import (
    CHAT_BACKENDS,
    ChatBackend,
    Msg,
    ToolCall,
    ToolDef,
    sent_seed,
)
from refine_agent.tools.api.chat_tool import OnChatBackend
from refine_agent.tools.api.options import TEMPERATURE_HELP, Temperature, WithAPITransport
from refine_agent.tools.judges.prompts import format_context
from refine_agent.tools.local.options import WithTransformersTransport, WithVLLMTransport

from refine_agent.errors import ConfigError
from refine_agent.protocols import ToolBase
from refine_agent.textio import read_text
from refine_agent.types import ControllerDecision, ControllerRequest, ToolKind

PROMPT = Path(__file__).with_name("system_prompt.md")
IMAGE_REF = {"type": "string", "description": "a round number, or current / best"}
TOOLS = [
    ToolDef("edit", "Ask the editor for a new version of the image.", {
        "type": "object", "additionalProperties": False, "required": ["instruction", "base"],
        "properties": {"instruction": {"type": "string", "description": "what the editor should do now"},
                       "base": {"type": "string", "description": "source, current, best, or a round number"}}}),
    ToolDef("judge", "Get the judge's verdict on a round.", {
        "type": "object", "additionalProperties": False, "required": ["image"], "properties": {"image": IMAGE_REF}}),
    ToolDef("finish", "Stop and keep a round as the result.", {
        "type": "object", "additionalProperties": False, "required": ["image", "reason"],
        "properties": {"image": IMAGE_REF, "reason": {"type": "string"}}}),
]


class ControllerOptions(BaseModel):
    """How the controller asks, whatever backend serves the model."""

    model_config = ConfigDict(extra="forbid")

    temperature: Temperature = Field(default=0.0, description=TEMPERATURE_HELP)
    max_tokens: int = Field(default=1024, ge=16, description="longest reply")
    prompt: str | None = Field(default=None, description="a file with your own system prompt")


class APIControllerOptions(WithAPITransport, ControllerOptions):
    """The controller over an HTTP backend: its options and the transport (``base_url=...``, ...)."""


class LocalControllerOptions(WithTransformersTransport, ControllerOptions):
    """The controller on the in-process backend: its options and where the model runs."""


class VLLMControllerOptions(WithVLLMTransport, ControllerOptions):
    """The controller on managed vLLM servers."""


# The options a controller takes depend on its backend (an HTTP transport, or where a local model runs).
OPTIONS_BY_PROVIDER: dict[str, type[BaseModel]] = {"transformers": LocalControllerOptions,
                                                   "vllm": VLLMControllerOptions}


class LLMController(OnChatBackend, ToolBase[APIControllerOptions]):
    name: ClassVar[str] = "llm"
    kind: ClassVar[ToolKind] = "controller"
    summary: ClassVar[str] = "a tool-calling LLM drives the refinement (llm:openai:MODEL, llm:anthropic:MODEL)"
    Options = APIControllerOptions

    def __init__(self, provider: str, model: str, options: Any = None, *, chat: ChatBackend | None = None) -> None:
        self.Options = OPTIONS_BY_PROVIDER.get(provider, APIControllerOptions)  # type: ignore[misc]
        super().__init__(options)
        if chat is None and provider not in CHAT_BACKENDS:
            raise ConfigError(f"controller llm:{provider}:{model}: the provider must be one of "
                              f"{', '.join(sorted(CHAT_BACKENDS))}")
        self.provider, self.model = provider, model
        self.name = f"llm:{provider}:{model}"  # type: ignore[misc]
        o = self.options
        path = Path(o.prompt) if o.prompt else PROMPT
        if not path.is_file():
            raise ConfigError(f"controller prompt file {path} does not exist")
        try:
            self.system = read_text(path)  # a BOM, as Windows editors write, is dropped
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read controller prompt file {path}: {exc}") from None
        self.prompt_id = f"{path.stem}-{hashlib.sha256(self.system.encode()).hexdigest()[:8]}"
        self.connect(chat, provider, model)

    @classmethod
    def from_spec(cls, model: str | None, options: dict[str, Any]) -> LLMController:
        provider, _, name = (model or "").partition(":")
        if not provider or not name:
            raise ConfigError("a controller spec needs a provider and a model, e.g. llm:openai:gpt-4o or "
                              "llm:anthropic:claude-sonnet-4-5")
        return cls(provider, name, options)

    def prompt_ids(self) -> dict[str, Any]:
        return {"prompt": self.prompt_id}

    def messages(self, req: ControllerRequest) -> list[Msg]:
        r0 = req.rounds[0] if req.rounds else None
        first: list[Any] = [f"Instruction: {req.instruction}"]
        context = format_context(req.context, sep="; ")
        if context:
            first.append("Context: " + context)
        first += ["The original image:", req.source]
        if r0 is not None and r0.image in req.images:
            v = r0.verdict
            verdict = f"overall {v.overall}, passed {v.passed}: {v.reasoning}" if v is not None else "not judged"
            first += ["Round 0, the first edit of the original:", req.images[r0.image], f"Its verdict: {verdict}"]
        msgs = [Msg(role="system", parts=[self.system]), Msg(role="user", parts=first)]
        for e in req.transcript:
            msgs.append(Msg(role="assistant", tool_calls=[ToolCall(id=e.id, name=e.name, arguments=e.arguments)]))
            msgs.append(Msg(role="tool", tool_call_id=e.id,
                            parts=[e.result, *(req.images[h] for h in e.images if h in req.images)]))
        left = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in req.budget_left.items() if v is not None)
        msgs.append(Msg(role="user", parts=[f"Budget left: {left}. Call one tool."]))
        return msgs

    async def decide(self, req: ControllerRequest) -> ControllerDecision:
        o = self.options
        reply = await self.chat.complete(self.messages(req), tools=TOOLS, temperature=o.temperature, seed=req.seed,
                                         max_tokens=o.max_tokens)
        usage = reply.usage
        info = {"model": reply.model, "prompt": self.prompt_id, "temperature": o.temperature,
                "seed": sent_seed(self.chat, req.seed)}
        if not reply.tool_calls:  # the loop tells the model to call a tool, and counts the turn
            return ControllerDecision(id=f"turn-{len(req.transcript)}", name="", thought=reply.text or
                                      (reply.refusal or ""), usage=usage, info=info)
        call = reply.tool_calls[0]
        return ControllerDecision(id=call.id, name=call.name, arguments=call.arguments, thought=reply.text,
                                  usage=usage, info=info)
