"""Rich terminal tables for summaries, ablations and judge alignment."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from refine_agent.terminal import styled

from .metrics import budget_row, one_shot_row, same_as


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def num(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def ci(c: list[float] | None, digits: int = 2) -> str:
    return "-" if not c else f"[{c[0]:.{digits}f}, {c[1]:.{digits}f}]"


def budget_label(by_budget: dict[str, dict[str, Any]], budget: int | str) -> str:
    """``budget``, and the budget it repeats when no sample went that far."""
    k = same_as(by_budget, budget)
    return f"{budget}" if k is None else f"{budget}, same as budget {k}"


def headline(s: dict[str, Any]) -> str:
    b = s["by_budget"]
    first, last = one_shot_row(s), budget_row(b, s["budget"])
    p = s.get("p_value")
    width = int(s.get("candidates") or 1)
    final = "refined" if width == 1 else f"best-of-{width}" + (", refined" if s["budget"] else "")
    return (f"one-shot -> {final} (budget {budget_label(b, s['budget'])}): mean overall "
            f"{num(first.get('mean_overall'))} -> "
            f"{num(last.get('mean_overall'))} (delta {num(s.get('mean_delta'))}, "
            f"95% CI {ci(s.get('mean_delta_ci95'))}, "
            f"Wilcoxon p {'-' if p is None else f'{p:.2g}'}); pass rate {pct(first.get('pass_rate'))} -> "
            f"{pct(last.get('pass_rate'))}; improvement rate (fail -> pass) {pct(s.get('improvement_rate'))}, "
            f"regression rate (pass -> fail) {pct(s.get('regression_rate'))}")


# Columns a narrow terminal leaves out (summary.json and ablation.json keep them all); never cut numbers short.
EXTRA_COLUMNS = ("SC", "PQ", "re-edits", "edits/sample", "calls/sample", "cost/sample")
WIDE = 130


def budget_table(by_budget: dict[str, dict[str, Any]], title: str, width: int = WIDE, key: str = "budget") -> Table:
    """A row per budget (or per width, with ``key="candidates"``): scores, and what reaching them cost."""
    t = Table(title=title, title_justify="left")
    cols = (key, "n", "mean overall", "95% CI", "SC", "PQ", "pass rate", "re-edits", "edits/sample",
            "calls/sample", "cost/sample", "fail->pass", "pass->fail")
    keep = [c for c in cols if width >= WIDE or c not in EXTRA_COLUMNS]
    for col in keep:
        t.add_column(col, justify="right", overflow="fold")
    for b in sorted(by_budget, key=int):
        r = by_budget[b]
        if "same_as" in r:  # one short row for every budget past the last that changes anything
            t.add_row(*(b if c == key else f"same as budget {r['same_as']}" if c == "mean overall" else ""
                        for c in keep))
            continue
        per_sample = r.get("tool_calls_per_sample") or {}
        cells = dict(zip(cols, (
            b, str(r["n"]), num(r["mean_overall"]), ci(r["mean_overall_ci95"]), num(r["mean_sc"]), num(r["mean_pq"]),
            pct(r["pass_rate"]), num(r["mean_rounds"]), num(per_sample.get("editor"), 1),
            num(sum(per_sample.values()), 1),
            "-" if not r.get("cost_per_sample") else f"${r['cost_per_sample']:.4f}",
            pct(r.get("improvement_rate")), pct(r.get("regression_rate"))), strict=True))
        t.add_row(*(cells[c] for c in keep))
    return t


def category_table(s: dict[str, Any]) -> Table:
    t = Table(title="By category (one-shot -> final)", title_justify="left")
    for col in ("category", "n", "overall", "pass rate", "fail->pass", "pass->fail", "mean delta"):
        t.add_column(col, justify="left" if col == "category" else "right", overflow="fold")
    for name, c in s["by_category"].items():
        t.add_row(name, str(c["n_samples"]),
                  f"{num(c['one_shot']['mean_overall'])} -> {num(c['final']['mean_overall'])}",
                  f"{pct(c['one_shot']['pass_rate'])} -> {pct(c['final']['pass_rate'])}", pct(c["improvement_rate"]),
                  pct(c["regression_rate"]), num(c["mean_delta"]))
    avg = s.get("category_averages") or {}
    for label in ("macro", "micro"):
        a = avg.get(label)
        if a:
            t.add_row(Text(f"{label} mean", style="bold"), "", f"{num(a['one_shot']['mean_overall'])} -> "
                      f"{num(a['final']['mean_overall'])}", f"{pct(a['one_shot']['pass_rate'])} -> "
                      f"{pct(a['final']['pass_rate'])}", pct(a.get("improvement_rate")), pct(a.get("regression_rate")),
                      num(a.get("mean_delta")))
    return t


def samples_label(s: dict[str, Any]) -> str:
    """"12 samples", or "incomplete: 12 of 40 samples" for a run that stopped part-way (run.json knows its size)."""
    if s.get("complete") is False:
        return f"incomplete: {s['n_samples']} of {s['n_expected']} samples"
    return f"{s['n_samples']} samples"


def width_title(depth: int) -> str:
    return (f"Best-of-n at depth {depth} (each width replayed from the run's candidates, no new tool calls)"
            if depth == 0 else "At the run's own width (a deeper run replays only at its own width)")


def print_summary(console: Console, s: dict[str, Any]) -> None:
    console.print(budget_table(s["by_budget"], f"{s.get('dataset')}: {samples_label(s)}", console.width))
    if s.get("by_candidates"):
        console.print(budget_table(s["by_candidates"], width_title(s["budget"]), console.width, key="candidates"))
    if s.get("by_category"):
        console.print(category_table(s))
        console.print(s["category_averages"]["note"], style="dim")
    console.print(headline(s), style="bold", soft_wrap=True)
    calls = ", ".join(f"{k} {v}" for k, v in s["tool_calls"].items())
    console.print(f"tool calls: {calls}; cost ${s['cost_usd']:.4f}", soft_wrap=True)
    if s["errors"]:
        console.print("errors (excluded, never scored): " + ", ".join(f"{k} {v}" for k, v in s["errors"].items()),
                      soft_wrap=True)
    for w in s.get("warnings", []):
        console.print(styled(("warning:", "yellow"), " ", w), soft_wrap=True)


def print_ablation(console: Console, a: dict[str, Any]) -> None:
    if a["by_budget"]:
        console.print(budget_table(a["by_budget"], f"Budget ablation (replayed from one run, no new tool calls): "
                                   f"{samples_label(a)}", console.width))
    if a.get("by_candidates"):
        console.print(budget_table(a["by_candidates"], f"Width ablation (best-of-n replayed from one run's "
                                   f"candidates, no new tool calls): {samples_label(a)}", console.width,
                                   key="candidates"))
    console.print(f"replayable: {a['replayable']}", style="dim", soft_wrap=True)
    if a["eval_judge_is_loop_judge"]:
        console.print(styled(("warning:", "yellow"), " the evaluation judge is the loop judge; gains are "
                                    "optimistic"), soft_wrap=True)


def print_judge_eval(console: Console, r: dict[str, Any]) -> None:
    t = Table(title=f"Judge alignment with human scores: {r['judge'].get('name')} on {r['dataset']}",
              title_justify="left")
    for col in ("n", "PLCC", "PLCC (4-param logistic)", "SRCC", "KRCC", "failed judgments"):
        t.add_column(col, justify="right")
    t.add_row(str(r["n"]), num(r["plcc"], 3), num(r["plcc_logistic"], 3), num(r["srcc"], 3), num(r["krcc"], 3),
              ", ".join(f"{k} {v}" for k, v in r["failures"].items()) or "0")
    console.print(t)
    if r.get("note"):
        console.print(styled(("note:", "yellow"), " ", r["note"]), soft_wrap=True)
