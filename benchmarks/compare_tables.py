"""``refine-agent compare`` in the terminal: the runs, each run against the baseline (overall and by category),
and the compute-matched points, from compare.json's numbers."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from refine_agent.terminal import styled

from .compare import show_identity
from .tables import ci, num, pct


def p_value(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"


def money(x: float | None) -> str:
    return "-" if x is None else f"${x:.4f}"


def wtl(s: dict[str, Any]) -> str:
    return f"{pct(s.get('win_rate'))} / {pct(s.get('tie_rate'))} / {pct(s.get('loss_rate'))}"


def runs_table(result: dict[str, Any]) -> Table:
    t = Table(title=f"Runs on {result['dataset']['spec']} ({result['n_samples']} samples in any run; "
                    f"{result['baseline']} is the baseline)", title_justify="left")
    for col in ("run", "dir", "depth", "width", "evaluation judge", "loop judge", "samples", "scored", "missing",
                "mean overall", "95% CI", "pass rate"):
        t.add_column(col, justify="left" if col in ("run", "dir", "evaluation judge", "loop judge") else "right",
                     overflow="fold")
    for r in result["runs"]:
        t.add_row(r["label"], r["dir"], str(r["depth"]), str(r["width"]), show_identity(r["eval_judge"]),
                  show_identity(r["loop_judge"]), str(r["n_records"]), str(r["n_scored"]), str(r["n_missing"]),
                  num(r["mean_overall"]), ci(r["mean_overall_ci95"]), pct(r["pass_rate"]))
    return t


def pair_table(pair: dict[str, Any]) -> Table:
    a, b = pair["a"], pair["b"]
    t = Table(title=f"{b} vs {a}: delta = {b}'s final overall - {a}'s, paired over samples scored in both",
              title_justify="left")
    for col in ("category", "n", f"{a} overall", f"{b} overall", "mean delta", "95% CI", "Wilcoxon p",
                f"{b} wins / tie / {a} wins", f"{a} pass", f"{b} pass"):
        t.add_column(col, justify="left" if col == "category" else "right", overflow="fold")

    def row(name: str, s: dict[str, Any]) -> None:
        t.add_row(name, str(s.get("n_scored_pairs", 0)), num((s.get("a") or {}).get("mean_overall")),
                  num((s.get("b") or {}).get("mean_overall")), num(s.get("mean_delta")), ci(s.get("mean_delta_ci95")),
                  p_value(s.get("p_value")), wtl(s), pct((s.get("a") or {}).get("pass_rate")),
                  pct((s.get("b") or {}).get("pass_rate")))

    row("all", pair["overall"])
    for name, s in pair["by_category"].items():
        row(name, s)
    return t


def points_table(points: list[dict[str, Any]]) -> Table:
    t = Table(title="Compute-matched points: read off which strategy scores more at equal editor calls",
              title_justify="left")
    for col in ("run", "strategy", "depth", "width", "editor/sample", "judge/sample", "critic/sample", "cost/sample",
                "s/sample", "mean overall", "95% CI", "pass rate"):
        t.add_column(col, justify="left" if col in ("run", "strategy") else "right", overflow="fold")
    for p in points:
        calls = p["calls_per_sample"]
        t.add_row(p["run"], p["strategy"], str(p["depth"]), str(p["width"]), num(calls.get("editor")),
                  num(calls.get("judge")), num(calls.get("critic")), money(p["cost_per_sample"]),
                  num(p["seconds_per_sample"], 3), num(p["mean_overall"]), ci(p["mean_overall_ci95"]),
                  pct(p["pass_rate"]))
    return t


def print_compare(console: Console, result: dict[str, Any]) -> None:
    console.print(runs_table(result))
    for pair in result["pairs"]:
        console.print(pair_table(pair))
    console.print(points_table(result["points"]))
    for w in result["warnings"]:
        console.print(styled(("warning:", "yellow"), " ", w), soft_wrap=True)
