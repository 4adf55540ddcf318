"""PNG plots with matplotlib (headless). Every function writes one file and returns its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from refine_agent.errors import MissingExtraError


def pyplot() -> Any:
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise MissingExtraError("matplotlib", "bench", "plotting") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MAX_TICKS = 20  # past this, matplotlib picks integer ticks: one per budget is slow and unreadable


def _series(by_budget: dict[str, dict[str, Any]], key: str) -> tuple[list[int], list[float], list[Any]]:
    # a {"same_as": k} row repeats row k: plotted once, at k, so a huge budget does not stretch the axis
    bs = sorted(int(b) for b in by_budget if "same_as" not in by_budget[b])
    ys = [by_budget[str(b)].get(key) for b in bs]
    cis = [by_budget[str(b)].get(f"{key}_ci95") for b in bs]
    keep = [i for i, y in enumerate(ys) if y is not None]
    return [bs[i] for i in keep], [ys[i] for i in keep], [cis[i] for i in keep]


BUDGET_AXIS = "re-edit budget (rounds after one-shot)"
WIDTH_AXIS = "candidates per round (best-of-n)"


def budget_curves(by_budget: dict[str, dict[str, Any]], path: Path, title: str = "", xlabel: str = BUDGET_AXIS
                  ) -> Path:
    """Score, pass rate and cost per sample against the re-edit budget (or the width: ``xlabel``), with 95% CIs
    where known."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key, label in ((axes[0], "mean_overall", "mean overall (0-10)"),
                           (axes[1], "pass_rate", "pass rate"),
                           (axes[2], "cost_per_sample", "cost per sample (USD)")):
        xs, ys, cis = _series(by_budget, key)
        if key == "cost_per_sample" and not any(ys):
            xs, ys, cis = _series(by_budget, "seconds_per_sample")
            label = "tool seconds per sample (no costs reported)"
        ax.plot(xs, ys, marker="o", color="#3465a4")
        lows = [c[0] if c else y for c, y in zip(cis, ys, strict=True)]
        highs = [c[1] if c else y for c, y in zip(cis, ys, strict=True)]
        if any(c for c in cis):
            ax.fill_between(xs, lows, highs, alpha=0.2, color="#3465a4", label="95% CI")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label)
        if len(xs) <= MAX_TICKS:
            ax.set_xticks(xs)
        else:
            ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, plt, path)


def gain_by_category(by_category: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """Mean gain (final - one-shot overall, evaluation judge) per category, with 95% bootstrap CIs."""
    plt = pyplot()
    names = [c for c, v in by_category.items() if v.get("mean_delta") is not None]
    fig, ax = plt.subplots(figsize=(6, max(2.2, 0.42 * len(names) + 1.2)))
    if not names:
        ax.text(0.5, 0.5, "no scored one-shot/final pairs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        ys = list(range(len(names)))[::-1]
        means = [by_category[c]["mean_delta"] for c in names]
        cis = [by_category[c].get("mean_delta_ci95") or [m, m] for c, m in zip(names, means, strict=True)]
        err = [[m - c[0] for c, m in zip(cis, means, strict=True)], [c[1] - m for c, m in zip(cis, means, strict=True)]]
        colors = ["#4e9a06" if m > 0 else "#cc0000" if m < 0 else "#888a85" for m in means]
        ax.barh(ys, means, xerr=err, color=colors, alpha=0.85, ecolor="#2e3436", capsize=3, height=0.6)
        ax.set_yticks(ys, [f"{c} (n={by_category[c].get('n_scored_pairs', by_category[c].get('n_samples'))})"
                           for c in names], fontsize=8)
        ax.axvline(0, color="#2e3436", lw=0.8)
        ax.set_xlabel("mean gain in overall (final - one-shot), 95% CI")
        ax.grid(axis="x", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, plt, path)


def delta_histogram(deltas: list[float], path: Path, title: str = "") -> Path:
    """Distribution of per-sample gains (final - one-shot overall); ties at 0 get their own grey bin."""
    import numpy as np

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if not deltas:
        ax.text(0.5, 0.5, "no scored one-shot/final pairs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        arr = np.asarray(deltas, dtype=float)
        width = 0.5
        lo = np.round(arr.min() / width) * width - width / 2
        hi = np.round(arr.max() / width) * width + width / 2
        edges = np.arange(lo, hi + width / 4, width)  # bins centred on multiples of 0.5, so 0 is its own bin
        counts, edges = np.histogram(arr, bins=edges)
        centres = (edges[:-1] + edges[1:]) / 2
        colors = ["#4e9a06" if c > 1e-9 else "#cc0000" if c < -1e-9 else "#888a85" for c in centres]
        ax.bar(centres, counts, width=width * 0.92, color=colors, alpha=0.85)
        mean = float(arr.mean())
        ax.axvline(mean, color="#204a87", ls="--", lw=1.2, label=f"mean {mean:+.2f}")
        ax.legend(loc="upper left", fontsize=8)
        ax.set_xlabel("final - one-shot overall (evaluation judge)")
        ax.set_ylabel("samples")
        ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
