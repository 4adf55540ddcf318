"""VLM judges: ``openai:MODEL`` (any OpenAI-compatible server: OpenAI, vLLM ``serve``, DashScope's
compatible mode, ...) and ``anthropic:MODEL``. ``VLMJudge`` is written once against the chat backend seam
(``tools.api.backend``): it runs on any registered backend, or on one it is given (``chat=``).

Modes (``-J mode=...``), each with one output contract that writes the prompt's format instructions and
parses the reply (``tools.judges.prompts``):

- ``viescore`` (default): two calls, SC on source + edit ([success, overediting]) and PQ on the edit
  ([naturalness, artifacts]); ``viescore_single`` asks for all four in one call;
- ``yesno``: a strict pass/fail with reasoning (RE-Edit); per-sample context (a rationale) goes in the prompt;
- ``iecritic``: one 1-5 rating after ``<think>`` reasoning, in ``<answer>`` tags (IE-Critic-R1), mapped to 0-10;
- ``judge+critic``: the VIEScore judgment and a critique in one call; pair it with ``--critic from-judge``.

Replies use structured output where the server supports it and are parsed tolerantly otherwise. A reply
that does not parse is a ``parse_error`` verdict with the raw text; a refusal is ``refused``; neither is
ever scored. ``repeats`` asks several times (new seeds) and aggregates; fewer than ``min_valid`` valid
answers is a failed judgment. Repeats, and viescore's SC and PQ calls, are issued together where the backend
is ``concurrent`` (a batching backend), else one after another; the recorded order is the seeds' either way.
Every verdict records the model id the server reported, the temperature,
the seeds and the prompt template ids.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from refine_agent.tools.api.backend import (
    ChatBackend,
    ChatReply,
    Msg,
    backend_record,
    issue_all,
    sent_seed,
)
from refine_agent.tools.api.chat_tool import OnChatBackend
from refine_agent.tools.api.errors import Refused
from refine_agent.tools.api.options import TEMPERATURE_HELP, Temperature, WithAPITransport
from refine_agent.tools.local.options import WithTransformersTransport, WithVLLMTransport

from refine_agent.errors import ConfigError
from refine_agent.protocols import ToolBase
from refine_agent.types import Critique, JudgeRequest, ToolKind, Usage, Verdict

from .masking import masked
from .prompts import (
    MODES,
    Mode,
    format_context,
    format_instructions,
    json_schema,
    load_template,
    parse_answer,
    reply_pattern,
)

Aggregate = Literal["mean", "median", "majority"]


class JudgeOptions(BaseModel):
    """What a VLM judge asks and how it aggregates, whatever backend serves the model."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["viescore", "viescore_single", "yesno", "iecritic", "judge+critic"] = Field(
        default="viescore", description="what to ask; see the module docs")
    template: str | None = Field(default=None, description="your own prompt file (for viescore: the SC prompt)")
    pq_template: str | None = Field(default=None, description="your own PQ prompt file (viescore)")
    temperature: Temperature = Field(default=0.0, description=TEMPERATURE_HELP)
    max_tokens: int = Field(default=1024, ge=16, description="longest reply")
    structured: bool = Field(default=True, description="ask for structured output where the server supports it")
    repeats: int = Field(default=1, ge=1, le=20, description="ask this many times (new seeds) and aggregate")
    aggregate: Aggregate = Field(default="mean", description="mean or median of the scores; majority: pass/fail "
                                 "by majority vote (scores are averaged)")
    min_valid: int = Field(default=1, ge=1, description="fewest valid answers for a verdict")
    pass_threshold: float = Field(default=7.0, ge=0, le=10, description="overall score that passes (score modes)")
    mask_dilation: int = Field(default=7, ge=0, description="pixels to grow a judging mask by (RefEdit uses 7)")

    @model_validator(mode="after")
    def _valid_counts(self) -> JudgeOptions:
        if self.min_valid > self.repeats:
            raise ValueError(f"min_valid={self.min_valid} is more than repeats={self.repeats}")
        return self


class APIJudgeOptions(WithAPITransport, JudgeOptions):
    """A VLM judge over an HTTP backend: the judge's options and the transport (``base_url=...``, ...)."""


@dataclass
class Answer:
    """One valid or failed answer to one request (one repeat)."""

    status: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    overall: float | None = None
    passed: bool | None = None
    reasoning: str = ""
    raw: str = ""
    critique: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class VLMJudge(OnChatBackend, ToolBase[JudgeOptions]):
    """The VLM judge on any chat backend: ``chat`` is given (e.g. a ``FunctionChat``) or made from the
    registered backend ``provider`` with the options' transport."""

    provider: ClassVar[str] = "openai"
    kind: ClassVar[ToolKind] = "judge"
    Options = JudgeOptions

    def __init__(self, model: str, options: Any = None, *, chat: ChatBackend | None = None) -> None:
        super().__init__(options)
        self.model = model
        provider = getattr(chat, "provider", None) or self.provider
        self.name = f"{provider}:{model}"  # type: ignore[misc]
        o = self.options
        self.mode: Mode = MODES[o.mode]
        names = list(self.mode.templates)
        if o.template:
            names[0] = o.template
        if o.pq_template and len(names) > 1:
            names[1] = o.pq_template
        self.templates = [load_template(n) for n in names]
        self.connect(chat, self.provider, model)

    @classmethod
    def from_spec(cls, model: str | None, options: dict[str, Any]) -> VLMJudge:
        if not model:
            raise ConfigError(f"judge '{cls.provider}' needs a model: {cls.provider}:MODEL, e.g. "
                              f"{'openai:gpt-4o' if cls.provider == 'openai' else 'anthropic:claude-sonnet-4-5'}")
        return cls(model, options)

    def prompt_ids(self) -> dict[str, Any]:
        return {"templates": [t.id for t in self.templates]}

    def prefill(self) -> str | None:
        """The mode's assistant prefill (IE-Critic's ``<think>``), where the backend can continue a message."""
        return self.mode.prefill if getattr(self.chat, "continues_final_message", False) else None

    # -- one request ---------------------------------------------------------------------------------------
    async def _ask(self, schema: Any, template: Any, images: list[Any], values: dict[str, Any],
                   seed: int) -> tuple[Any, ChatReply | None, str]:
        o = self.options
        text = template.render(format_instructions=format_instructions(schema), **values)
        structured = o.structured and self.mode.structured
        messages = [Msg(role="user", parts=[text, *images])]
        prefill = self.prefill()
        if prefill:  # the reply continues this assistant text (and starts with it)
            messages.append(Msg(role="assistant", parts=[prefill]))
        extra: dict[str, Any] = {}
        if o.structured and not self.mode.structured and getattr(self.chat, "takes_pattern", False):
            extra["pattern"] = reply_pattern(schema, prefill=prefill or "", max_tokens=o.max_tokens)
        try:
            reply = await self.chat.complete(messages, schema=json_schema(schema) if structured else None,
                                             schema_name=schema.__name__.lower(), temperature=o.temperature,
                                             seed=seed, max_tokens=o.max_tokens, **extra)
        except Refused as exc:
            return None, None, f"refused: {exc}"
        if reply.refused:
            return None, reply, f"refused: {reply.refusal}"
        parsed = parse_answer(schema, reply.structured, reply.text, reply.reasoning)
        if parsed.value is None:
            return None, reply, f"parse_error: {parsed.error}"
        return parsed.value, reply, ""

    async def _answer(self, req: JudgeRequest, seed: int) -> tuple[Answer, list[ChatReply]]:
        """One repeat: the mode's calls (viescore: SC and PQ), issued together where the backend batches."""
        o = self.options
        values = {"instruction": req.instruction, "context": format_context(req.context)}
        source, edited = req.source, req.edited
        if req.mask is not None and self.mode.uses_mask:
            source, edited = masked(source, req.mask, o.mask_dilation), masked(edited, req.mask, o.mask_dilation)
            values["instruction"] = req.context.get("masked_instruction", req.instruction)
        calls = []
        for i, (schema, template) in enumerate(zip(self.mode.schemas, self.templates, strict=True)):
            sees_both = self.mode.images[i] == "both"
            images = ["Source image:", source, "Edited image:", edited] if sees_both else ["Edited image:",
                                                                                          req.edited]
            calls.append(lambda s=schema, t=template, im=images: self._ask(s, t, im, values, seed))
        results = await issue_all(self.chat, calls, stop=lambda r: bool(r[2]))
        replies = [reply for _, reply, _ in results if reply is not None]
        raw = "\n---\n".join(_raw(r) for r in replies)
        problem = next((p for _, _, p in results if p), "")
        if problem:
            return Answer(status=problem.split(":", 1)[0], reasoning=problem, raw=raw), replies
        return self.mode.to_answer([value for value, _, _ in results], Answer, raw=raw), replies

    # -- the judgment ---------------------------------------------------------------------------------------
    async def judge(self, req: JudgeRequest) -> Verdict:
        o = self.options
        repeats = [lambda seed=req.seed + i: self._answer(req, seed) for i in range(o.repeats)]
        done = await issue_all(self.chat, repeats)  # in seed order, whether issued together or not
        answers = [answer for answer, _ in done]
        replies = [reply for _, rs in done for reply in rs]
        total = sum((r.usage for r in replies), Usage())
        models = {r.model for r in replies}
        info = {"model": sorted(models)[0] if len(models) == 1 else sorted(models), "requested_model": self.model,
                "mode": o.mode, "temperature": o.temperature, "max_tokens": o.max_tokens,
                "seeds": [sent_seed(self.chat, req.seed + i) for i in range(o.repeats)],
                "templates": [t.id for t in self.templates], "repeats": o.repeats, "aggregate": o.aggregate,
                **({"prefill": self.prefill()} if self.prefill() else {}), **backend_record(self.chat)}
        valid = [a for a in answers if a.status == "ok"]
        info["valid"] = len(valid)
        if len(valid) < o.min_valid:
            worst = Counter(a.status for a in answers if a.status != "ok").most_common(1)[0][0]
            return Verdict.failed(worst, f"{len(valid)} of {o.repeats} answers were usable "  # type: ignore[arg-type]
                                  f"(need {o.min_valid}): " + " | ".join(a.reasoning for a in answers if a.reasoning),
                                  judge=self.name, raw="\n===\n".join(a.raw for a in answers), usage=total, info=info)
        return self._aggregate(valid, total, info)

    def _aggregate(self, valid: list[Answer], usage: Usage, info: dict[str, Any]) -> Verdict:
        o = self.options
        pick = statistics.median if o.aggregate == "median" else statistics.fmean
        reasoning = valid[0].reasoning if len(valid) == 1 else " | ".join(a.reasoning for a in valid)
        raw = "\n===\n".join(a.raw for a in valid)
        for k in valid[0].extra:  # e.g. IE-Critic's raw 1-5 rating: one per answer when there are repeats
            values = [a.extra.get(k) for a in valid]
            info[k] = values[0] if all(v == values[0] for v in values) else values
        critique = next((a.critique for a in valid if a.critique is not None), None)
        if critique is not None:
            info["critique"] = critique
        if valid[0].scores:
            scores = {k: [round(pick(a.scores[k][i] for a in valid), 4) for i in range(len(valid[0].scores[k]))]
                      for k in valid[0].scores}
            v = Verdict(scores=scores, reasoning=reasoning, judge=self.name, raw=raw, usage=usage, info=info)
            v.passed = self._passes(v.overall, [a.passed for a in valid])
            return v
        overall = None
        if valid[0].overall is not None:
            overall = round(pick(a.overall for a in valid if a.overall is not None), 4)
        passed = self._passes(overall, [a.passed for a in valid])
        return Verdict(overall=overall, passed=passed, reasoning=reasoning, judge=self.name, raw=raw, usage=usage,
                       info=info)

    def _passes(self, overall: float | None, votes: list[bool | None]) -> bool | None:
        o = self.options
        if overall is not None and (o.aggregate != "majority" or all(v is None for v in votes)):
            return overall >= o.pass_threshold
        known = [v for v in votes if v is not None]
        return None if not known else sum(known) * 2 > len(known)


def _raw(reply: ChatReply) -> str:
    """What a reply said, as verdicts record it: the reasoning a server split out (in ``<think>`` tags, as the
    model wrote it), then the text or the structured output."""
    think = f"<think>{reply.reasoning}</think>" if reply.reasoning else ""
    return think + (reply.text or (reply.structured and str(reply.structured)) or "")


class LocalJudgeOptions(WithTransformersTransport, JudgeOptions):
    """A VLM judge on the in-process backend: the judge's options and where the model runs (``dtype=...``)."""


class TransformersJudge(VLMJudge):
    provider = "transformers"
    Options = LocalJudgeOptions
    summary: ClassVar[str] = ("VLM judge in this process (transformers:PATH): Qwen2/2.5/3-VL, IE-Critic-R1, ...; "
                              "batched, with constrained output")


class VLLMJudgeOptions(WithVLLMTransport, JudgeOptions):
    """A VLM judge on managed vLLM servers: the judge's options and the servers' (``tensor_parallel_size=...``)."""


class VLLMJudge(VLMJudge):
    provider = "vllm"
    Options = VLLMJudgeOptions
    summary: ClassVar[str] = ("VLM judge on managed vllm serve replicas (vllm:PATH), started and stopped for the "
                              "run (GPU)")


class OpenAIJudge(VLMJudge):
    provider = "openai"
    Options = APIJudgeOptions
    summary: ClassVar[str] = "VLM judge over the OpenAI-compatible Chat API (OpenAI, vLLM, DashScope, ...)"


class AnthropicJudge(VLMJudge):
    provider = "anthropic"
    Options = APIJudgeOptions
    summary: ClassVar[str] = "VLM judge over the Anthropic Messages API"


__all__ = ["APIJudgeOptions", "AnthropicJudge", "Critique", "JudgeOptions", "OpenAIJudge", "VLMJudge"]
