"""``refine-agent judge-check``: a thin wrapper over ``refine_agent.benchmarks.judge_check``, imported only when
the command runs. Exit 0 when the judge passes, 3 when it is flagged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from ..config import parse_key_values
from ..errors import InputError
from ..outputs import FilesTarget
from .app import console, fail, handled
from .bench import DatasetArg, DatasetKV, LimitOpt, MaxSamplesOpt, OutForceOpt, _progress
from .options import seed_option

FLAGGED_EXIT = 3  # not 1 (a failure) nor 2 (bad input): the check ran, and the judge did not pass it


def judge_check(
    dataset: DatasetArg,
    judge: Annotated[str, typer.Option("--judge", "-j", help="The judge to check.")],
    judge_opt: Annotated[list[str] | None, typer.Option("--judge-opt", "-J", help="Judge option key=value.")] = None,
    limit: LimitOpt = None,
    max_samples: MaxSamplesOpt = 8,
    dataset_opt: DatasetKV = None,
    seed: Annotated[int, seed_option("Seed for the noise images and the judge.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write judge_check.json to this folder.")]
    = None,
    force: OutForceOpt = False,
) -> None:
    """Does the judge reward non-edits? Judges the unchanged source, a black image, noise, a JPEG re-save and
    (with edited images) a mismatched edit; flags a judge that passes more than 5% of any of them, or scores
    one above the real edits. Exit 0: passed; 3: flagged."""
    from refine_agent.benchmarks.datasets import load_dataset
    from refine_agent.benchmarks.judge_check import FILE_NAME, judged_anything, print_judge_check
    from refine_agent.benchmarks.judge_check import judge_check as run_judge_check

    from ..atomic import write_json
    from ..registry import create_tool
    from ..runtime import Runtime

    with handled():
        if force and out is None:
            raise InputError("--force replaces files in --out; give --out DIR too, or drop --force")
        # checked before any judging: a refusal costs no work
        target = FilesTarget.choose(out, out, [FILE_NAME], force=force, what="judge check") if out else None
        tool = create_tool("judge", judge, parse_key_values(judge_opt, "--judge-opt"))
        data = load_dataset(dataset, limit=limit, seed=seed, options=parse_key_values(dataset_opt, "--dataset-opt"))
        with _progress() as bar:
            task = bar.add_task("judging", total=data.size, rounds=0, errors=0, calls=0, cost=0.0)
            rt = Runtime()
            result = asyncio.run(run_judge_check(data, tool, runtime=rt, seed=seed, max_samples=max_samples,
                                                 on_sample=lambda: bar.update(task, advance=1,
                                                                              calls=sum(rt.stats.calls.values()),
                                                                              errors=rt.stats.failures,
                                                                              cost=rt.stats.cost_usd)))
        print_judge_check(console, result)
        if target is not None:
            path = target.open() / FILE_NAME
            write_json(path, result)
            target.close()
            console.print(f"wrote {path}", soft_wrap=True)
        if not judged_anything(result):
            failed = {k: v for name, p in result["probes"].items() for k, v in p["failed"].items()}
            fail(f"no non-edit judgment succeeded, so the judge was not checked (failed: {failed or 'none'}; "
                 f"samples not loaded: {result['load_errors'] or 'none'})", 1)
        if result["flagged"]:
            raise typer.Exit(FLAGGED_EXIT)
