"""Rich rendering of trajectories for the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..types import Round, Trajectory, Verdict


def fmt_scores(values: list[float] | None) -> str:
    return "-" if not values else "/".join(f"{v:.1f}" for v in values)


def fmt_verdict(v: Verdict | None) -> tuple[str, str, str, Text]:
    if v is None:
        return "-", "-", "-", Text("-")
    if not v.ok:
        return "-", "-", "-", Text(v.status, style="yellow")
    overall = "-" if v.overall is None else f"{v.overall:.2f}"
    passed = Text("pass", style="green") if v.passed else Text("fail", style="red") if v.passed is False else Text("?")
    return overall, fmt_scores(v.scores.get("SC")), fmt_scores(v.scores.get("PQ")), passed


def _note(r: Round) -> str:
    if r.error:
        return r.error
    if r.critique is not None:
        return r.critique.analysis
    if r.verdict is not None and not r.verdict.ok:
        return r.verdict.reasoning
    return ""


def round_table(traj: Trajectory) -> Table:
    table = Table(title=f"{traj.sample_id}: {traj.instruction}", title_justify="left", expand=False)
    for col, kw in (("#", {"justify": "right"}), ("base", {}), ("instruction", {"max_width": 48}),
                    ("overall", {"justify": "right"}), ("SC", {}), ("PQ", {}), ("", {}),
                    ("critique / note", {"max_width": 60})):
        table.add_column(col, **kw)  # type: ignore[arg-type]
    for r in traj.rounds:
        overall, sc, pq, passed = fmt_verdict(r.verdict)
        mark = "*" if r.index == traj.best_round else ""
        base = r.base if r.base_round is None else f"{r.base} ({r.base_round})"
        if r.candidates:  # best-of-N: which candidate the round kept, and how many passed
            passing = sum(bool(c.verdict and c.verdict.passed) for c in r.candidates)
            base += f"; kept {r.chosen} of {len(r.candidates)} ({passing} passed)"
        table.add_row(f"{mark}{r.index}", base, r.instruction, overall, sc, pq, passed, _note(r))
    return table


def print_summary(console: Console, traj: Trajectory, out_dir: str | None = None) -> None:
    console.print(round_table(traj))
    best = traj.best
    u = traj.usage
    calls = ", ".join(f"{k} {n}" for k, n in u.calls.items() if n)
    line = Text.assemble("stop: ", (traj.stop_reason.value, "bold"), f"  best round: {traj.best_round}")
    if best is not None and best.verdict is not None and best.verdict.overall is not None:
        first = traj.rounds[0].verdict
        start = f"{first.overall:.2f} -> " if first is not None and first.overall is not None else ""
        line.append(f"  overall: {start}{best.verdict.overall:.2f}")
    line.append(f"  calls: {calls or 'none'}")
    if u.cost_usd:
        line.append(f"  cost: ${u.cost_usd:.4f}")
    line.append(f"  time: {traj.seconds:.1f}s")
    console.print(line)
    if out_dir:
        final = f"{out_dir}/final.png and " if best is not None else ""
        console.print(f"wrote {final}{out_dir}/trajectory.json", soft_wrap=True)
