"""Metrics that compare one-shot (round 0) with the final result of the same trajectory.

All scores come from the evaluation judge. A failed judgment (any non-ok status) is excluded from every
rate and mean and counted under ``errors``; it is never a 0. The key names of ``summarize`` are a
contract: users script against ``summary.json``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refine_agent.types import Verdict

BOOTSTRAP_SAMPLES = 2000
TIE_EPS = 1e-6


@dataclass(frozen=True, slots=True)
class Score:
    status: str
    overall: float | None = None
    passed: bool | None = None
    sc: float | None = None  # min of the SC list, the VIEScore semantic score
    pq: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def score_of(v: Verdict | None) -> Score:
    if v is None:
        return Score(status="missing")
    if not v.ok:
        return Score(status=v.status)
    sc, pq = v.scores.get("SC"), v.scores.get("PQ")
    return Score(status="ok", overall=v.overall, passed=v.passed, sc=min(sc) if sc else None,
                 pq=min(pq) if pq else None)


@dataclass(slots=True)  # one per sample and budget: keep them small, runs can be large
class Outcome:
    """One sample at one budget: its one-shot and final scores (by the evaluation judge) and what it cost."""

    sample_id: str
    category: str | None
    one_shot: Score
    final: Score
    final_round: int = 0
    rounds_used: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    seconds: float = 0.0


def _mean(xs: Sequence[float]) -> float | None:
    return float(np.mean(xs)) if len(xs) else None


def bootstrap_ci(xs: Sequence[float], *, seed: int = 0, n: int = BOOTSTRAP_SAMPLES) -> list[float] | None:
    """A seeded 95% percentile bootstrap interval for the mean."""
    arr = np.asarray(xs, dtype=float)
    if arr.size == 0:
        return None
    if arr.size == 1:
        return [float(arr[0]), float(arr[0])]
    rng = np.random.default_rng(seed)
    # In chunks, so memory stays O(chunk x samples) however large the run.
    chunk = max(1, min(n, 250_000 // arr.size))
    means = np.concatenate([arr[rng.integers(0, arr.size, size=(min(chunk, n - i), arr.size))].mean(axis=1)
                            for i in range(0, n, chunk)])
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def wilcoxon_p(deltas: Sequence[float]) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value; None when undefined (no non-zero differences)."""
    d = np.asarray([x for x in deltas if abs(x) > TIE_EPS], dtype=float)
    if d.size == 0:
        return None
    from scipy.stats import wilcoxon

    # The exact distribution assumes no tied |differences|; 0-10 scores tie often, and then the normal
    # approximation with its tie correction is the right one.
    ties = np.unique(np.round(np.abs(d), 9)).size < d.size
    method = "approx" if ties or d.size > 50 else "exact"
    return float(wilcoxon(d, zero_method="wilcox", alternative="two-sided", method=method).pvalue)


def compare(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """One-shot against final: transition rates, win/tie/loss, mean delta with CI, paired p-value."""
    pairs = [(o.one_shot, o.final) for o in outcomes if o.one_shot.ok and o.final.ok]
    passes = [(a.passed, b.passed) for a, b in pairs if a.passed is not None and b.passed is not None]
    n_pass = len(passes)

    def rate(x: bool, y: bool) -> float | None:
        return sum(1 for a, b in passes if a is x and b is y) / n_pass if n_pass else None

    deltas = [b.overall - a.overall for a, b in pairs if a.overall is not None and b.overall is not None]
    n_delta = len(deltas)
    return {
        "n_pairs": n_pass,
        "improvement_rate": rate(False, True),
        "maintained_rate": rate(True, True),
        "regression_rate": rate(True, False),
        "unchanged_rate": rate(False, False),
        "n_scored_pairs": n_delta,
        "win_rate": sum(d > TIE_EPS for d in deltas) / n_delta if n_delta else None,
        "tie_rate": sum(abs(d) <= TIE_EPS for d in deltas) / n_delta if n_delta else None,
        "loss_rate": sum(d < -TIE_EPS for d in deltas) / n_delta if n_delta else None,
        "mean_delta": _mean(deltas),
        "mean_delta_ci95": bootstrap_ci(deltas),
        "p_value": wilcoxon_p(deltas),
    }


def budget_stats(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Numbers for one budget: the final result's scores and what reaching it cost per sample."""
    finals = [o.final for o in outcomes if o.final.ok]
    overall = [s.overall for s in finals if s.overall is not None]
    passed = [s.passed for s in finals if s.passed is not None]
    n = len(outcomes)
    kinds = sorted({k for o in outcomes for k in o.calls} | {"editor", "judge", "critic"})
    return {
        "n": len(finals),
        "mean_overall": _mean(overall),
        "mean_overall_ci95": bootstrap_ci(overall),
        "mean_sc": _mean([s.sc for s in finals if s.sc is not None]),
        "mean_pq": _mean([s.pq for s in finals if s.pq is not None]),
        "pass_rate": sum(passed) / len(passed) if passed else None,
        "pass_rate_ci95": bootstrap_ci([float(p) for p in passed]),
        "mean_rounds": sum(o.rounds_used for o in outcomes) / n if n else None,
        "tool_calls_per_sample": {k: sum(o.calls.get(k, 0) for o in outcomes) / n if n else 0.0 for k in kinds},
        "cost_per_sample": sum(o.cost_usd for o in outcomes) / n if n else None,
        "seconds_per_sample": sum(o.seconds for o in outcomes) / n if n else None,
        **{k: v for k, v in compare(outcomes).items()},
        "errors": count_errors(outcomes, Counter()),  # this budget's failed evaluation judgments
    }


def budget_row(by_budget: dict[str, dict[str, Any]], budget: int | str) -> dict[str, Any]:
    """The numbers for ``budget`` in ``by_budget``: its own row, or row k for a budget that repeats it (see
    ``same_as``); {} for a budget the table cannot answer."""
    k = same_as(by_budget, budget)
    if k is not None:
        return by_budget.get(str(k)) or {}
    return by_budget.get(str(budget)) or {}


def one_shot_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of the one-shot edit in a summary: budget 0; in a best-of-N run, width 1 (a single edit) when
    the run can answer it, else the one-shot side of the pooled (micro) averages."""
    if int(summary.get("candidates") or 1) == 1:
        return budget_row(summary["by_budget"], 0)
    micro = (summary.get("category_averages") or {}).get("micro") or {}
    return (summary.get("by_candidates") or {}).get("1") or micro.get("one_shot") or {}


def same_as(by_budget: dict[str, dict[str, Any]], budget: int | str) -> int | None:
    """The budget k whose numbers ``budget`` repeats, or None when it has its own row (or none at all).

    Past k, the last budget with a row of numbers, no sample changes: every budget listed past it is a
    ``{"same_as": k}`` row, and a budget not listed but between k and the largest listed one repeats k too.
    Below k, or past every budget listed, a budget without a row has no answer."""
    row = by_budget.get(str(budget))
    if row is not None:
        return int(row["same_as"]) if "same_as" in row else None
    numbered = [int(b) for b, r in by_budget.items() if "same_as" not in r]
    if not numbered:
        return None
    k = max(numbered)
    top = max(int(b) for b in by_budget)
    return k if k < int(budget) <= top else None


def by_category(outcomes: Sequence[Outcome], order: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[o.category or "uncategorized"].append(o)
    names = [c for c in (order or []) if c in groups] + sorted(c for c in groups if c not in (order or []))
    out = {}
    for name in names:
        g = groups[name]
        out[name] = {"n_samples": len(g), "one_shot": _side_stats(g, final=False),
                     "final": _side_stats(g, final=True), **compare(g)}
    return out


def _side_stats(outcomes: Sequence[Outcome], final: bool) -> dict[str, float | None]:
    scores = [o.final if final else o.one_shot for o in outcomes]
    ok = [s for s in scores if s.ok]
    passed = [s.passed for s in ok if s.passed is not None]
    return {"mean_overall": _mean([s.overall for s in ok if s.overall is not None]),
            "mean_sc": _mean([s.sc for s in ok if s.sc is not None]),
            "mean_pq": _mean([s.pq for s in ok if s.pq is not None]),
            "pass_rate": sum(passed) / len(passed) if passed else None}


MACRO_KEYS = ("improvement_rate", "maintained_rate", "regression_rate", "unchanged_rate", "win_rate", "tie_rate",
              "loss_rate", "mean_delta")


def category_averages(cats: dict[str, dict[str, Any]], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Macro: the mean of the category means (GEdit-Bench's official average). Micro: pooled over samples."""
    def macro_of(path: tuple[str, ...]) -> float | None:
        vals = []
        for c in cats.values():
            v: Any = c
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            if v is not None:
                vals.append(v)
        return _mean(vals)

    macro: dict[str, Any] = {k: macro_of((k,)) for k in MACRO_KEYS}
    for side in ("one_shot", "final"):
        macro[side] = {k: macro_of((side, k)) for k in ("mean_overall", "mean_sc", "mean_pq", "pass_rate")}
    micro = {"one_shot": _side_stats(outcomes, False), "final": _side_stats(outcomes, True),
             **{k: v for k, v in compare(outcomes).items() if k in MACRO_KEYS}}
    return {"macro": macro, "micro": micro,
            "note": "macro = mean of the per-category means (GEdit-Bench's official average); "
                    "micro = every valid sample weighted equally"}


def count_errors(outcomes: Iterable[Outcome], sample_errors: Counter[str]) -> dict[str, int]:
    """Failed samples by kind, plus failed evaluation judgments of round 0 and of the final round."""
    errors: Counter[str] = Counter(sample_errors)
    for o in outcomes:
        if not o.one_shot.ok:
            errors[f"eval_one_shot_{o.one_shot.status}"] += 1
        if not o.final.ok and o.final_round != 0:  # the same judgment is not counted twice
            errors[f"eval_final_{o.final.status}"] += 1
    return dict(sorted(errors.items()))


def finite(x: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [finite(v) for v in x]
    return x
