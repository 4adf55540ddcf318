"""What ``report.html`` shows, as plain data: each sample's outcome, and the views of samples and rounds that
``report`` collects from a run and ``report_html`` renders (neither imports the other's work).

**Outcomes.** Every sample gets one outcome at the run's final budget (``summary.json``'s ``budget``), by the
run's evaluation judge (``run.json`` ``eval_judge``: the ``evals`` table when it differs from the loop judge,
the loop's own round verdicts when it is the loop judge). *one-shot* is round 0; *final* is the round that a
run at the final budget keeps (its best round by the loop judge, as ``benchmarks.evaluate`` replays it).

- ``error``: the sample failed to load, round 0 has no image (the one-shot edit failed), the trajectory cannot
  be replayed at the final budget, or the evaluation judgment of round 0 or of the final round is missing or
  failed (any non-ok status). A failed judgment is never scored.
- otherwise the two verdicts are compared the way the loop ranks rounds, pass/fail first, then overall:
  ``improved`` if one-shot failed and final passed, or (pass/fail unchanged or unknown) the final overall is
  higher by more than ``TIE_EPS``; ``regressed`` if one-shot passed and final failed, or the final overall is
  lower by more than ``TIE_EPS``; ``unchanged`` when neither (equal pass/fail and equal overall).
  Verdicts with nothing in common to compare (one has only pass/fail, the other only a score) are ``error``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .metrics import TIE_EPS, Score, bootstrap_ci

OUTCOMES = ("improved", "regressed", "unchanged", "error")
OUTCOME_HELP = {
    "improved": "one-shot failed and final passed, or pass/fail unchanged and a higher overall score",
    "regressed": "one-shot passed and final failed, or pass/fail unchanged and a lower overall score",
    "unchanged": "same pass/fail and the same overall score (within 1e-6)",
    "error": "load error, failed one-shot edit, or a missing/failed evaluation judgment (never scored)",
}


def classify(one_shot: Score, final: Score) -> str:
    """The outcome of one sample from its one-shot and final evaluation scores (see the module docstring)."""
    if not (one_shot.ok and final.ok):
        return "error"
    if one_shot.passed is not None and final.passed is not None and one_shot.passed != final.passed:
        return "improved" if final.passed else "regressed"
    if one_shot.overall is not None and final.overall is not None:
        delta = final.overall - one_shot.overall
        return "improved" if delta > TIE_EPS else "regressed" if delta < -TIE_EPS else "unchanged"
    if one_shot.passed is not None and final.passed is not None:
        return "unchanged"
    return "error"


def improvement_rate_ci95(transitions: Iterable[tuple[bool, bool]], *, seed: int = 0) -> list[float] | None:
    """95% CI of ``improvement_rate`` (the share of fail -> pass among samples with pass/fail on both sides),
    by the same seeded bootstrap as ``metrics.bootstrap_ci``. ``transitions``: (one-shot passed, final passed)."""
    return bootstrap_ci([1.0 if (not a and b) else 0.0 for a, b in transitions], seed=seed)


def cost_per_point(cost_usd: float, total_gain: float) -> float | None:
    """Cost divided by the gain in overall score it bought; None when undefined (no cost, or no gain)."""
    if cost_usd <= 0 or total_gain <= 0:
        return None
    return cost_usd / total_gain


@dataclass
class CandidateView:
    """One edit of a best-of-N round, as its card shows it."""

    index: int
    thumb: str | None
    loop: Score
    eval: Score | None
    chosen: bool
    error: str | None = None


@dataclass
class RoundView:
    index: int
    instruction: str
    base: str
    base_round: int | None
    thumb: str | None
    loop: Score
    eval: Score | None  # None when the evaluation judge is the loop judge
    reasoning: str = ""
    critique: str = ""
    next_instruction: str | None = None
    satisfied: bool | None = None
    error: str | None = None
    is_best: bool = False
    is_final: bool = False
    has_image: bool = False
    candidates: list[CandidateView] = field(default_factory=list)
    more_candidates: int = 0  # candidates left out of the card (a wide round)


@dataclass
class SampleView:
    sample_id: str
    index: int
    category: str
    instruction: str
    outcome: str
    one_shot: Score
    final: Score
    final_round: int | None = None
    best_round: int | None = None
    stop_reason: str | None = None
    reason: str | None = None  # why the outcome is "error"
    source_thumb: str | None = None
    rounds: list[RoundView] = field(default_factory=list)


@dataclass
class ReportData:
    """Everything the page needs beyond summary.json: streamed once over the store."""

    budget: int
    counts: Counter[str] = field(default_factory=Counter)
    deltas: list[float] = field(default_factory=list)
    transitions: list[tuple[bool, bool]] = field(default_factory=list)
    samples: list[SampleView] = field(default_factory=list)
    n_total: int = 0
    max_samples: int = 200

    @property
    def truncated(self) -> bool:
        return self.n_total > len(self.samples)
