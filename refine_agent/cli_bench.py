"""Benchmark commands: bench, rejudge, export, ablate, judge-eval, report. They live in ``benchmarks/``;
these are thin typer wrappers, importing the harness only when a command runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .cli import _fail, app, console, handled
from .cli_options import config_from_flags, with_run_options
from .config import ToolSpec, parse_key_values
from .outputs import write_json

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


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("rounds {task.fields[rounds]}  errors {task.fields[errors]}  calls {task.fields[calls]}"
                               "  ${task.fields[cost]:.4f}"),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)


def _store(run_dir: Path, *, must_exist: bool, writer: bool = False) -> Any:
    from .store import RunStore

    if must_exist and not (run_dir / "run.json").exists():
        raise _input_error(f"{run_dir} is not a run directory (no run.json); make one with 'refine-agent bench'")
    return RunStore(run_dir, writer=writer)


def _input_error(msg: str) -> Exception:
    from .errors import InputError

    return InputError(msg)


def _summarize_and_print(store: Any, info: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.evaluate import summarize
    from benchmarks.tables import print_summary

    summary = summarize(store, info)
    write_json(store.dir / "summary.json", summary)
    print_summary(console, summary)
    console.print(f"wrote {store.dir / 'summary.json'}", soft_wrap=True)
    return summary


def _ablate_and_print(store: Any, info: dict[str, Any], budgets: list[int], overrides: dict[str, Any]) -> None:
    from benchmarks.ablate import ablate
    from benchmarks.plots import budget_curves
    from benchmarks.tables import print_ablation

    result = ablate(store, info, budgets, overrides)
    write_json(store.dir / "ablation.json", result)
    print_ablation(console, result)
    plot = budget_curves(result["by_budget"], store.dir / "plots" / "ablation.png", title=info["dataset"]["spec"])
    console.print(f"wrote {store.dir / 'ablation.json'} and {plot}", soft_wrap=True)


@app.command()
@with_run_options
def bench(
    dataset: DatasetArg,
    run_dir: Annotated[Path, typer.Option("--run-dir", "-d", help="Where the run's records and images go.")],
    eval_judge: EvalJudgeOpt = None,
    eval_judge_opt: EvalJudgeKV = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N samples.")] = None,
    max_samples: MaxSamplesOpt = 8,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --run-dir.")] = False,
    budgets: Annotated[str | None, typer.Option(
        help="e.g. 0,1,2,3: one run at the largest budget, then the ablation over all of them.")] = None,
    dataset_opt: DatasetKV = None,
    **flags: Any,
) -> None:
    """Refine every sample of a dataset and measure the gain over one-shot, resumably."""
    from benchmarks.ablate import parse_budgets
    from benchmarks.runner import Bench, BenchSettings

    with handled():
        budget_list = parse_budgets(budgets) if budgets else None
        if budget_list is not None:
            if flags.get("max_rounds") not in (None, budget_list[-1]):
                raise _input_error("--budgets sets the run's budget to its largest value; drop --max-rounds")
            flags["max_rounds"] = budget_list[-1]
        cfg = config_from_flags(**flags)
        settings = BenchSettings(
            dataset=dataset, dataset_options=parse_key_values(dataset_opt, "--dataset-opt"), limit=limit,
            max_samples=max_samples,
            eval_judge=ToolSpec(spec=eval_judge, options=parse_key_values(eval_judge_opt, "--eval-judge-opt"))
            if eval_judge else None)
        with _store(run_dir, must_exist=False, writer=True) as store:
            with _progress() as bar:
                task = bar.add_task("samples", total=None, rounds=0, errors=0, calls=0, cost=0.0)
                runner: Bench | None = None

                def update(p: Any) -> None:
                    stats = runner.runtime.stats if runner is not None else None
                    bar.update(task, total=p.total, completed=p.done + p.errors + p.skipped, rounds=p.rounds,
                               errors=p.errors, calls=sum(stats.calls.values()) if stats else 0,
                               cost=stats.cost_usd if stats else 0.0)

                runner = Bench(cfg, settings, store, on_progress=update)
                data = runner.prepare(resume)
                try:
                    asyncio.run(runner.run(data))
                except KeyboardInterrupt:
                    _fail(f"interrupted after {runner.progress.done} samples; everything finished is saved. "
                          "Continue with the same command and --resume", 130)
            _summarize_and_print(store, runner.info)
            if budget_list is not None:
                _ablate_and_print(store, runner.info, budget_list, {})


@app.command()
def rejudge(
    run_dir: RunDirArg,
    eval_judge: Annotated[str, typer.Option("--eval-judge", help="The new evaluation judge spec.")],
    eval_judge_opt: EvalJudgeKV = None,
    max_samples: MaxSamplesOpt = 8,
) -> None:
    """Re-score every stored image of a run with a new evaluation judge, without re-editing."""
    from benchmarks.rejudge import rejudge as run_rejudge

    with handled():
        spec = ToolSpec(spec=eval_judge, options=parse_key_values(eval_judge_opt, "--eval-judge-opt"))
        with _store(run_dir, must_exist=True, writer=True) as store:
            with _progress() as bar:
                task = bar.add_task("rejudging", total=store.count_samples().get("done", 0), rounds=0, errors=0,
                                    calls=0, cost=0.0)
                info = asyncio.run(run_rejudge(store, spec, max_samples=max_samples,
                                               on_sample=lambda: bar.advance(task)))
            _summarize_and_print(store, info)


@app.command()
def export(
    run_dir: RunDirArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, parquet or jsonl.")] = "csv",
) -> None:
    """Write RUN_DIR/export/rounds.<format>: one row per sample and round, for pandas."""
    from benchmarks.export import export as run_export

    with handled():
        with _store(run_dir, must_exist=True) as store:
            path = run_export(store, store.read_run_info(), fmt)
        console.print(f"wrote {path}", soft_wrap=True)


@app.command()
def ablate(
    run_dir: RunDirArg,
    budgets: Annotated[str, typer.Option(help="Budgets to replay, e.g. 0,1,2,3 (at most the run's --max-rounds).")],
    threshold: Annotated[float | None, typer.Option(min=0, max=10, help="Replay with this stop threshold.")] = None,
    patience: Annotated[int | None, typer.Option(min=1, help="Replay with this patience.")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Replay without stopping at a pass.")] = False,
) -> None:
    """Numbers at every budget from one stored run, with no new tool calls."""
    from benchmarks.ablate import parse_budgets

    with handled():
        overrides = {"threshold": threshold, "patience": patience, "stop_on_pass": False if keep_going else None}
        with _store(run_dir, must_exist=True) as store:
            _ablate_and_print(store, store.read_run_info(), parse_budgets(budgets), overrides)


@app.command("judge-eval")
def judge_eval(
    dataset: DatasetArg,
    judge: Annotated[str, typer.Option("--judge", "-j", help="The judge to evaluate.")],
    judge_opt: Annotated[list[str] | None, typer.Option("--judge-opt", "-J", help="Judge option key=value.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N samples.")] = None,
    max_samples: MaxSamplesOpt = 8,
    dataset_opt: DatasetKV = None,
    seed: Annotated[int, typer.Option(help="Seed for the judge.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the result as JSON.")] = None,
) -> None:
    """How well a judge agrees with human scores: PLCC (raw and logistic-fitted), SRCC, KRCC."""
    from benchmarks.datasets import load_dataset
    from benchmarks.judge_eval import judge_eval as run_judge_eval
    from benchmarks.tables import print_judge_eval

    from .registry import create_tool
    from .runtime import Runtime

    with handled():
        tool = create_tool("judge", judge, parse_key_values(judge_opt, "--judge-opt"))
        data = load_dataset(dataset, limit=limit, seed=seed, options=parse_key_values(dataset_opt, "--dataset-opt"))
        with _progress() as bar:
            task = bar.add_task("judging", total=data.size, rounds=0, errors=0, calls=0, cost=0.0)
            result = asyncio.run(run_judge_eval(data, tool, runtime=Runtime(), seed=seed, max_samples=max_samples,
                                                on_sample=lambda: bar.advance(task)))
        print_judge_eval(console, result)
        if out is not None:
            write_json(out, result)
            console.print(f"wrote {out}", soft_wrap=True)
        if result["n"] == 0:
            _fail(f"no sample could be scored ({json.dumps(result['failures'])})", 1)


@app.command()
def report(
    run_dir: RunDirArg,
    max_samples: Annotated[int, typer.Option(min=0, help="Samples in the page's sample browser (0: none).")] = 200,
) -> None:
    """Print the run's tables and write RUN_DIR/report.html (self-contained) and RUN_DIR/plots/*.png."""
    from benchmarks.report import report_summary, write_report
    from benchmarks.tables import print_summary

    with handled():
        _store(run_dir, must_exist=True).close()
        print_summary(console, report_summary(run_dir))
        path = write_report(run_dir, max_samples=max_samples)
        console.print(f"wrote {path} (open it in a browser) and {run_dir / 'plots'}/*.png", soft_wrap=True)
