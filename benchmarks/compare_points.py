"""Compute-matched points: what each run's strategies score for what they cost, from its ``summary.json``.

A run gives a *depth* curve (one point per ``by_budget`` row: at most b re-edit rounds, at the run's own
width) and, when it edited best-of-N (``by_candidates``), a *width* curve (one point per N, at the run's own
depth). Both rows have the same fields, so every point is read the same way: x is editor calls (or cost) per
sample, y the mean final overall with its CI. Rows ``{"same_as": k}`` repeat row k and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CALL_KINDS = ("editor", "judge", "critic")


def _numbered(rows: dict[str, dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    return sorted((int(k), r) for k, r in (rows or {}).items() if "same_as" not in r)


def _span(values: Sequence[int]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}..{hi}"


def _point(run: str, strategy: str, series: str, depth: int, width: int, row: dict[str, Any]) -> dict[str, Any]:
    calls = row.get("tool_calls_per_sample") or {}
    return {
        "run": run, "strategy": strategy, "series": series, "depth": depth, "width": width, "n": row.get("n"),
        "calls_per_sample": {k: calls.get(k, 0.0) for k in (*CALL_KINDS, *sorted(set(calls) - set(CALL_KINDS)))},
        "cost_per_sample": row.get("cost_per_sample"), "seconds_per_sample": row.get("seconds_per_sample"),
        "mean_overall": row.get("mean_overall"), "mean_overall_ci95": row.get("mean_overall_ci95"),
        "pass_rate": row.get("pass_rate"),
    }


def run_points(run: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One run's depth curve, then its width curve (when it has one). A curve of a single point that the other
    curve also has (a depth-0 run's budget 0; a deeper run's own width) is left out: it would be drawn twice."""
    width = int(summary.get("candidates") or 1)
    depth = int(summary.get("budget") or 0)
    by_depth = _numbered(summary.get("by_budget") or {})
    by_width = _numbered(summary.get("by_candidates") or {})
    points = []
    if by_depth and not (len(by_depth) == 1 and len(by_width) > 1):
        name = f"{run}: depth {_span([b for b, _ in by_depth])} (width {width})"
        points += [_point(run, "depth", name, b, width, r) for b, r in by_depth]
    if by_width and not (len(by_width) == 1 and by_depth):
        name = f"{run}: width {_span([n for n, _ in by_width])} (depth {depth})"
        points += [_point(run, "width", name, depth, n, r) for n, r in by_width]
    return points


def compute_points(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every run's points, run by run; ``series`` names the curve a point is on."""
    return [p for label, summary in runs for p in run_points(label, summary)]


def series_of(points: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The points grouped by curve, in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        out.setdefault(p["series"], []).append(p)
    return out
