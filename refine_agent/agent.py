"""``refine_with_controller()`` (formerly ``agentic_refine()``): a controller (e.g. a
tool-calling LLM) drives the refinement instead of the fixed policy. Setup, round 0 (the one-shot edit,
judged, so the baseline is the same as ``refine()``'s) and the trajectory are ``loop.py``'s. Then the
controller calls tools, one per turn:

- ``edit(instruction, base)``: a new round, edited from ``source``, ``current``, ``best`` or a round number;
  the controller is shown the new image;
- ``judge(image)``: the loop judge's verdict on a round (``current``, ``best`` or a number);
- ``finish(image, reason)``: stop, and keep that round.

The budget is enforced here: an edit past ``max_rounds`` or a call past a limit is refused with a message,
and when the controller's turns, time or money run out the run finishes with the best round so far (by the
loop judge). Every round is judged before the run ends, so bench, ablate and report read controller runs
like any other; rounds the controller did not ask to judge are judged for the record.
"""

from __future__ import annotations

import time
from typing import Any

from .budget import Budget
from .cache import cache_key
from .errors import ConfigError, RefusedError, ToolCallFailed, UnsupportedInstructionError
from .images import Image, ImageBank
from .loop import LoopPolicy, RefineResult, RoundCallback, _Loop, check_instruction, setup
from .protocols import Controller, Editor, Judge, tool_identity
from .runtime import Runtime
from .types import (
    Base,
    ControllerDecision,
    ControllerEvent,
    ControllerRequest,
    Critique,
    Round,
    StopReason,
    best_round_index,
)

MAX_INVALID_TURNS = 3  # consecutive turns that call no valid tool before the run gives up on the controller


def default_turn_limit(budget: Budget) -> int:
    """Enough turns for an edit and a judgment per round, plus slack; the controller's own budget."""
    return 3 * (budget.max_rounds + 1) + 4


class _ControllerLoop(_Loop):
    """The controller-driven loop: setup, round 0 and the trajectory are the fixed-policy loop's."""

    def __init__(self, controller: Controller, **kw: Any) -> None:
        super().__init__(critic=None, policy=LoopPolicy(), **kw)
        self.controller = controller
        self.transcript: list[ControllerEvent] = []
        self.chosen: int | None = None
        self.halt: StopReason | None = None  # set by a tool call after which the run cannot go on
        self.turn_limit = self.budget.max_calls.controller or default_turn_limit(self.budget)

    def _resolve(self, ref: Any) -> int | None:
        """A round named by the controller: a number, 'current', 'best' (or 'latest'/'last')."""
        if isinstance(ref, bool):
            return None
        if isinstance(ref, (int, float)) or (isinstance(ref, str) and ref.strip().isdigit()):
            k = int(ref)
            return k if 0 <= k < len(self.rounds) and self.rounds[k].image is not None else None
        if ref in ("current", "latest", "last"):  # the newest round that has an image (an edit may have failed)
            return next((r.index for r in reversed(self.rounds) if r.image is not None), None)
        if ref == "best":
            return best_round_index(self.rounds)
        return None

    def budget_left(self) -> dict[str, Any]:
        b, used, elapsed = self.budget, self.tracker.usage, self.tracker.elapsed
        return {"edits_left": max(0, b.max_rounds - (len(self.rounds) - 1)), "turns_left": self.turn_limit - self.turns,
                "seconds_left": None if b.max_seconds is None else round(max(0.0, b.max_seconds - elapsed), 1),
                "cost_left_usd": None if b.max_cost is None else max(0.0, b.max_cost - used.cost_usd)}

    @property
    def turns(self) -> int:
        return self.tracker.usage.calls.get("controller", 0)

    @property
    def unjudged(self) -> int:
        """Rounds with an image and no verdict yet: each holds a judgment in reserve (see run_all)."""
        return sum(1 for r in self.rounds if r.image is not None and r.verdict is None)

    def out_of_budget(self) -> StopReason | None:
        b = self.budget
        if self.turns >= self.turn_limit:
            return StopReason.max_tool_calls
        if b.max_calls.total is not None and self.tracker.usage.total_calls + self.unjudged >= b.max_calls.total:
            return StopReason.max_tool_calls
        if b.max_seconds is not None and self.tracker.elapsed >= b.max_seconds:
            return StopReason.max_seconds
        if b.max_cost is not None and self.tracker.usage.cost_usd >= b.max_cost:
            return StopReason.max_cost
        return None

    def call_limit_refusal(self) -> str | None:
        """Why a new edit would break a call limit, or None if it fits. Every round is judged before the run
        ends, so an edit reserves its judgment, and the rounds not yet judged hold theirs."""
        kind = self.tracker.calls_exceeded({"editor": 1, "judge": 1 + self.unjudged})
        if kind is None:
            return None
        limit = getattr(self.budget.max_calls, kind)
        what = "tool calls in all" if kind == "total" else f"{kind} calls"
        return f"the budget allows {limit} {what} and this edit would need more"

    async def decide(self) -> ControllerDecision:
        last = self.rounds[-1]
        shown = {h for e in self.transcript for h in e.images} | {self.rounds[0].image or ""}
        images = {h: self.bank.get(h) for h in shown if h}
        seed = self._seed(len(self.transcript), "controller")
        req = ControllerRequest(source=self.source, instruction=self.instruction, transcript=list(self.transcript),
                                images=images, rounds=[r.model_copy() for r in self.rounds],
                                budget_left=self.budget_left(), seed=seed, context=self.context)
        key = cache_key(tool_identity(self.controller), "decide", images=[self.source.sha256, *sorted(images)],
                        text=self.instruction, seed=seed,
                        extra={"transcript": [e.model_dump(mode="json") for e in self.transcript],
                               "rounds": [r.model_dump(mode="json", include={"index", "image", "verdict"})
                                          for r in self.rounds], "budget": req.budget_left})
        return await self._call("controller", self.controller, lambda: self.controller.decide(req), key, last,
                                "controller")

    async def act(self, d: ControllerDecision) -> tuple[str, list[str], bool]:
        """Carry out one decision: (result text, images to show, whether the call was valid)."""
        args = d.arguments
        if d.name == "edit":
            instruction = str(args.get("instruction") or "").strip()
            if not instruction:
                return "edit needs a non-empty 'instruction'", [], False
            if len(self.rounds) - 1 >= self.budget.max_rounds:
                return (f"refused: the budget allows {self.budget.max_rounds} re-edits and all are used; "
                        "call finish"), [], True
            refused = self.call_limit_refusal()
            if refused:
                return f"refused: {refused}; call finish", [], True
            base_ref = args.get("base", "current")
            base: Base
            if base_ref == "source":
                base_image, base_round, base = self.source, None, "source"
            else:
                k = self._resolve(base_ref)
                if k is None:
                    return f"edit: unknown base {base_ref!r}; use source, current, best or a round number", [], False
                base_image, base_round = self.bank.get(self.rounds[k].image or ""), k
                base = "best" if base_ref == "best" else "current"
            self.rounds[-1].critique = Critique(satisfied=False, analysis=d.thought, instruction=instruction,
                                                base=base)
            refine_editor = self.refine_editor
            assert refine_editor is not None  # refine_with_controller() checks
            rnd = Round(index=len(self.rounds), instruction=instruction, base=base, base_round=base_round,
                        editor=refine_editor.name)
            self.rounds.append(rnd)
            earlier = self.failure
            await self.edit(rnd, refine_editor, base_image)
            await self.finish_round(rnd)
            if rnd.image is None:
                cause = self.failure.cause if self.failure is not None else None
                if not isinstance(cause, (RefusedError, UnsupportedInstructionError)):
                    self.halt = StopReason.editor_failed  # e.g. a bad key or a dead server: rephrasing cannot help
                    return f"the edit failed: {rnd.error}", [], True
                self.failure = earlier  # the round keeps the error; another wording may be served
                return f"the edit failed: {rnd.error}; you may rephrase the instruction", [], True
            return f"round {rnd.index}: edited from {base_ref}", [rnd.image], True
        if d.name == "judge":
            k = self._resolve(args.get("image", "current"))
            if k is None:
                return f"judge: unknown image {args.get('image')!r}; use current, best or a round number", [], False
            rnd = self.rounds[k]
            if rnd.verdict is None:
                await self.judge_round(rnd)
                await self.finish_round(rnd)
            v = rnd.verdict
            assert v is not None
            scores = ", ".join(f"{name}={values}" for name, values in v.scores.items())
            return (f"round {k}: status {v.status}, overall {v.overall}, passed {v.passed}; {scores}; "
                    f"{v.reasoning}"), [], True
        if d.name == "finish":
            k = self._resolve(args.get("image", "best"))
            if k is None:
                return f"finish: unknown image {args.get('image')!r}; use current, best or a round number", [], False
            self.chosen = k
            return f"finished with round {k}: {args.get('reason', '')}", [], True
        return f"unknown tool {d.name!r}; the tools are edit, judge and finish", [], False

    async def run_controller(self) -> StopReason:
        invalid = 0
        while True:
            stop = self.out_of_budget()
            if stop is not None:
                return stop
            try:
                d = await self.decide()
            except ToolCallFailed as exc:
                self.rounds[-1].error = str(exc)
                self.failure = exc
                return StopReason.controller_failed
            text, images, valid = await self.act(d)
            self.transcript.append(ControllerEvent(id=d.id, name=d.name, arguments=d.arguments, result=text,
                                                   images=images))
            if self.halt is not None:
                return self.halt
            if self.chosen is not None:
                self.rounds[self.chosen].critique = self.rounds[self.chosen].critique or Critique(
                    satisfied=True, analysis=str(d.arguments.get("reason") or d.thought))
                return StopReason.controller_finished
            invalid = 0 if valid else invalid + 1
            if invalid >= MAX_INVALID_TURNS:
                return StopReason.controller_failed

    async def run_all(self, edited: Image | None) -> StopReason:
        stop = await self.round_zero(edited)
        if stop is not None:
            return stop
        r0 = self.rounds[0]
        if r0.verdict is None or not r0.verdict.ok:
            return StopReason.judge_unsupported if r0.verdict and r0.verdict.status == "unsupported" \
                else StopReason.judge_failed
        stop = await self.run_controller()
        for rnd in self.rounds:  # every round carries a verdict, whatever the controller asked for
            if rnd.image is not None and rnd.verdict is None:
                await self.judge_round(rnd)
                await self.finish_round(rnd)
        return stop


async def refine_with_controller(
    source: Image, instruction: str, *, controller: Controller, judge: Judge, editor: Editor | None = None,
    refine_editor: Editor | None = None, edited: Image | None = None, budget: Budget | None = None, seed: int = 0,
    sample_id: str = "sample", runtime: Runtime | None = None, bank: ImageBank | None = None,
    context: dict[str, Any] | None = None, mask: Image | None = None, on_round: RoundCallback | None = None,
) -> RefineResult:
    """Refine one edit with a controller choosing every step. See the module docstring."""
    instruction = check_instruction(instruction)
    budget = budget or Budget()
    refine_editor = refine_editor or editor
    if edited is None and editor is None:
        raise ConfigError("refine_with_controller() needs an editor, or an already edited image as round 0")
    if refine_editor is None:
        raise ConfigError("refine_with_controller() needs an editor for the controller's edits")
    runtime, bank = setup(source, runtime, bank, (("editor", editor), ("editor", refine_editor), ("judge", judge),
                                                  ("controller", controller)))
    loop = _ControllerLoop(controller, source=source, instruction=instruction, editor=editor,
                           refine_editor=refine_editor, judge=judge, budget=budget, seed=seed, sample_id=sample_id,
                           runtime=runtime, bank=bank, context=dict(context or {}), on_round=on_round, mask=mask)
    start = time.perf_counter()
    stop = await loop.run_all(edited)
    best = loop.chosen if loop.chosen is not None and loop.rounds[loop.chosen].scored else best_round_index(loop.rounds)
    tools = {"editor": tool_identity(editor) if editor is not None else None,
             "refine_editor": tool_identity(refine_editor), "judge": tool_identity(judge),
             "controller": tool_identity(controller)}
    return loop.result(stop, start, tools, best_round=best, controller=controller.name,
                       controller_log=loop.transcript)


__all__ = ["refine_with_controller", "default_turn_limit", "MAX_INVALID_TURNS"]
