"""``refine-agent demo``: refine a synthetic set concurrently with sim/verify/rule and compare with one-shot.

Everything is offline and seeded. The resampling baseline (the ``repeat`` critic: same instruction, new
seed) shows how much of the gain comes from critique rather than from trying again.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refine_agent.tools.synthetic.generate import SyntheticSample, iter_samples
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from refine_agent.budget import Budget
from refine_agent.loop import refine
from refine_agent.outputs import (
    FORCE_NOTE,
    OutputConflict,
    OutputDir,
    check_folder,
    out_path,
    write_json,
    write_outputs,
    written_by_mark,
    written_by_us,
)
from refine_agent.registry import create_tool
from refine_agent.runtime import Runtime
from refine_agent.terminal import styled, text_column
from refine_agent.types import JudgeRequest, Trajectory, Verdict

from .concurrency import for_each


@dataclass
class Outcome:
    sample: SyntheticSample
    trajectory: Trajectory
    exact: tuple[Verdict, Verdict] | None = None  # round 0 and best round by the exact evaluation judge


@dataclass
class DemoRun:
    label: str
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0


def _verdict(o: Outcome, final: bool, exact: bool = False) -> Verdict | None:
    if exact:
        return None if o.exact is None else o.exact[int(final)]
    r = o.trajectory.best if final else o.trajectory.one_shot
    return None if r is None else r.verdict


def _passed(o: Outcome, final: bool, exact: bool = False) -> bool:
    v = _verdict(o, final, exact)
    return bool(v is not None and v.passed)


def summarise(outcomes: list[Outcome], final: bool, exact: bool = False) -> dict[str, Any]:
    """Pass rate and mean overall of round 0 (``final=False``) or the best round, by the loop judge or,
    with ``exact``, by the exact evaluation judge."""
    trajs = [o.trajectory for o in outcomes]
    verdicts = [_verdict(o, final, exact) for o in outcomes]
    scores = [v.overall for v in verdicts if v is not None and v.overall is not None]
    judged = [v.passed for v in verdicts if v is not None and v.passed is not None]
    n = len(trajs)
    return {
        "n": n,
        "unscored": n - len(judged),  # failed judgments: excluded, never counted as fails
        "pass_rate": sum(judged) / len(judged) if judged else 0.0,
        "mean_overall": sum(scores) / len(scores) if scores else None,
        "scored": len(scores),
        "mean_rounds": (sum(len(t.rounds) - 1 for t in trajs) / n if n else 0.0) if final else 0.0,
        "calls_per_sample": (sum(t.usage.total_calls for t in trajs) / n if n else 0.0) if final else 2.0,
    }


async def run_set(samples: list[SyntheticSample], *, critic: str, max_rounds: int, skill: float, noise: float,
                  seed: int, concurrency: int, on_done: Callable[[Outcome], None] | None = None,
                  out: Path | None = None, force: bool = False) -> DemoRun:
    """Refine every sample, ``concurrency`` at a time, under one runtime (shared tool limits).

    With a noisy loop judge, round 0 and the chosen round are also scored by the exact verifier, so the
    report can show how much of the measured gain is real.
    """
    editor = create_tool("editor", "sim", {"skill": skill})
    judge = create_tool("judge", "verify", {"noise": noise})
    exact_judge = create_tool("judge", "verify") if noise > 0 else None
    critic_tool = create_tool("critic", critic)
    runtime = Runtime()
    run = DemoRun(label=critic)

    async def one(sample: SyntheticSample) -> None:
        source = sample.image()
        result = await refine(source, sample.instruction, editor=editor, judge=judge, critic=critic_tool,
                              budget=Budget(max_rounds=max_rounds), seed=seed, sample_id=sample.id,
                              runtime=runtime)
        if out is not None:
            await asyncio.to_thread(write_outputs, out / critic / sample.id, result, source, force=force)
        outcome = Outcome(sample, result.trajectory)
        best = result.trajectory.best
        if exact_judge is not None and best is not None:
            pair = [await exact_judge.judge(JudgeRequest(source=source, edited=result.image(i),
                                                         instruction=sample.instruction, seed=seed))
                    for i in (0, best.index)]
            outcome.exact = (pair[0], pair[1])
        run.outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)

    start = time.perf_counter()
    await for_each(iter(samples), one, concurrency)
    run.seconds = time.perf_counter() - start
    run.outcomes.sort(key=lambda o: o.sample.id)
    return run


def _progress(console: Console) -> Progress:
    return Progress(text_column("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    text_column("passed {task.fields[passed]}"), text_column("calls {task.fields[calls]}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def run_demo(console: Console, *, n: int = 100, seed: int = 0, max_rounds: int = 3, skill: float = 0.5,
             noise: float = 0.0, concurrency: int = 16, baseline: bool = True, out: Path | None = None,
             force: bool = False) -> dict:
    if out is not None:
        out = out_path(out)
        claim_demo_folder(out, force)
    samples = list(iter_samples(n, seed))
    runs: list[DemoRun] = []
    critics = ["rule", "repeat"] if baseline else ["rule"]
    with _progress(console) as progress:
        for critic in critics:
            label = "refining (rule critic)" if critic == "rule" else "baseline (repeat critic)"
            task = progress.add_task(label, total=n, passed=0, calls=0)

            def done(o: Outcome, task: Any = task) -> None:
                t = progress.tasks[task]
                progress.update(task, advance=1, passed=t.fields["passed"] + _passed(o, True),
                                calls=t.fields["calls"] + o.trajectory.usage.total_calls)

            runs.append(asyncio.run(run_set(samples, critic=critic, max_rounds=max_rounds, skill=skill, noise=noise,
                                            seed=seed, concurrency=concurrency, on_done=done, out=out,
                                            force=force)))
    summary = _report(console, runs, n=n, seed=seed, max_rounds=max_rounds, skill=skill, noise=noise)
    if out is not None:
        write_json(out / "summary.json", {**summary, "written_by": written_by_mark()})
        console.print(f"wrote per-sample outputs and {out / 'summary.json'}")
    return summary


def claim_demo_folder(out: Path, force: bool) -> None:
    """The demo writes OUT/rule/<id>/, OUT/repeat/<id>/ and OUT/summary.json: refuse, before any work, a folder
    that holds anything else, or a sample folder that is not ours and intact (see outputs.OutputDir)."""
    check_folder(out)
    if force or not out.is_dir():
        return
    foreign = [p.name for p in out.iterdir() if p.name not in ("rule", "repeat", "summary.json")]
    if (out / "summary.json").exists() and written_by_us(out / "summary.json") is None:
        foreign.append("summary.json")
    if foreign:
        raise OutputConflict(f"--out {out} holds {', '.join(sorted(foreign)[:3])}, which the demo did not write; "
                             f"use an empty or new folder, or {FORCE_NOTE}")
    for critic in ("rule", "repeat"):
        folder = out / critic
        if folder.exists():
            for sample in (folder.iterdir() if folder.is_dir() else [folder]):
                OutputDir.claim(sample)  # raises for a folder of someone else's, or one the user changed


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _report(console: Console, runs: list[DemoRun], **settings: Any) -> dict[str, Any]:
    main = runs[0]
    one = summarise(main.outcomes, final=False)
    summary: dict[str, Any] = {"settings": settings, "one_shot": one}
    table = Table(title=f"One-shot vs refined on {settings['n']} synthetic samples "
                        f"(sim skill {settings['skill']}, verify judge, up to {settings['max_rounds']} re-edits)")
    for col in ("", "pass", "overall", "re-edits", "calls/sample", "seconds"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("one-shot (round 0)", _pct(one["pass_rate"]), _num(one['mean_overall']), "0", "2", "")
    for run in runs:
        s = summarise(run.outcomes, final=True)
        summary[run.label] = {**s, "seconds": run.seconds}
        name = "refined (rule critic)" if run.label == "rule" else "resampling (repeat critic)"
        table.add_row(name, _pct(s["pass_rate"]), _num(s['mean_overall']), f"{s['mean_rounds']:.2f}",
                      f"{s['calls_per_sample']:.1f}", f"{run.seconds:.1f}")
    console.print(table)

    by_cat: dict[str, list[Outcome]] = defaultdict(list)
    for o in main.outcomes:
        by_cat[f"{o.sample.category} ({o.sample.difficulty})"].append(o)
    cats = Table(title="Pass rate by category (one-shot -> refined)")
    for col in ("category", "n", "one-shot", "refined"):
        cats.add_column(col, justify="left" if col == "category" else "right")
    summary["by_category"] = {}
    for name in sorted(by_cat):
        group = by_cat[name]
        a, b = summarise(group, final=False)["pass_rate"], summarise(group, final=True)["pass_rate"]
        summary["by_category"][name] = {"n": len(group), "one_shot": a, "refined": b}
        cats.add_row(name, str(len(group)), _pct(a), _pct(b))
    console.print(cats)
    refined = summary["rule"]
    console.print(styled(
        (f"Pass rate {_pct(one['pass_rate'])} -> {_pct(refined['pass_rate'])}", "bold"),
        f" ({100 * (refined['pass_rate'] - one['pass_rate']):+.0f} points); mean overall "
        f"{_num(one['mean_overall'])} -> {_num(refined['mean_overall'])}."))
    if settings["noise"] > 0:
        a, b = summarise(main.outcomes, False, exact=True), summarise(main.outcomes, True, exact=True)
        summary["exact"] = {"one_shot": a, "rule": b}
        console.print(styled(
            ("Scored by the exact verifier instead:", "bold"), f" pass rate {_pct(a['pass_rate'])} -> "
            f"{_pct(b['pass_rate'])} ({100 * (b['pass_rate'] - a['pass_rate']):+.0f} points); mean overall "
            f"{_num(a['mean_overall'])} -> {_num(b['mean_overall'])}. The difference from the line above is how far "
            "the noisy loop judge's own numbers are from the truth."))
    console.print(
        "The loop judge is also the evaluation judge in the tables above. verify is "
        + (f"given seeded noise (std {settings['noise']})." if settings["noise"] > 0
           else "exact on synthetic scenes (noise 0), so this measures the policy, not judge noise; "
           "try --judge-noise 1.5 to compare a noisy judge's numbers with the exact ones.")
        + " sim is a simulated editor: the numbers describe the simulation, not any real model.", style="dim")
    summary["eval_judge_is_loop_judge"] = True
    return summary
