"""The compute-matched plot of ``compare.html`` as inline SVG: mean final overall (with 95% CI whiskers)
against a cost per sample, one curve per run and strategy. Inline SVG needs no plotting package, stays sharp
at any zoom, and its labels are text the page escapes like any other."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

from .compare_points import series_of

PALETTE = ("#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#e16f24", "#57606a")
W, H = 560, 330
LEFT, RIGHT, TOP, BOTTOM = 56, 18, 16, 46


def color(run_index: int) -> str:
    return PALETTE[run_index % len(PALETTE)]


def dash(strategy: str) -> str:
    return "6 4" if strategy == "width" else ""


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-6:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 10))
    return ticks


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"


def curves_svg(points: Sequence[dict[str, Any]], x_of: Callable[[dict[str, Any]], float | None], x_label: str,
               plot_id: str, runs: Sequence[str]) -> str:
    """One panel: every series' points at (x_of(point), mean_overall), CI whiskers, a title per point."""
    usable = [p for p in points if x_of(p) is not None and p.get("mean_overall") is not None]
    e = escape
    if not usable:
        return (f'<svg id="{e(plot_id)}" class="plot" viewBox="0 0 {W} 60" role="img"><text x="10" y="34">'
                f"no scored points to plot</text></svg>")
    xs = [float(x_of(p)) for p in usable]  # type: ignore[arg-type]
    lows = [(p.get("mean_overall_ci95") or [p["mean_overall"]] * 2)[0] for p in usable]
    highs = [(p.get("mean_overall_ci95") or [p["mean_overall"]] * 2)[1] for p in usable]
    xt = nice_ticks(min(xs), max(xs))
    yt = nice_ticks(max(0.0, math.floor(min(lows))), math.ceil(max(highs)))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def sx(v: float) -> float:
        return LEFT + (v - x0) / (x1 - x0 or 1) * (W - LEFT - RIGHT)

    def sy(v: float) -> float:
        return H - BOTTOM - (v - y0) / (y1 - y0 or 1) * (H - TOP - BOTTOM)

    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="#fff" '
             'stroke="#d1d9e0"/>']
    for t in xt:
        parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{TOP}" y2="{H - BOTTOM}" stroke="#eef1f4"/>'
                     f'<text x="{sx(t):.1f}" y="{H - BOTTOM + 15}" text-anchor="middle">{e(_fmt(t))}</text>')
    for t in yt:
        parts.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#eef1f4"/>'
                     f'<text x="{LEFT - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{e(_fmt(t))}</text>')
    parts.append(f'<text x="{(LEFT + W - RIGHT) / 2:.0f}" y="{H - 8}" text-anchor="middle">{e(x_label)}</text>'
                 f'<text transform="translate(14 {(TOP + H - BOTTOM) / 2:.0f}) rotate(-90)" text-anchor="middle">'
                 "mean final overall (0-10), 95% CI</text>")
    for name, pts in series_of(usable).items():
        run, strategy = pts[0]["run"], pts[0]["strategy"]
        c = color(runs.index(run) if run in runs else 0)
        coords = [(sx(float(x_of(p))), sy(p["mean_overall"]), p) for p in pts]  # type: ignore[arg-type]
        coords.sort(key=lambda t: t[0])
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in coords)
        group = [f'<g class="series" data-series="{e(name)}" data-strategy="{e(strategy)}">',
                 f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2" '
                 f'stroke-dasharray="{dash(strategy)}"/>']
        for x, y, p in coords:
            ci = p.get("mean_overall_ci95")
            if ci:
                group.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{sy(ci[0]):.1f}" y2="{sy(ci[1]):.1f}" '
                             f'stroke="{c}" stroke-opacity=".45" stroke-width="1.5"/>')
            tip = (f"{name}: depth {p['depth']}, width {p['width']}; x {x_of(p):.4g}; mean overall "
                   f"{p['mean_overall']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
            shape = (f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{c}">' if strategy == "width"
                     else f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{c}">')
            group.append(f'{shape}<title>{e(tip)}</title>{"</rect>" if strategy == "width" else "</circle>"}')
        parts.append("".join(group) + "</g>")
    return (f'<svg id="{e(plot_id)}" class="plot" viewBox="0 0 {W} {H}" role="img" '
            f'aria-label="{e("mean final overall against " + x_label)}" font-size="11" '
            f'font-family="system-ui, sans-serif">{"".join(parts)}</svg>')


def legend(points: Sequence[dict[str, Any]], runs: Sequence[str]) -> str:
    items = []
    for name, pts in series_of(points).items():
        c = color(runs.index(pts[0]["run"]) if pts[0]["run"] in runs else 0)
        swatch = (f'<svg width="30" height="10" aria-hidden="true"><line x1="0" x2="30" y1="5" y2="5" stroke="{c}" '
                  f'stroke-width="2" stroke-dasharray="{dash(pts[0]["strategy"])}"/></svg>')
        items.append(f"<li>{swatch} {escape(name)}</li>")
    return f'<ul class="legend">{"".join(items)}</ul>'


def editor_calls(p: dict[str, Any]) -> float | None:
    return (p.get("calls_per_sample") or {}).get("editor")


def cost_axis(points: Sequence[dict[str, Any]]) -> tuple[Callable[[dict[str, Any]], float | None], str]:
    """Cost per sample; tool seconds per sample when no run reported a cost (offline tools cost $0)."""
    if any(p.get("cost_per_sample") for p in points):
        return (lambda p: p.get("cost_per_sample")), "cost per sample (USD)"
    return (lambda p: p.get("seconds_per_sample")), "tool seconds per sample (no run reported a cost)"
