"""Budgets: limits on rounds, tool calls, wall time and cost, and the per-trajectory accounting.

Limits are checked before each refinement round. A round that has started always completes (its edit and
its judgment are both recorded), so wall time and cost can overshoot by at most one round. Within a
refinement round, the runtime starts no retry whose backoff wait would end past ``max_seconds``, so the
overshoot is one attempt per call, not the retries' worth. Round 0, the baseline, is never cut short.

A best-of-N round (``policy.candidates``) runs as many of its candidates as the call limits allow, and, in a
re-edit round, as many as the money left buys at the candidates' mean cost so far (see ``_Loop``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from .types import StopReason, ToolKind, Usage, UsageTotals


class CallLimits(BaseModel):
    """Maximum tool calls per kind in one trajectory (None: no limit). Retries of one call count once."""

    model_config = ConfigDict(extra="forbid")

    editor: int | None = Field(default=None, ge=1, description="round 0 needs one edit")
    judge: int | None = Field(default=None, ge=1, description="round 0 needs one judgment")
    critic: int | None = Field(default=None, ge=0)
    controller: int | None = Field(default=None, ge=1, description="turns of an LLM controller")
    total: int | None = Field(default=None, ge=1)


class Budget(BaseModel):
    """What one sample may spend. ``max_rounds`` counts re-edit rounds after round 0 (0 = one-shot)."""

    model_config = ConfigDict(extra="forbid")

    max_rounds: int = Field(default=3, ge=0, description="re-edit rounds after the one-shot round 0")
    max_calls: CallLimits = Field(default_factory=CallLimits)
    max_seconds: float | None = Field(default=None, gt=0, description="wall-clock limit per sample")
    max_cost: float | None = Field(default=None, ge=0, description="USD limit per sample")


class BudgetTracker:
    """Counts what a trajectory has used and says when the next round must not start."""

    def __init__(self, budget: Budget, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self._start = clock()
        self.usage = UsageTotals()

    @property
    def elapsed(self) -> float:
        return self._clock() - self._start

    def charge(self, kind: ToolKind, usage: Usage, *, cached: bool = False, attempts: int = 1,
               failed: bool = False) -> None:
        self.usage.add_call(kind, usage, cached=cached, attempts=attempts, failed=failed)

    def calls_exceeded(self, needs: dict[str, int]) -> str | None:
        """The call limit that ``needs`` more calls per kind would break ("editor", ..., "total"), or None."""
        limits = self.budget.max_calls
        for kind, n in needs.items():
            limit = getattr(limits, kind, None)
            if limit is not None and self.usage.calls.get(kind, 0) + n > limit:
                return kind
        if limits.total is not None and self.usage.total_calls + sum(needs.values()) > limits.total:
            return "total"
        return None

    def candidates_that_fit(self, asked: int) -> int:
        """How many of ``asked`` candidates (an edit and a judgment each) the call limits still allow, 0..asked."""
        for n in range(asked, 0, -1):
            if self.calls_exceeded({"editor": n, "judge": n}) is None:
                return n
        return 0

    def stop_before_round(self, index: int, needs: dict[str, int]) -> StopReason | None:
        """The reason round ``index`` (>= 1) must not start, or None if the budget allows it.

        ``needs`` is the number of calls per kind the round will make. The checks run in a fixed order so
        that the decision depends only on the past: rounds, calls, then seconds and cost.
        """
        b = self.budget
        if index > b.max_rounds:
            return StopReason.max_rounds
        if self.calls_exceeded(needs):
            return StopReason.max_tool_calls
        if b.max_seconds is not None and self.elapsed >= b.max_seconds:
            return StopReason.max_seconds
        if b.max_cost is not None and self.usage.cost_usd >= b.max_cost:
            return StopReason.max_cost
        return None
