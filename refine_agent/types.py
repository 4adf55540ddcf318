"""The core records: requests and results of tool calls, verdicts, critiques, rounds and trajectories.

Requests carry pixels (``Image``); records that outlive a call (``Round``, ``Trajectory``) carry image
hashes only, so they serialise to JSON and stay small.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .images import Image

ToolKind = Literal["editor", "judge", "critic", "controller"]
TOOL_KINDS: tuple[ToolKind, ...] = ("editor", "judge", "critic")  # the kinds of the fixed-policy loop
VerdictStatus = Literal["ok", "parse_error", "refused", "error", "unsupported"]
Base = Literal["current", "source", "best"]
SCORE_MIN, SCORE_MAX = 0.0, 10.0


class Usage(BaseModel):
    """What one tool call consumed. Built-in tools report zero cost."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=self.cost_usd + other.cost_usd,
        )


class UsageTotals(BaseModel):
    """Usage summed over many calls, with call counts per tool kind."""

    calls: dict[str, int] = Field(default_factory=lambda: {k: 0 for k in TOOL_KINDS})
    cached_calls: int = 0
    retries: int = 0
    failed_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # what the results cost, counted against budgets (cached ones too)
    cached_cost_usd: float = 0.0  # the part of cost_usd served from the cache: not paid again

    def add_call(self, kind: str, usage: Usage, *, cached: bool = False, attempts: int = 1,
                 failed: bool = False) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1
        self.cached_calls += int(cached)
        self.retries += max(0, attempts - 1)
        self.failed_calls += int(failed)
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_usd += usage.cost_usd
        if cached:
            self.cached_cost_usd += usage.cost_usd

    def merge(self, other: UsageTotals) -> None:
        for kind, n in other.calls.items():
            self.calls[kind] = self.calls.get(kind, 0) + n
        self.cached_calls += other.cached_calls
        self.retries += other.retries
        self.failed_calls += other.failed_calls
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cost_usd += other.cost_usd
        self.cached_cost_usd += other.cached_cost_usd

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


class _Request(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)


class EditRequest(_Request):
    """Edit ``image`` following ``instruction``. ``source`` is the sample's original image."""

    image: Image
    instruction: str
    seed: int
    source: Image | None = None
    mask: Image | None = None
    context: dict[str, Any] = Field(default_factory=dict)


class EditResult(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    image: Image
    usage: Usage = Field(default_factory=Usage)
    info: dict[str, Any] = Field(default_factory=dict)


class Finding(BaseModel):
    """One structured observation by a judge, for critics: what is wrong, where, and by how much."""

    kind: str
    message: str
    severity: float = Field(default=1.0, ge=0.0, le=1.0)
    data: dict[str, Any] = Field(default_factory=dict)


class JudgeRequest(_Request):
    """Judge ``edited`` against ``source`` for ``instruction`` (always the sample's original instruction)."""

    source: Image
    edited: Image
    instruction: str
    seed: int
    mask: Image | None = None
    context: dict[str, Any] = Field(default_factory=dict)


def viescore_overall(sc: list[float], pq: list[float]) -> float:
    """VIEScore/GEdit overall: the geometric mean of the weakest semantic and the weakest quality score."""
    return math.sqrt(min(sc) * min(pq))


class Verdict(BaseModel):
    """A judgment. Scores are 0-10 lists by name (``SC``, ``PQ``). A failed judgment has no score at all."""

    status: VerdictStatus = "ok"
    scores: dict[str, list[float]] = Field(default_factory=dict)
    overall: float | None = None
    passed: bool | None = None
    reasoning: str = ""
    findings: list[Finding] = Field(default_factory=list)
    judge: str = ""
    raw: str | None = None
    info: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)

    @field_validator("scores")
    @classmethod
    def _scores_in_range(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        for name, values in v.items():
            if not values:
                raise ValueError(f"score list {name!r} is empty")
            for x in values:
                if not (SCORE_MIN <= x <= SCORE_MAX) or math.isnan(x):
                    raise ValueError(f"score {name}={x} is outside {SCORE_MIN:g}..{SCORE_MAX:g}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Verdict:
        if self.status == "ok":
            if self.overall is None and "SC" in self.scores and "PQ" in self.scores:
                self.overall = viescore_overall(self.scores["SC"], self.scores["PQ"])
            if self.overall is None and self.passed is None:
                raise ValueError("an ok verdict needs an overall score or a pass/fail")
            if self.overall is not None and not (SCORE_MIN <= self.overall <= SCORE_MAX):
                raise ValueError(f"overall={self.overall} is outside {SCORE_MIN:g}..{SCORE_MAX:g}")
        elif self.scores or self.overall is not None or self.passed is not None:
            raise ValueError(f"a '{self.status}' verdict must carry no scores: a failed judgment is not a 0")
        return self

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, status: VerdictStatus, reasoning: str, *, judge: str = "", raw: str | None = None,
               **kw: Any) -> Verdict:
        if status == "ok":
            raise ValueError("Verdict.failed needs a non-ok status")
        return cls(status=status, reasoning=reasoning, judge=judge, raw=raw, **kw)


class CritiqueRequest(_Request):
    """Critique the latest round: the source, its edited image, the original instruction and the history."""

    source: Image
    edited: Image
    instruction: str
    verdict: Verdict
    history: list[Round]
    seed: int
    mask: Image | None = None
    context: dict[str, Any] = Field(default_factory=dict)



class Critique(BaseModel):
    """A critic's answer: is the edit good enough, why, and what to do next (instruction + base image).

    ``gave_up``: the edit is not good enough, but the critic has nothing new to ask (every fix it knows was
    tried); it has no instruction, and the loop stops with ``critic_gave_up``, not ``critic_satisfied``."""

    satisfied: bool
    analysis: str = ""
    instruction: str | None = None
    base: Base = "current"
    usage: Usage = Field(default_factory=Usage)
    info: dict[str, Any] = Field(default_factory=dict)
    gave_up: bool = False

    @model_validator(mode="after")
    def _needs_instruction(self) -> Critique:
        if self.gave_up and (self.satisfied or self.instruction):
            raise ValueError("a critique that gives up is not satisfied and has no re-edit instruction")
        if not self.satisfied and not self.gave_up and not (self.instruction and self.instruction.strip()):
            raise ValueError("an unsatisfied critique needs a re-edit instruction (or gave_up)")
        return self


class ControllerEvent(BaseModel):
    """One tool call a controller made, and what came back (text, and the hashes of images it was shown)."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: str = ""
    images: list[str] = Field(default_factory=list)


class ControllerRequest(_Request):
    """Everything a controller sees: the task, the rounds so far, its own transcript and what is left."""

    source: Image
    instruction: str
    transcript: list[ControllerEvent]
    images: dict[str, Image] = Field(default_factory=dict)  # by hash: the images the transcript shows
    rounds: list[Round] = Field(default_factory=list)
    budget_left: dict[str, Any] = Field(default_factory=dict)
    seed: int
    context: dict[str, Any] = Field(default_factory=dict)


class ControllerDecision(BaseModel):
    """The next tool call: ``edit(instruction, base)``, ``judge(image)`` or ``finish(image, reason)``."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    thought: str = ""
    usage: Usage = Field(default_factory=Usage)
    info: dict[str, Any] = Field(default_factory=dict)


class CallRecord(BaseModel):
    """One tool call as the runtime saw it. ``seconds`` is wall time from asking to answer, including
    waiting for a capacity slot (``queued_s``) and retry backoff; ``service_s`` is time holding a slot."""

    kind: ToolKind
    tool: str
    seconds: float
    service_s: float = 0.0
    queued_s: float = 0.0
    attempts: int = 1
    cached: bool = False
    usage: Usage = Field(default_factory=Usage)
    error: str | None = None


class Candidate(BaseModel):
    """One of a round's best-of-N edits (``--candidates N``): its seed, image, verdict and what it cost. The
    round's own image, verdict and seed are those of its chosen candidate."""

    index: int
    seed: int | None = None
    image: str | None = None
    image_file: str | None = None
    verdict: Verdict | None = None
    seconds: dict[str, float] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    calls: list[CallRecord] = Field(default_factory=list)
    edit_info: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None

    @property
    def scored(self) -> bool:
        return self.image is not None and self.verdict is not None and self.verdict.ok


def chosen_candidate(candidates: list[Candidate]) -> Candidate | None:
    """The best scored candidate; else the first with an image (its judgment failed); else None."""
    scored = [c for c in candidates if c.scored]
    if scored:
        return max(scored, key=round_key)  # the same order as rounds: pass, overall, then lower index
    return next((c for c in candidates if c.image is not None), None)


EDIT_FIELDS = ("seed", "image", "image_file", "verdict", "seconds", "usage", "calls", "edit_info", "error")
"""What a candidate records of its edit, under the names a round records its own edit by."""


def edit_fields(edit: Round | Candidate) -> dict[str, Any]:
    return {name: getattr(edit, name) for name in EDIT_FIELDS}


def best_of(candidates: list[Candidate]) -> dict[str, Any]:
    """The fields of a round made of these best-of-N candidates: all of them, all their calls and usage, the
    longest of their timings (they ran side by side), and the kept candidate's edit; an error when none has
    an image. The loop records a round this way, and a replay at a narrower width rebuilds it the same way."""
    usage = Usage()
    for c in candidates:
        usage = usage + c.usage
    kept = chosen_candidate(candidates)
    edit = edit_fields(kept) if kept is not None else {
        **dict.fromkeys(EDIT_FIELDS), "edit_info": {},
        "error": next((c.error for c in candidates if c.error), "every candidate failed")}
    return {**edit, "candidates": candidates, "chosen": kept.index if kept is not None else None,
            "calls": [x for c in candidates for x in c.calls], "usage": usage,
            "seconds": {k: max(c.seconds.get(k, 0.0) for c in candidates) for c in candidates for k in c.seconds}}


class Round(BaseModel):
    """One edit and its judgment. Round 0 is the one-shot edit (or the given edit for ``refine``).

    ``critique`` is the critic's answer about *this* round's image; it produced the next round's instruction.
    """

    index: int
    instruction: str
    base: Literal["source", "current", "best", "given"]
    base_round: int | None = None
    editor: str | None = None
    seed: int | None = None
    image: str | None = None
    image_file: str | None = None
    verdict: Verdict | None = None
    critique: Critique | None = None
    seconds: dict[str, float] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    calls: list[CallRecord] = Field(default_factory=list)
    edit_info: dict[str, Any] = Field(default_factory=dict)
    """What the editor reported about this edit (``EditResult.info``), e.g. a local editor's batch size and
    its share of the batch's time."""
    error: str | None = None
    candidates: list[Candidate] = Field(default_factory=list)
    """Every edit of a best-of-N round (``--candidates N``, N > 1), chosen or not; empty for a single edit.
    ``calls`` and ``usage`` above include all of them."""
    chosen: int | None = None  # the index of the candidate this round kept, when it has candidates

    @property
    def scored(self) -> bool:
        return self.image is not None and self.verdict is not None and self.verdict.ok


def round_key(r: Round | Candidate) -> tuple[bool, float, int]:
    """Ordering for 'best round' (and a round's best candidate) by the loop judge: passing first, then higher
    overall, then earlier."""
    v = r.verdict
    assert v is not None
    return (v.passed is True, v.overall if v.overall is not None else -1.0, -r.index)


def best_round_index(rounds: list[Round]) -> int | None:
    """The best scored round, or None when no round has an ok verdict."""
    scored = [r for r in rounds if r.scored]
    return max(scored, key=round_key).index if scored else None


class StopReason(str, Enum):
    passed = "passed"
    threshold = "threshold"
    critic_satisfied = "critic_satisfied"
    critic_gave_up = "critic_gave_up"  # not satisfied, but the critic had nothing new to ask
    patience = "patience"
    max_rounds = "max_rounds"
    max_tool_calls = "max_tool_calls"
    max_seconds = "max_seconds"
    max_cost = "max_cost"
    judge_unsupported = "judge_unsupported"
    judge_failed = "judge_failed"
    editor_failed = "editor_failed"
    critic_failed = "critic_failed"
    controller_finished = "controller_finished"
    controller_failed = "controller_failed"


TRAJECTORY_SCHEMA_VERSION = 1


class Trajectory(BaseModel):
    """All rounds of one sample, the best round by the loop judge, and why the loop stopped."""

    schema_version: int = TRAJECTORY_SCHEMA_VERSION
    sample_id: str
    instruction: str
    source: str
    seed: int
    rounds: list[Round] = Field(default_factory=list)
    best_round: int | None = None
    stop_reason: StopReason
    usage: UsageTotals = Field(default_factory=UsageTotals)
    seconds: float = 0.0
    tools: dict[str, Any] = Field(default_factory=dict)
    controller: str | None = None  # set when an LLM controller drove the rounds instead of the fixed policy
    controller_log: list[ControllerEvent] = Field(default_factory=list)

    @property
    def best(self) -> Round | None:
        return None if self.best_round is None else self.rounds[self.best_round]

    @property
    def one_shot(self) -> Round | None:
        return self.rounds[0] if self.rounds else None

    @property
    def widest(self) -> int:
        """The most candidates any round made (0 when no round made best-of-N candidates)."""
        return max((len(r.candidates) for r in self.rounds), default=0)


CritiqueRequest.model_rebuild()
ControllerRequest.model_rebuild()
