"""Benchmark commands: bench, rejudge, export, ablate, judge-eval, report. The work lives in
``refine_agent.benchmarks``; these are thin typer wrappers that import the harness only when a command runs."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

from ..config import ToolSpec, parse_key_values
from ..errors import InputError
from ..outputs import FilesTarget, check_file, out_path, write_json
from ..terminal import text_column
from .app import console, fail, handled
from .options import config_from_flags, seed_option, with_run_options

RunDirArg = Annotated[Path, typer.Argument(help="A run directory made by 'refine-agent bench'.")]
DatasetArg = Annotated[str, typer.Argument(
    help="synthetic, jsonl:PATH, gedit:PATH, refedit:PATH, re-edit:PATH or iebench:PATH (local files only).")]
DatasetKV = Annotated[list[str] | None, typer.Option(
    "--dataset-opt", "-D", help="Dataset option key=value, e.g. -D language=cn, -D split=hard.")]
EvalJudgeOpt = Annotated[str | None, typer.Option(
    "--eval-judge", help="Evaluation judge spec (default: the loop judge; then gains are optimistic).")]
EvalJudgeKV = Annotated[list[str] | None, typer.Option(
    "--eval-judge-opt", "-V", help="Evaluation judge option key=value (repeatable).")]
MaxSamplesOpt = Annotated[int, typer.Option("--max-samples", min=1, help="Samples refined at once.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, max=sys.maxsize, help="Only the first N samples.")]
ReadOutOpt = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Write the outputs here instead of the run directory (which may be read-only).")]
SummaryForceOpt = Annotated[bool, typer.Option(
    "--force", help="Replace files refine-agent would keep: a summary.json with more samples than the records "
    "now give, and files in --out that it did not write.")]
OutForceOpt = Annotated[bool, typer.Option(
    "--force", help="Replace files of the same names in --out that refine-agent did not write.")]


def _progress() -> Progress:
    return Progress(text_column("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    text_column("rounds {task.fields[rounds]}  errors {task.fields[errors]}  calls {task.fields[calls]}"
                               "  ${task.fields[cost]:.4f}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def _open_run(run_dir: Path, *, writer: bool = False) -> tuple[Any, dict[str, Any]]:
    from ..store import open_run

    return open_run(run_dir, writer=writer)


def _summarize_and_print(store: Any, info: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    from refine_agent.benchmarks.evaluate import summarize
    from refine_agent.benchmarks.summary_file import save_summary
    from refine_agent.benchmarks.tables import print_summary

    summary = summarize(store, info)
    path = save_summary(store.dir / "summary.json", summary, force=force)
    print_summary(console, summary)
    console.print(f"wrote {path}", soft_wrap=True)
    return summary


def _ablate_and_print(store: Any, info: dict[str, Any], budgets: list[int] | None, overrides: dict[str, Any],
                      out_dir: Path, name: str = "ablation.json", widths: list[int] | None = None) -> None:
    from refine_agent.benchmarks.ablate import ablate
    from refine_agent.benchmarks.plots import WIDTH_AXIS, budget_curves
    from refine_agent.benchmarks.tables import print_ablation

    result = ablate(store, info, budgets, overrides, widths)
    path = out_dir / name
    write_json(path, result)
    print_ablation(console, result)
    title = info["dataset"]["spec"]
    plots = [budget_curves(result["by_budget"], out_dir / "plots" / f"{path.stem}.png", title=title)
             for _ in [1] if result["by_budget"]]
    if widths is not None:
        plots.append(budget_curves(result["by_candidates"], out_dir / "plots" / width_plot(path.stem, bool(budgets)),
                                   title=title, xlabel=WIDTH_AXIS))
    console.print(f"wrote {path} and {', '.join(map(str, plots))}", soft_wrap=True)


def width_plot(stem: str, with_budgets: bool) -> str:
    """The width ablation's plot: beside the budgets' when both are replayed."""
    return f"{stem}-widths.png" if with_budgets else f"{stem}.png"


async def _check_judges(runner: Any, limit: int) -> None:
    """``bench --judge-check``: check the run's judges (or reuse their check), print the tables and a verdict."""
    from refine_agent.benchmarks.bench_judge_check import check_bench_judges, print_bench_checks, unchecked

    n = unchecked(runner)
    with _progress() as bar:
        # at most limit samples per judge to check: a smaller dataset ends the bar early, so it is closed below
        task = bar.add_task("judge check", total=n * limit, visible=n > 0, rounds=0, errors=0, calls=0, cost=0.0)

        def advance() -> None:
            stats = runner.runtime.stats
            bar.update(task, advance=1, errors=stats.failures, calls=sum(stats.calls.values()), cost=stats.cost_usd)

        checks = await check_bench_judges(runner, limit, on_sample=advance)
        bar.update(task, total=bar.tasks[0].completed)
    print_bench_checks(console, checks)


def _exit_if_nothing_scored(summary: dict[str, Any]) -> None:
    """A benchmark in which no sample could be scored measured nothing: say why, and exit non-zero."""
    if not (summary.get("n_pairs") or summary.get("n_scored_pairs")):  # one-shot and final both judged
        errors = ", ".join(f"{k} {v}" for k, v in (summary.get("errors") or {}).items()) or "none recorded"
        fail(f"no sample could be scored ({summary.get('n_samples', 0)} samples; errors: {errors})", 1)


@with_run_options
def bench(
    dataset: DatasetArg,
    run_dir: Annotated[Path, typer.Option("--run-dir", "-d", help="Where the run's records and images go.")],
    eval_judge: EvalJudgeOpt = None,
    eval_judge_opt: EvalJudgeKV = None,
    limit: LimitOpt = None,
    max_samples: MaxSamplesOpt = 8,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --run-dir.")] = False,
    budgets: Annotated[str | None, typer.Option(
        help="e.g. 0,1,2,3: one run at the largest budget, then the ablation over all of them.")] = None,
    dataset_opt: DatasetKV = None,
    judge_check: Annotated[bool, typer.Option(
        "--judge-check", help="First check that the run's judges do not reward non-edits (see 'judge-check'); "
        "the result goes into judge_check.json, summary.json and the report. It informs, it never stops the run."
    )] = False,
    judge_check_limit: Annotated[int, typer.Option(
        "--judge-check-limit", min=1, max=sys.maxsize, help="Samples the judge check uses.")] = 8,
    **flags: Any,
) -> None:
    """Refine every sample of a dataset and measure the gain over one-shot, resumably."""
    from refine_agent.benchmarks.ablate import parse_budgets
    from refine_agent.benchmarks.runner import Bench, BenchSettings

    with handled():
        budget_list = parse_budgets(budgets) if budgets else None
        if budget_list is not None:
            if flags.get("max_rounds") not in (None, budget_list[-1]):
                raise InputError("--budgets sets the run's budget to its largest value; drop --max-rounds")
            flags["max_rounds"] = budget_list[-1]
        cfg = config_from_flags(**flags)
        settings = BenchSettings(
            dataset=dataset, dataset_options=parse_key_values(dataset_opt, "--dataset-opt"), limit=limit,
            max_samples=max_samples,
            eval_judge=ToolSpec(spec=eval_judge, options=parse_key_values(eval_judge_opt, "--eval-judge-opt"))
            if eval_judge else None)
        from ..store import RunStore

        run_dir = out_path(run_dir)
        if resume and not (run_dir / "run.json").is_file():
            raise InputError(f"--resume: {run_dir} holds no run to continue (no run.json); drop --resume to start "
                               "a new run there")
        with RunStore(run_dir, writer=True) as store:
            # tools are built, and local models loaded, before the progress bar: their errors stand alone
            runner = Bench(cfg, settings, store)
            data = runner.prepare(resume, load=True)
            bar = _progress()
            task = bar.add_task("samples", total=None, rounds=0, errors=0, calls=0, cost=0.0)

            def update(p: Any) -> None:
                stats = runner.runtime.stats
                bar.update(task, total=p.total, completed=p.done + p.errors + p.skipped, rounds=p.rounds,
                           errors=p.errors, calls=sum(stats.calls.values()), cost=stats.cost_usd)

            async def before_samples() -> None:
                if judge_check:  # in the run's event loop, with its loaded judges, before the bar
                    await _check_judges(runner, judge_check_limit)
                bar.start()

            runner.on_progress = update
            try:
                asyncio.run(runner.run(data, before=before_samples))
            except KeyboardInterrupt:
                fail(f"interrupted after {runner.progress.done} samples; everything finished is saved. "
                      "Continue with the same command and --resume", 130)
            finally:
                bar.stop()
            summary = _summarize_and_print(store, runner.info)
            if budget_list is not None:
                _ablate_and_print(store, runner.info, budget_list, {}, store.dir)
        _exit_if_nothing_scored(summary)


def rejudge(
    run_dir: RunDirArg,
    eval_judge: Annotated[str, typer.Option("--eval-judge", help="The new evaluation judge spec.")],
    eval_judge_opt: EvalJudgeKV = None,
    max_samples: MaxSamplesOpt = 8,
    force: SummaryForceOpt = False,
) -> None:
    """Re-score every stored image of a run with a new evaluation judge, without re-editing; then run 'report'
    again to see the new scores in report.html."""
    from refine_agent.benchmarks.rejudge import rejudge as run_rejudge
    from refine_agent.benchmarks.summary_file import check_no_shrink

    with handled():
        spec = ToolSpec(spec=eval_judge, options=parse_key_values(eval_judge_opt, "--eval-judge-opt"))
        store, run_info = _open_run(run_dir, writer=True)
        with store:
            counts = store.count_samples()
            check_no_shrink(store.dir / "summary.json", sum(counts.values()), force=force)
            with _progress() as bar:
                task = bar.add_task("rejudging", total=counts.get("done", 0), rounds=0, errors=0, calls=0, cost=0.0)

                def advance(stats: Any) -> None:
                    bar.update(task, advance=1, calls=sum(stats.calls.values()), cost=stats.cost_usd)

                info = asyncio.run(run_rejudge(store, spec, max_samples=max_samples, on_sample=advance,
                                               info=run_info))
            summary = _summarize_and_print(store, info, force=force)
        _exit_if_nothing_scored(summary)


def export(
    run_dir: RunDirArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, parquet or jsonl.")] = "csv",
    out: ReadOutOpt = None,
    force: OutForceOpt = False,
) -> None:
    """Write RUN_DIR/export/rounds.<format> (or OUT/rounds.<format>): one row per sample, round and candidate,
    for pandas."""
    from refine_agent.benchmarks.export import check_format
    from refine_agent.benchmarks.export import export as run_export


    with handled():
        check_format(fmt)
        store, info = _open_run(run_dir)
        with store:
            target = FilesTarget.choose(out, run_dir / "export", [f"rounds.{fmt}"], force=force, what="export")
            path = run_export(store, info, fmt, target.open())
            target.close()
        console.print(f"wrote {path}", soft_wrap=True)


def ablate(
    run_dir: RunDirArg,
    budgets: Annotated[str | None, typer.Option(
        help="Budgets to replay, e.g. 0,1,2,3 (at most the run's --max-rounds).")] = None,
    candidates: Annotated[str | None, typer.Option(
        "--candidates", help="Widths to replay, e.g. 1,2,4,8 (best-of-n; at most the run's --candidates; other "
        "widths than the run's only from a --max-rounds 0 run).")] = None,
    threshold: Annotated[float | None, typer.Option(min=0, max=10, help="Replay with this stop threshold.")] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Replay with this patience.")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Replay without stopping at a pass.")] = False,
    out: ReadOutOpt = None,
    force: OutForceOpt = False,
) -> None:
    """Numbers at every budget (and every width, best-of-n) from one stored run, with no new tool calls. Writes
    ablation-<what it replays>.json, so it never replaces the ablation.json of 'bench --budgets'."""
    from refine_agent.benchmarks.ablate import ablation_file, parse_budgets, parse_widths

    with handled():
        if budgets is None and candidates is None:
            raise InputError("give --budgets (e.g. 0,1,2,3), --candidates (e.g. 1,2,4,8) or both")
        overrides = {"threshold": threshold, "patience": patience, "stop_on_pass": False if keep_going else None}
        budget_list = parse_budgets(budgets) if budgets is not None else None
        widths = parse_widths(candidates) if candidates is not None else None
        name = ablation_file(budget_list, overrides, widths)
        stem = Path(name).stem
        plots = [f"plots/{stem}.png"] if budget_list else []
        plots += [f"plots/{width_plot(stem, bool(budget_list))}"] if widths else []
        store, info = _open_run(run_dir)
        with store:
            target = FilesTarget.choose(out, run_dir, [name, *plots], force=force, what="ablation")
            _ablate_and_print(store, info, budget_list, overrides, target.open(), name, widths)
            target.close()


def judge_eval(
    dataset: DatasetArg,
    judge: Annotated[str, typer.Option("--judge", "-j", help="The judge to evaluate.")],
    judge_opt: Annotated[list[str] | None, typer.Option("--judge-opt", "-J", help="Judge option key=value.")] = None,
    limit: LimitOpt = None,
    max_samples: MaxSamplesOpt = 8,
    dataset_opt: DatasetKV = None,
    seed: Annotated[int, seed_option("Seed for the judge.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the result as JSON.")] = None,
) -> None:
    """How well a judge agrees with human scores: PLCC (raw and logistic-fitted), SRCC, KRCC."""
    from refine_agent.benchmarks.datasets import load_dataset
    from refine_agent.benchmarks.judge_eval import judge_eval as run_judge_eval
    from refine_agent.benchmarks.tables import print_judge_eval

    from ..registry import create_tool
    from ..runtime import Runtime

    with handled():
        if out is not None:
            check_file(out)
        tool = create_tool("judge", judge, parse_key_values(judge_opt, "--judge-opt"))
        data = load_dataset(dataset, limit=limit, seed=seed, options=parse_key_values(dataset_opt, "--dataset-opt"))
        with _progress() as bar:
            task = bar.add_task("judging", total=data.size, rounds=0, errors=0, calls=0, cost=0.0)
            rt = Runtime()
            result = asyncio.run(run_judge_eval(data, tool, runtime=rt, seed=seed, max_samples=max_samples,
                                                on_sample=lambda: bar.update(task, advance=1,
                                                                             calls=sum(rt.stats.calls.values()),
                                                                             cost=rt.stats.cost_usd)))
        print_judge_eval(console, result)
        if out is not None:
            write_json(out, result)
            console.print(f"wrote {out}", soft_wrap=True)
        if result["n"] == 0:
            fail(f"no sample could be scored ({json.dumps(result['failures'])})", 1)


def report(
    run_dir: RunDirArg,
    max_samples: Annotated[int, typer.Option(min=0, help="Samples in the page's sample browser (0: none).")] = 200,
    out: ReadOutOpt = None,
    force: SummaryForceOpt = False,
) -> None:
    """Print the run's tables and write summary.json, report.html (self-contained) and plots/*.png to RUN_DIR
    (or --out). Run it again after 'rejudge' to see the new evaluation judge's scores."""
    from refine_agent.benchmarks.report import make_report
    from refine_agent.benchmarks.tables import print_summary

    with handled():
        made = make_report(run_dir, out, max_samples=max_samples, force=force)
        print_summary(console, made.summary)
        console.print(f"wrote {made.html} (open it in a browser), {made.html.parent / 'summary.json'} and "
                      f"{made.plots}/*.png", soft_wrap=True)
        _exit_if_nothing_scored(made.summary)
