"""Output contracts of the VLM judges and critics: one pydantic schema per call, and the mode registry.

A schema is the single source of a call's reply format: ``json_schema`` (structured output),
``format_instructions`` (the prompt text) and the parsers (``parsing``) are all derived from it.

Field order is generation order under strict decoding, so every schema asks for its reasoning first and its
scores or decision after it. Scores and decisions are required; the free-text fields (reasoning, analysis, a
satisfied critique's instruction) and ``base`` have defaults, so a free-text reply may leave them out. The
strict JSON schema still requires every field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from refine_agent.types import Critique, viescore_overall

ImageSet = Literal["both", "edited"]
ReplyFormat = Literal["json", "tags"]


def _not_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("a score must be a number, not true/false")
    return v


Score10 = Annotated[float, BeforeValidator(_not_bool), Field(ge=0, le=10)]
Rating5 = Annotated[float, BeforeValidator(_not_bool), Field(ge=1, le=5)]


class Contract(BaseModel):
    """Base of every output schema. Extra keys in a reply are ignored; missing or out-of-range ones are errors."""

    model_config = ConfigDict(extra="ignore")
    reply_format: ClassVar[ReplyFormat] = "json"
    tags: ClassVar[dict[str, str]] = {}  # tag name -> field, for the "tags" reply format

    @classmethod
    def score_fields(cls) -> list[str]:
        """The numeric score fields, in order (the order of a ``[a, b]`` list reply)."""
        return [n for n, f in cls.model_fields.items() if f.annotation in (float, int)]

    @classmethod
    def score_only(cls) -> bool:
        """True when every field without a default is a score: a bare number list can fill it."""
        scores = set(cls.score_fields())
        return bool(scores) and all(n in scores for n, f in cls.model_fields.items() if f.is_required())


def _reasoning(what: str = "A short explanation: what you saw and why it earns these scores",
               example: str = "<two or three sentences>") -> Any:
    return Field(default="", description=what, examples=[example])


_SUCCESS = "How fully the edited image carries out the instruction; 10 = done completely and exactly as asked"
_OVEREDIT = "How well everything the instruction did not ask to change was kept; 10 = nothing else changed"
_NATURAL = "How natural and coherent the edited image looks (lighting, shadows, perspective); 10 = fully natural"
_ARTIFACTS = "How free the edited image is of defects such as smears, distortions, seams or garbled text; 10 = none"


class SemanticConsistency(Contract):
    """VIEScore SC call (sees source + edited + instruction): ``SC = [success, overediting]``."""

    reasoning: str = _reasoning()
    success: Score10 = Field(description=_SUCCESS, examples=[8])
    overediting: Score10 = Field(description=_OVEREDIT, examples=[9])


class PerceptualQuality(Contract):
    """VIEScore PQ call (sees only the edited image): ``PQ = [naturalness, artifacts]``."""

    reasoning: str = _reasoning()
    naturalness: Score10 = Field(description=_NATURAL, examples=[7])
    artifacts: Score10 = Field(description=_ARTIFACTS, examples=[9])


class VieScore(PerceptualQuality, SemanticConsistency):
    """VIEScore in one call: reasoning, then the SC scores, then the PQ scores."""


class YesNo(Contract):
    """A strict pass/fail judgment (RE-Edit style)."""

    reasoning: str = _reasoning("A short explanation: what you checked and why the edit passes or fails")
    passed: bool = Field(description="true only if the edit fully and correctly does what was asked", examples=[False])


class IECriticRating(Contract):
    """IE-Critic-R1 style: reasoning in ``<think>``, one overall 1-5 rating in ``<answer>``."""

    reply_format: ClassVar[ReplyFormat] = "tags"
    tags: ClassVar[dict[str, str]] = {"think": "reasoning", "answer": "rating"}
    reasoning: str = _reasoning("Your step-by-step assessment of the edit", "<your reasoning>")
    rating: Rating5 = Field(description="The overall rating of the edit; 5 = excellent, 1 = failed", examples=[3])


_ANALYSIS = "What is still wrong with the latest result, and why (or why it is good enough)"
_SATISFIED = "true when the latest result fulfils the instruction well enough to stop editing"
_INSTRUCTION = "One concrete re-edit instruction for the editor; an empty string when satisfied"
_BASE = ("Which image the editor should start from: current = the latest result, source = the original image, "
         "best = the best earlier result")


class CriticAnswer(Contract):
    """EditRefine-style critique: is the latest result good enough, and if not, one re-edit instruction."""

    analysis: str = _reasoning(_ANALYSIS, "<what is wrong and why>")
    satisfied: bool = Field(description=_SATISFIED, examples=[False])
    instruction: str = Field(default="", description=_INSTRUCTION, examples=["<one re-edit instruction>"])
    base: Literal["current", "source", "best"] = Field(default="current", description=_BASE, examples=["current"])

    @model_validator(mode="after")
    def _instruction_when_unsatisfied(self) -> CriticAnswer:
        if not self.satisfied and not self.instruction.strip():
            raise ValueError("an unsatisfied critique needs a re-edit instruction")
        return self


class JudgeCritic(CriticAnswer, VieScore):
    """The VIEScore judgment and a critique in one call: the VieScore fields, then the CriticAnswer fields."""


# -- the schema's fields, and its strict JSON schema -----------------------------------------------------------
@dataclass(frozen=True)
class FieldSpec:
    """One reply field as the prompt and the JSON schema describe it."""

    name: str
    type: Literal["number", "integer", "boolean", "string"]
    description: str
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] = ()
    example: Any = None

    @property
    def kind_text(self) -> str:
        """The field's type and range in words, e.g. ``a number from 0 to 10``."""
        if self.enum:
            return "one of " + ", ".join(f'"{e}"' for e in self.enum)
        if self.type in ("number", "integer"):
            noun = "a whole number" if self.type == "integer" else "a number"
            if self.minimum is not None and self.maximum is not None:
                return f"{noun} from {self.minimum:g} to {self.maximum:g}"
            return noun
        return {"boolean": "true or false", "string": "a string"}[self.type]


_TYPES = {float: "number", int: "integer", bool: "boolean", str: "string"}


def field_specs(schema: type[BaseModel]) -> list[FieldSpec]:
    """The fields of a contract, in order. Contracts are flat: numbers, booleans, strings and string enums."""
    specs = []
    for name, f in schema.model_fields.items():
        ann, enum = f.annotation, ()
        if get_origin(ann) is Literal:
            enum, ann = tuple(str(a) for a in get_args(ann)), str
        if ann not in _TYPES:
            raise TypeError(f"{schema.__name__}.{name}: output contracts allow only number, bool, str and Literal "
                            f"fields, not {ann!r}")
        lo = next((m.ge for m in f.metadata if hasattr(m, "ge")), None)
        hi = next((m.le for m in f.metadata if hasattr(m, "le")), None)
        example = f.examples[0] if f.examples else None
        specs.append(FieldSpec(name, _TYPES[ann], (f.description or name).rstrip("."),  # type: ignore[arg-type]
                               None if lo is None else float(lo), None if hi is None else float(hi), enum, example))
    return specs


def json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """A JSON schema for strict structured output (OpenAI's ``response_format`` json_schema with ``strict: true``,
    vLLM's structured outputs, the local backends' grammars).

    A flat root object, ``type``/``description``/``enum`` per property, every property in ``required`` and
    ``additionalProperties: false``, and each score's range as ``minimum``/``maximum`` (integers where the
    contract asks for integers), so a grammar built from it cannot emit an out-of-range score. The range is in
    the description too, for servers that ignore bounds; the parser checks it either way. APIs whose strict
    mode rejects bounds (Anthropic's forced tools) strip them (``api.backend.without_bounds``). No ``title``,
    ``default`` or ``examples``.
    """
    props: dict[str, Any] = {}
    for s in field_specs(schema):
        p: dict[str, Any] = {"type": s.type}
        if s.enum:
            p["enum"] = list(s.enum)
        desc = s.description
        if s.type in ("number", "integer") and s.minimum is not None:
            desc += f" ({s.kind_text})"
        p["description"] = desc + "."
        if s.minimum is not None:
            p["minimum"] = int(s.minimum) if s.type == "integer" else s.minimum
        if s.maximum is not None:
            p["maximum"] = int(s.maximum) if s.type == "integer" else s.maximum
        props[s.name] = p
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def text_budget(max_tokens: int, fields: int, fixed: int = 48) -> int:
    """Characters each free-text field of a constrained reply may use so that a reply with ``fields`` of them
    ends within ``max_tokens``. ``fixed`` is the rest of the reply in characters (keys, scores, tags), counted
    as a token each (a byte-level tokenizer's worst case for ASCII); a free-text character may take up to three
    tokens. Raise ``max_tokens`` for longer reasoning."""
    return max(8, (max_tokens - fixed) // (3 * max(1, fields)))


def _range_regex(lo: float, hi: float) -> str:
    """A number from ``lo`` to ``hi`` (whole-number bounds up to 10) with at most two decimals."""
    low, high = int(lo), int(hi)
    if low != lo or high != hi or not 0 <= low < high <= 10:
        raise ValueError(f"no tag pattern for the range {lo}..{hi}")
    below = f"[{low}-{min(high - 1, 9)}]"
    return f"(?:{below}(?:\\.[0-9]{{1,2}})?|{high}(?:\\.0{{1,2}})?)"


def reply_pattern(schema: type[Contract], *, prefill: str = "", max_tokens: int = 1024) -> str | None:
    """A regular expression for a tag-format reply (IE-Critic: ``<think>...</think><answer>N.NN</answer>``),
    without the ``prefill`` the backend continues from; None for JSON contracts (they have ``json_schema``)."""
    if schema.reply_format != "tags":
        return None
    specs = {s.name: s for s in field_specs(schema)}
    texts = sum(1 for f in schema.tags.values() if specs[f].type == "string")
    fixed = sum(2 * len(tag) + 5 + 6 for tag in schema.tags)  # each tag pair, a newline, a number
    budget = text_budget(max_tokens, texts, fixed)
    parts = []
    for tag, name in schema.tags.items():
        spec = specs[name]
        if spec.type == "string":
            body = f"[^<]{{0,{budget}}}"
        elif spec.minimum is not None and spec.maximum is not None:
            body = _range_regex(spec.minimum, spec.maximum)
        else:
            raise ValueError(f"{schema.__name__}.{name}: a tag pattern needs a string or a bounded number")
        parts.append(f"<{tag}>{body}</{tag}>")
    pattern = "\\n?".join(parts)
    if prefill:
        if not pattern.startswith(prefill):
            raise ValueError(f"{schema.__name__}: the prefill {prefill!r} does not start its reply")
        pattern = pattern[len(prefill):]
    return pattern


# -- mapping parsed replies to verdict fields --------------------------------------------------------------------
def viescore_scores(value: Any) -> tuple[dict[str, list[float]], float]:
    """``SC=[success, overediting]``, ``PQ=[naturalness, artifacts]`` and overall = sqrt(min(SC) * min(PQ))."""
    scores = {"SC": [float(value.success), float(value.overediting)],
              "PQ": [float(value.naturalness), float(value.artifacts)]}
    return scores, viescore_overall(scores["SC"], scores["PQ"])


def iecritic_to_10(rating: float) -> float:
    """An IE-Critic 1-5 rating on our 0-10 scale: (rating - 1) / 4 * 10."""
    if not (1.0 <= rating <= 5.0) or math.isnan(rating):
        raise ValueError(f"an IE-Critic rating must be within 1..5, got {rating}")
    return (rating - 1.0) / 4.0 * 10.0


def critique_fields(value: Any) -> dict[str, Any]:
    """The critique part of a ``CriticAnswer`` or ``JudgeCritic`` as a plain dict (see ``to_critique``)."""
    return {"analysis": value.analysis, "satisfied": value.satisfied,
            "instruction": value.instruction.strip() or None, "base": value.base}


def to_critique(value: Any, **kw: Any) -> Critique:
    """A ``Critique`` from a parsed ``CriticAnswer``/``JudgeCritic`` or from ``critique_fields``' dict."""
    data = value if isinstance(value, dict) else critique_fields(value)
    return Critique(**data, **kw)


@dataclass
class Judgment:
    """What a mode's parsed replies say, in the shape of a verdict: ready for ``Verdict(**...)`` minus status."""

    scores: dict[str, list[float]] = field(default_factory=dict)
    overall: float | None = None
    passed: bool | None = None
    reasoning: str = ""
    critique: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _combine_viescore(parts: list[Any]) -> Judgment:
    sc, pq = parts
    scores = {"SC": [sc.success, sc.overediting], "PQ": [pq.naturalness, pq.artifacts]}
    return Judgment(scores=scores, overall=viescore_overall(scores["SC"], scores["PQ"]),
                    reasoning=f"SC: {sc.reasoning.strip()}\nPQ: {pq.reasoning.strip()}")


def _combine_single(parts: list[Any]) -> Judgment:
    scores, overall = viescore_scores(parts[0])
    return Judgment(scores=scores, overall=overall, reasoning=parts[0].reasoning.strip())


def _combine_yesno(parts: list[Any]) -> Judgment:
    return Judgment(passed=parts[0].passed, reasoning=parts[0].reasoning.strip())


def _combine_iecritic(parts: list[Any]) -> Judgment:
    r = parts[0].rating
    return Judgment(overall=iecritic_to_10(r), reasoning=parts[0].reasoning.strip(),
                    extra={"rating": r, "rating_scale": "1-5"})


def _combine_critic(parts: list[Any]) -> Judgment:
    return Judgment(reasoning=parts[0].analysis.strip(), critique=critique_fields(parts[0]))


def _combine_judge_critic(parts: list[Any]) -> Judgment:
    j = _combine_single(parts)
    j.critique = critique_fields(parts[0])
    return j


@dataclass(frozen=True)
class Mode:
    """One way to ask a VLM: its calls, in order, each with a schema, a builtin template and the images it sees."""

    name: str
    schemas: tuple[type[Contract], ...]
    templates: tuple[str, ...]
    images: tuple[ImageSet, ...]
    combine: Callable[[list[Any]], Judgment]
    kind: Literal["judge", "critic"] = "judge"
    structured: bool = True  # ask for structured output (False: the reply is tagged text, e.g. iecritic)
    uses_mask: bool = True  # whether a judging mask (RefEdit) applies to this mode's images
    prefill: str | None = None  # the assistant turn starts with this, where the backend can continue it

    def __post_init__(self) -> None:
        if not (len(self.schemas) == len(self.templates) == len(self.images) > 0):
            raise ValueError(f"mode {self.name!r}: schemas, templates and images must pair up")

    @property
    def schema(self) -> type[Contract]:
        """The schema of a one-call mode."""
        if len(self.schemas) != 1:
            raise ValueError(f"mode {self.name!r} makes {len(self.schemas)} calls; use .schemas")
        return self.schemas[0]

    @property
    def calls(self) -> list[tuple[type[Contract], str, ImageSet]]:
        """(schema, builtin template name, images it sees) for each call, in order."""
        return list(zip(self.schemas, self.templates, self.images, strict=True))

    def judgment(self, parts: list[Any]) -> Judgment:
        """What the parsed values of this mode's calls (in call order) say, as verdict fields."""
        if len(parts) != len(self.schemas):
            raise ValueError(f"mode {self.name!r} expects {len(self.schemas)} parsed replies, got {len(parts)}")
        return self.combine(list(parts))

    def to_answer(self, parts: list[Any], factory: Callable[..., Any] = dict, **kw: Any) -> Any:
        """``factory(status="ok", scores=..., overall=..., passed=..., reasoning=..., critique=..., extra=..., **kw)``
        from ``judgment(parts)``."""
        j = self.judgment(parts)
        return factory(status="ok", scores=j.scores, overall=j.overall, passed=j.passed, reasoning=j.reasoning,
                       critique=j.critique, extra=j.extra, **kw)


MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("viescore", (SemanticConsistency, PerceptualQuality), ("viescore_sc", "viescore_pq"), ("both", "edited"),
         _combine_viescore),
    Mode("viescore_single", (VieScore,), ("viescore_single",), ("both",), _combine_single),
    Mode("yesno", (YesNo,), ("yesno",), ("both",), _combine_yesno),
    # IE-Critic-R1's evaluation prefills the assistant turn with <think>; so do backends that can continue it
    Mode("iecritic", (IECriticRating,), ("iecritic",), ("both",), _combine_iecritic, structured=False,
         uses_mask=False, prefill="<think>"),
    Mode("critic", (CriticAnswer,), ("critic",), ("both",), _combine_critic, kind="critic", uses_mask=False),
    Mode("judge+critic", (JudgeCritic,), ("judge_critic",), ("both",), _combine_judge_critic),
)}
