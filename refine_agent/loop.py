"""``refine()``: the agent loop. Edit, judge, then critique, re-edit and verify until a stop rule fires.

Every decision depends only on what happened before it, and every random choice is seeded from
(run seed, sample id, round, role). So a run with ``max_rounds=b`` is a prefix of the same run with a
larger budget, which is what makes budget ablations replayable from one run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .budget import Budget, BudgetTracker
from .cache import cache_key, judge_request_key, judged_images
from .errors import ConfigError, InputError, ToolCallFailed, ToolUnavailableError
from .images import Image, ImageBank, MemoryImageBank
from .protocols import Critic, Editor, Judge, Tool, check_tool, tool_identity
from .runtime import Runtime
from .types import (
    Base,
    Candidate,
    Critique,
    CritiqueRequest,
    EditRequest,
    JudgeRequest,
    Round,
    StopReason,
    ToolKind,
    Trajectory,
    Verdict,
    best_of,
    best_round_index,
    edit_fields,
)

MAX_CANDIDATES = 64


class LoopPolicy(BaseModel):
    """When to stop and what to re-edit. Budgets are separate (``Budget``)."""

    model_config = ConfigDict(extra="forbid")

    stop_on_pass: bool = Field(default=True, description="stop once the judge says the edit passes")
    threshold: float | None = Field(default=None, ge=0, le=10, description="stop once overall >= this")
    patience: int | None = Field(default=None, ge=1, description="stop after N rounds that do not beat the best")
    force_base: Base | None = Field(default=None, description="ignore the critic's base; always use this one")
    candidates: int = Field(default=1, ge=1, le=MAX_CANDIDATES, description="edits per round, made in parallel "
                            "with their own seeds and each judged; the round keeps the best (best-of-N)")


def derive_seed(run_seed: int, sample_id: str, round_index: int, role: str, candidate: int = 0) -> int:
    """A 63-bit seed from (run seed, sample, round, role, candidate), stable across processes and platforms.
    Candidate 0 has the seed of a round without candidates, so a best-of-N round extends a single edit."""
    if candidate:
        role = f"{role}#{candidate}"
    digest = hashlib.sha256(f"{run_seed}|{sample_id}|{round_index}|{role}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class RefineResult:
    trajectory: Trajectory
    bank: ImageBank
    failure: ToolCallFailed | None = None  # the tool failure that stopped the loop, if any

    def image(self, round_index: int) -> Image:
        sha = self.trajectory.rounds[round_index].image
        if sha is None:
            raise KeyError(f"round {round_index} has no image")
        return self.bank.get(sha)

    @property
    def best_image(self) -> Image | None:
        best = self.trajectory.best
        return None if best is None or best.image is None else self.bank.get(best.image)


RoundCallback = Callable[[Round], Awaitable[None] | None]
T = TypeVar("T")


class _Loop:
    """The state of one refine() call. Kept private: the public surface is the function below."""

    def __init__(self, *, source: Image, instruction: str, editor: Editor | None, refine_editor: Editor | None,
                 judge: Judge, critic: Critic | None, budget: Budget, policy: LoopPolicy, seed: int, sample_id: str,
                 runtime: Runtime, bank: ImageBank, context: dict[str, Any], on_round: RoundCallback | None,
                 mask: Image | None = None) -> None:
        self.source = source
        self.instruction = instruction
        self.editor = editor
        self.refine_editor = refine_editor
        self.judge = judge
        self.critic = critic
        self.budget = budget
        self.policy = policy
        self.seed = seed
        self.sample_id = sample_id
        self.runtime = runtime
        self.bank = bank
        self.context = context
        self.mask = mask
        self.on_round = on_round
        self.tracker = BudgetTracker(budget)
        self.rounds: list[Round] = []
        self.failure: ToolCallFailed | None = None
        self.failures: list[tuple[int, ToolCallFailed]] = []  # (candidate, failure), every one: the candidates of
        # a round may fail while the round itself succeeds
        self.cut_short: StopReason | None = None  # the limit that made a round run fewer candidates than asked

    def _seed(self, index: int, role: str, candidate: int = 0) -> int:
        return derive_seed(self.seed, self.sample_id, index, role, candidate)

    async def _call(self, kind: ToolKind, tool: Tool, invoke: Callable[[], Awaitable[T]], key: str,
                    rnd: Round, timing: str) -> T:
        try:
            out = await self.runtime.call(kind, tool, invoke, key=key, tracker=self.tracker,
                                          timed=rnd.index > 0)  # round 0 is the baseline: never cut short
        except ToolCallFailed as exc:
            if exc.record is not None:
                rnd.calls.append(exc.record)
                rnd.usage = rnd.usage + exc.record.usage  # failed attempts may have been billed
                rnd.seconds[timing] = rnd.seconds.get(timing, 0.0) + exc.record.seconds
            raise
        rnd.calls.append(out.record)
        rnd.usage = rnd.usage + out.record.usage
        rnd.seconds[timing] = rnd.seconds.get(timing, 0.0) + out.record.seconds
        return out.value

    async def edit(self, rnd: Round, editor: Editor, base_image: Image, candidate: int = 0) -> None:
        seed = self._seed(rnd.index, "edit", candidate)
        rnd.seed = seed
        req = EditRequest(image=base_image, instruction=rnd.instruction, seed=seed, source=self.source)
        key = cache_key(tool_identity(editor), "edit", images=[base_image.sha256, self.source.sha256],
                        text=rnd.instruction, seed=seed)
        try:
            result = await self._call("editor", editor, lambda: editor.edit(req), key, rnd, "edit")
        except ToolCallFailed as exc:
            rnd.error = str(exc)
            self.failed(exc, candidate)
            return
        rnd.image = self.bank.put(result.image)
        rnd.edit_info = json.loads(json.dumps(result.info, default=str))  # a record: plain JSON only

    def failed(self, exc: ToolCallFailed, candidate: int = 0) -> None:
        self.failure = exc
        self.failures.append((candidate, exc))

    async def edit_and_judge(self, rnd: Round, editor: Editor, base_image: Image) -> None:
        """Make the round's edit and judge it. With ``policy.candidates`` N > 1, as many of N candidates as the
        budget allows run in parallel, each with its own seeds, and the round keeps the best."""
        if self.policy.candidates == 1:
            await self.edit(rnd, editor, base_image)
            if rnd.image is not None:
                await self.judge_round(rnd)
            return
        width, self.cut_short = self.candidates_that_fit()
        trials = [Round(index=rnd.index, instruction=rnd.instruction, base=rnd.base) for _ in range(width)]
        before, first_new = self.failure, len(self.failures)

        async def one(k: int, trial: Round) -> None:
            await self.edit(trial, editor, base_image, k)
            if trial.image is not None:
                await self.judge_round(trial, k)

        tasks = [asyncio.ensure_future(one(k, t)) for k, t in enumerate(trials)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:  # a surprise in one (or cancellation): no candidate goes on calling tools unseen
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for name, value in best_of([Candidate(index=k, **edit_fields(t)) for k, t in enumerate(trials)]).items():
            setattr(rnd, name, value)
        chosen = rnd.candidates[rnd.chosen] if rnd.chosen is not None else None
        self.failure = self._round_failure(self.failures[first_new:], chosen, before)

    def candidates_that_fit(self) -> tuple[int, StopReason | None]:
        """How many of the policy's candidates the next round makes (at least 1: round 0 is the baseline, and a
        later round was checked to fit one), and the limit that cut it short, if any. Calls are counted; cost is
        estimated from the candidates made so far; time is checked before the round, as for a single edit."""
        asked = self.policy.candidates
        width = self.tracker.candidates_that_fit(asked)
        cut = StopReason.max_tool_calls if width < asked else None
        max_cost = self.budget.max_cost
        made = [c for r in self.rounds for c in r.candidates]
        if max_cost is not None and made:
            each = sum(c.usage.cost_usd for c in made) / len(made)
            if each > 0 and (room := int((max_cost - self.tracker.usage.cost_usd) // each)) < width:
                width, cut = room, StopReason.max_cost
        return max(1, width), cut

    @staticmethod
    def _round_failure(new: list[tuple[int, ToolCallFailed]], chosen: Candidate | None,
                       before: ToolCallFailed | None) -> ToolCallFailed | None:
        """The failure a candidate round leaves for the caller: a lost tool first (the sample is run again on
        resume), then the kept candidate's, then the first candidate's; none when the round kept a scored one."""
        new = sorted(new, key=lambda f: f[0])  # by candidate, not by which finished first
        lost = next((exc for _, exc in new if isinstance(exc.cause, ToolUnavailableError)), None)
        if lost is not None:
            return lost
        if chosen is not None and chosen.scored:
            return before
        mine = [exc for k, exc in new if chosen is not None and k == chosen.index]
        return (mine or [exc for _, exc in new] or [before])[0]

    async def judge_round(self, rnd: Round, candidate: int = 0) -> None:
        assert rnd.image is not None
        edited = self.bank.get(rnd.image)
        seed = self._seed(rnd.index, "judge", candidate)
        req = JudgeRequest(source=self.source, edited=edited, instruction=self.instruction, seed=seed,
                           mask=self.mask, context=self.context)
        key = judge_request_key(tool_identity(self.judge), req)
        try:
            verdict: Verdict = await self._call("judge", self.judge, lambda: self.judge.judge(req), key, rnd,
                                                "judge")
        except ToolCallFailed as exc:
            verdict = Verdict.failed("error", str(exc), judge=exc.tool)
            self.failed(exc, candidate)
        rnd.verdict = verdict

    async def critique(self, rnd: Round) -> Critique | None:
        assert rnd.image is not None and rnd.verdict is not None
        critic = self.critic
        assert critic is not None  # only the controller loop has none, and it never asks for a critique
        edited = self.bank.get(rnd.image)
        seed = self._seed(rnd.index, "critic")
        history = [r.model_copy() for r in self.rounds]
        req = CritiqueRequest(source=self.source, edited=edited, instruction=self.instruction,
                              verdict=rnd.verdict, history=history, seed=seed, mask=self.mask, context=self.context)
        # Everything the critic reads, minus timings: the verdicts in full, so a different judge never gets a
        # critique cached for another judge's verdicts.
        trail = [r.model_dump(mode="json", include={"index", "instruction", "base", "base_round", "image", "verdict",
                                                   "critique", "error"}) for r in self.rounds]
        key = cache_key(tool_identity(critic), "critique", images=judged_images(self.source, edited, self.mask),
                        text=self.instruction, seed=seed, extra={"history": trail, "context": self.context})
        try:
            critique = await self._call("critic", critic, lambda: critic.critique(req), key, rnd,
                                        "critique")
        except ToolCallFailed as exc:
            rnd.error = str(exc)
            self.failed(exc)
            return None
        rnd.critique = critique
        return critique

    async def finish_round(self, rnd: Round) -> None:
        if self.on_round is not None:
            maybe = self.on_round(rnd)
            if maybe is not None:
                await maybe

    def policy_stop(self) -> StopReason | None:
        """Stop rules that read the judged rounds (judge failures, pass, threshold, patience)."""
        last = self.rounds[-1]
        v = last.verdict
        if v is None or not v.ok:
            status = v.status if v is not None else "error"
            return StopReason.judge_unsupported if status == "unsupported" else StopReason.judge_failed
        if self.policy.stop_on_pass and v.passed:
            return StopReason.passed
        if self.policy.threshold is not None and v.overall is not None and v.overall >= self.policy.threshold:
            return StopReason.threshold
        if self.policy.patience is not None:
            best = best_round_index(self.rounds)
            if best is not None and last.index - best >= self.policy.patience:
                return StopReason.patience
        return None

    def base_for(self, base: Base) -> tuple[Image, int | None]:
        if base == "source":
            return self.source, None
        if base == "best":
            idx = best_round_index(self.rounds)
            idx = idx if idx is not None else self.rounds[-1].index
        else:
            idx = self.rounds[-1].index
        sha = self.rounds[idx].image
        assert sha is not None
        return self.bank.get(sha), idx

    def needs_per_round(self) -> dict[str, int]:
        return {"critic": 1, "editor": 1, "judge": 1}

    async def round_zero(self, edited: Image | None) -> StopReason | None:
        """Round 0, the same in every loop: ``editor``'s one-shot edit of the source (or ``edited``), judged.
        Returns why the run stops already, or None."""
        r0 = Round(index=0, instruction=self.instruction, base="given" if edited is not None else "source")
        self.rounds.append(r0)
        if edited is None:
            editor = self.editor
            assert editor is not None  # the loops check: without an edited image there is an editor
            r0.editor = editor.name
            await self.edit_and_judge(r0, editor, self.source)
            if r0.image is None:
                await self.finish_round(r0)
                return StopReason.editor_failed
        else:
            r0.image = self.bank.put(edited)
            await self.judge_round(r0)
        await self.finish_round(r0)
        return None

    def result(self, stop: StopReason, start: float, tools: dict[str, Any], best_round: int | None = None,
               **extra: Any) -> RefineResult:
        """The trajectory of the run so far, assembled the same way by every loop. ``best_round`` defaults to
        the best round by the loop judge."""
        trajectory = Trajectory(
            sample_id=self.sample_id,
            instruction=self.instruction,
            source=self.source.sha256,
            seed=self.seed,
            rounds=self.rounds,
            best_round=best_round_index(self.rounds) if best_round is None else best_round,
            stop_reason=stop,
            usage=self.tracker.usage,
            seconds=time.perf_counter() - start,
            tools=tools,
            **extra,
        )
        return RefineResult(trajectory=trajectory, bank=self.bank, failure=self.failure)

    async def run(self, edited: Image | None) -> StopReason:
        stop = await self.round_zero(edited)
        if stop is not None:
            return stop
        while True:
            stop = self.policy_stop()
            if stop is not None:
                return stop
            if self.cut_short is not None:  # the last round ran fewer candidates than asked: a budget is spent
                return self.cut_short
            index = len(self.rounds)
            stop = self.tracker.stop_before_round(index, self.needs_per_round())
            if stop is not None:
                return stop
            last = self.rounds[-1]
            critique = await self.critique(last)
            await self.finish_round(last)  # the round's record changed: it now carries its critique
            if critique is None:
                return StopReason.critic_failed
            if critique.gave_up:
                return StopReason.critic_gave_up
            if critique.satisfied:
                return StopReason.critic_satisfied
            base: Base = self.policy.force_base or critique.base
            base_image, base_round = self.base_for(base)
            refine_editor = self.refine_editor
            assert refine_editor is not None  # refine() checks: re-edits (max_rounds > 0) need an editor
            rnd = Round(index=index, instruction=(critique.instruction or "").strip(), base=base,
                        base_round=base_round, editor=refine_editor.name)
            self.rounds.append(rnd)
            await self.edit_and_judge(rnd, refine_editor, base_image)
            if rnd.image is None:
                await self.finish_round(rnd)
                return StopReason.editor_failed
            await self.finish_round(rnd)


async def refine(
    source: Image,
    instruction: str,
    *,
    judge: Judge,
    critic: Critic,
    editor: Editor | None = None,
    refine_editor: Editor | None = None,
    edited: Image | None = None,
    budget: Budget | None = None,
    policy: LoopPolicy | None = None,
    seed: int = 0,
    sample_id: str = "sample",
    runtime: Runtime | None = None,
    bank: ImageBank | None = None,
    context: dict[str, Any] | None = None,
    mask: Image | None = None,
    on_round: RoundCallback | None = None,
) -> RefineResult:
    """Refine one edit. Round 0 is ``editor``'s one-shot edit of ``source``, or ``edited`` when given.

    Re-edits use ``refine_editor`` (default: ``editor``). The result's best round is chosen by the loop
    judge and is never worse than round 0. Tool failures are recorded in the rounds, never raised, except
    for invalid arguments. ``context`` (e.g. a dataset's rationale) and ``mask`` (a judging mask, as in
    RefEdit-Bench) go to the judge and the critic, never to the editor. ``on_round`` is called each time a
    round's record changes: when it is judged, and again when its critique arrives.
    """
    instruction = check_instruction(instruction)
    budget = budget or Budget()
    policy = policy or LoopPolicy()
    refine_editor = refine_editor or editor
    if edited is None and editor is None:
        raise ConfigError("refine() needs an editor, or an already edited image as round 0")
    if refine_editor is None and budget.max_rounds > 0:
        raise ConfigError("refine() needs an editor for re-edits (editor= or refine_editor=), or max_rounds=0")
    if critic is None and budget.max_rounds > 0:  # typed as required, but say so plainly to untyped callers
        raise ConfigError("refine() needs a critic for re-edits (critic=), or max_rounds=0")
    runtime, bank = setup(source, runtime, bank, (("editor", editor), ("editor", refine_editor), ("judge", judge),
                                                  ("critic", critic)))
    loop = _Loop(source=source, instruction=instruction, editor=editor, refine_editor=refine_editor, judge=judge,
                 critic=critic, budget=budget, policy=policy, seed=seed, sample_id=sample_id, runtime=runtime,
                 bank=bank, context=dict(context or {}), on_round=on_round, mask=mask)
    start = time.perf_counter()
    stop = await loop.run(edited)
    tools = {"editor": tool_identity(editor) if editor is not None else None,
             "refine_editor": tool_identity(refine_editor) if refine_editor is not None else None,
             "judge": tool_identity(judge), "critic": tool_identity(critic)}
    return loop.result(stop, start, tools)


def check_instruction(instruction: str | None) -> str:
    """The instruction, stripped; an empty one is an InputError. Shared by every loop."""
    instruction = (instruction or "").strip()
    if not instruction:
        raise InputError("the instruction is empty; say what to change, e.g. \"make the red circle blue\"")
    return instruction


def setup(source: Image, runtime: Runtime | None, bank: ImageBank | None,
          tools: tuple[tuple[ToolKind, Tool | None], ...]) -> tuple[Runtime, ImageBank]:
    """What every loop does before round 0: check the tools given (``(kind, tool)``, None skipped), and make
    the runtime and image bank unless given, with the source in the bank."""
    for kind, tool in tools:
        if tool is not None:
            check_tool(kind, tool)
    runtime = runtime or Runtime()
    bank = bank if bank is not None else MemoryImageBank()
    bank.put(source)
    return runtime, bank


__all__ = ["LoopPolicy", "RefineResult", "refine", "derive_seed", "best_round_index"]
