"""VLM critics: ``openai:MODEL`` and ``anthropic:MODEL`` write an EditRefine-style critique (analysis,
satisfied, one re-edit instruction and a base) from the source, the current edit, the instruction, the last
verdict and the history. ``from-judge`` reads the critique a ``judge+critic`` judge already wrote into its
verdict, so a round costs one VLM call instead of two."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field
from refine_agent.tools.api.backend import ChatBackend, Msg, sent_seed
from refine_agent.tools.api.chat_tool import OnChatBackend
from refine_agent.tools.api.errors import Refused
from refine_agent.tools.api.options import TEMPERATURE_HELP, Temperature, WithAPITransport
from refine_agent.tools.judges.prompts import (
    MODES,
    format_context,
    format_history,
    format_instructions,
    format_verdict,
    json_schema,
    load_template,
    parse_answer,
    to_critique,
)
from refine_agent.tools.local.options import WithTransformersTransport, WithVLLMTransport
from refine_agent.tools.simulation import SimOptions, SimulatedTool

from refine_agent.errors import ConfigError, PermanentToolError
from refine_agent.protocols import ToolBase
from refine_agent.types import Critique, CritiqueRequest, ToolKind


class CriticOptions(BaseModel):
    """What a VLM critic asks, whatever backend serves the model."""

    model_config = ConfigDict(extra="forbid")

    template: str | None = Field(default=None, description="your own critic prompt file")
    temperature: Temperature = Field(default=0.0, description=TEMPERATURE_HELP)
    max_tokens: int = Field(default=1024, ge=16, description="longest reply")
    structured: bool = Field(default=True, description="ask for structured output where the server supports it")


class APICriticOptions(WithAPITransport, CriticOptions):
    """A VLM critic over an HTTP backend: the critic's options and the transport (``base_url=...``, ...)."""


class VLMCritic(OnChatBackend, ToolBase[CriticOptions]):
    """The VLM critic on any chat backend: ``chat`` is given (e.g. a ``FunctionChat``) or made from the
    registered backend ``provider`` with the options' transport."""

    provider: ClassVar[str] = "openai"
    kind: ClassVar[ToolKind] = "critic"
    Options = CriticOptions

    def __init__(self, model: str, options: Any = None, *, chat: ChatBackend | None = None) -> None:
        super().__init__(options)
        self.model = model
        self.name = f"{getattr(chat, 'provider', None) or self.provider}:{model}"  # type: ignore[misc]
        o = self.options
        self.mode = MODES["critic"]
        self.template = load_template(o.template or self.mode.templates[0])
        self.connect(chat, self.provider, model)

    @classmethod
    def from_spec(cls, model: str | None, options: dict[str, Any]) -> VLMCritic:
        if not model:
            raise ConfigError(f"critic '{cls.provider}' needs a model: {cls.provider}:MODEL")
        return cls(model, options)

    def prompt_ids(self) -> dict[str, Any]:
        return {"template": self.template.id}

    async def critique(self, req: CritiqueRequest) -> Critique:
        o = self.options
        schema = self.mode.schemas[0]
        text = self.template.render(instruction=req.instruction, context=format_context(req.context),
                                    verdict=format_verdict(req.verdict),
                                    history=format_history(list(req.history)),
                                    format_instructions=format_instructions(schema))
        parts: list[Any] = [text, "Source image:", req.source, "Current edit:", req.edited]
        try:
            reply = await self.chat.complete([Msg(role="user", parts=parts)],
                                             schema=json_schema(schema) if o.structured else None,
                                             schema_name="critique", temperature=o.temperature, seed=req.seed,
                                             max_tokens=o.max_tokens)
        except Refused as exc:
            raise PermanentToolError(f"critic {self.name}: {exc}") from None
        if reply.refused:
            raise PermanentToolError(f"critic {self.name} declined: {reply.refusal}")
        parsed = parse_answer(schema, reply.structured, reply.text, reply.reasoning)
        if parsed.value is None:  # a critique that cannot be read stops the loop; it is never made up
            raise PermanentToolError(f"critic {self.name}: the reply did not parse ({parsed.error}); "
                                     f"raw: {(reply.text or '')[:200]!r}")
        usage = reply.usage
        return to_critique(parsed.value, usage=usage, info={"model": reply.model, "template": self.template.id,
                                                            "temperature": o.temperature,
                                                            "seed": sent_seed(self.chat, req.seed)})


class LocalCriticOptions(WithTransformersTransport, CriticOptions):
    """A VLM critic on the in-process backend: the critic's options and where the model runs."""


class TransformersCritic(VLMCritic):
    provider = "transformers"
    Options = LocalCriticOptions
    summary: ClassVar[str] = "VLM critic in this process (transformers:PATH), batched, with constrained output"


class VLLMCriticOptions(WithVLLMTransport, CriticOptions):
    """A VLM critic on managed vLLM servers."""


class VLLMCritic(VLMCritic):
    provider = "vllm"
    Options = VLLMCriticOptions
    summary: ClassVar[str] = "VLM critic on managed vllm serve replicas (vllm:PATH) (GPU)"


class OpenAICritic(VLMCritic):
    provider = "openai"
    Options = APICriticOptions
    summary: ClassVar[str] = "VLM critic over the OpenAI-compatible Chat API"


class AnthropicCritic(VLMCritic):
    provider = "anthropic"
    Options = APICriticOptions
    summary: ClassVar[str] = "VLM critic over the Anthropic Messages API"


class FromJudgeCritic(SimulatedTool["FromJudgeCritic.Options"]):
    """The critique a ``judge+critic`` judge returned with its verdict; makes no call of its own."""

    name: ClassVar[str] = "from-judge"
    kind: ClassVar[ToolKind] = "critic"
    summary: ClassVar[str] = "reads the critique a judge+critic judge already wrote: no extra call"

    class Options(SimOptions):
        max_concurrency: int = Field(default=64, ge=1, description="calls served at once (capacity)")

    async def critique(self, req: CritiqueRequest) -> Critique:
        await self.simulate("critique", req.seed, req.edited.sha256, req.instruction)
        data = req.verdict.info.get("critique")
        if not isinstance(data, dict):
            raise PermanentToolError("critic from-judge needs a judge that writes critiques: use a VLM judge with "
                                     "-J mode=judge+critic")
        return to_critique(data, info={"from_judge": req.verdict.judge})
