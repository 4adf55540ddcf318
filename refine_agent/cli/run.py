"""The commands that edit: edit, refine, tools, demo and datasets make."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError
from .app import console, fail, handled, print_warning
from .options import ForceOpt, OutOpt, config_from_flags, seed_option, with_run_options


def _run(source: Path, edited: Path | None, instruction: str, out: Path | None, force: bool,
         **flags: object) -> None:
    from ..config import public_dump
    from ..images import load_image
    from ..outputs import OutputDir
    from ..session import build_tools, run_one

    with handled():
        if not instruction.strip():
            raise InputError('the instruction is empty; say what to change, e.g. "make the red circle blue"')
        cfg = config_from_flags(**flags)  # type: ignore[arg-type]
        src = load_image(source, max_pixels=cfg.max_pixels)
        given = load_image(edited, max_pixels=cfg.max_pixels) if edited is not None else None
        out_dir = out or Path("refine-agent-out") / default_folder_name(source)
        target = OutputDir.claim(out_dir, inputs=(source, edited), force=force)  # before any tool call
        tools = build_tools(cfg)

        with console.status("refining ...", spinner="dots") as status:
            def on_round(rnd: object) -> None:
                v = getattr(rnd, "verdict", None)
                score = f" overall {v.overall:.2f}" if v is not None and v.overall is not None else ""
                status.update(f"round {getattr(rnd, 'index', '?')} done{score}; refining ...")

            async def run_and_close() -> object:
                try:
                    await tools.load()
                    return await run_one(cfg, tools, src, instruction, edited=given, sample_id=source.stem,
                                         on_round=on_round)
                finally:
                    await tools.aclose()

            result = asyncio.run(run_and_close())
        written = target.write(result, src, config=public_dump(cfg))  # failed runs keep their record too
        first = result.trajectory.rounds[0]
        if first.image is None and result.failure is not None:  # nothing was made: just say why
            fail(f"{result.failure} (record: {written})", result.failure.exit_code)
        from .trajectory import print_summary

        print_summary(console, result.trajectory, str(out_dir))
        _exit_for(result)


DEMO_MAX_SAMPLES = 10_000


def default_folder_name(source: Path) -> str:
    """The source's name without its suffix; never '.' or '..', which would name a folder above ours."""
    return source.stem if source.stem.strip(".") else "image"


def _exit_for(result: object) -> None:
    """Exit 0 exactly when there is a scored best round (final.png); warn when the loop ended early."""
    traj = result.trajectory  # type: ignore[attr-defined]
    failure = result.failure  # type: ignore[attr-defined]
    reason = traj.stop_reason.value
    if traj.best_round is None:
        if failure is not None:
            fail(str(failure), failure.exit_code)
        first = traj.rounds[0].verdict if traj.rounds else None
        why = first.reasoning if first is not None else reason
        if reason == "judge_unsupported":
            fail(f"the judge could not score the edit, so there is no final.png (the edit is round_00.png): {why}",
                  1)
        fail(f"no scored result: {why}", 1)
    if failure is not None:
        print_warning(f"stopped early ({reason}): {failure}")


@with_run_options
def edit(
    source: Annotated[Path, typer.Argument(help="Image to edit (PNG, JPEG, WebP, ...).")],
    instruction: Annotated[str, typer.Argument(help='What to change, e.g. "make the red circle blue".')],
    out: OutOpt = None,
    force: ForceOpt = False,
    **flags: Any,
) -> None:
    """Edit an image agentically: one-shot edit, then judge, critique and re-edit under a budget."""
    _run(source, None, instruction, out, force, **flags)


@with_run_options
def refine(
    source: Annotated[Path, typer.Argument(help="The original image.")],
    edited: Annotated[Path, typer.Argument(help="An existing edit of it (round 0), e.g. from another system.")],
    instruction: Annotated[str, typer.Argument(help="The instruction the edit was made for.")],
    out: OutOpt = None,
    force: ForceOpt = False,
    **flags: Any,
) -> None:
    """Refine an existing edit over several rounds; the editor (or --refine-editor) does the re-edits."""
    _run(source, edited, instruction, out, force, **flags)


def tools(
    kind: Annotated[str | None, typer.Option("--kind", help="Only editor, judge or critic.")] = None,
) -> None:
    """List the available editors, judges and critics, with their options."""
    from .tool_listing import print_tools

    with handled():
        print_tools(console, kind)


def demo(
    n: Annotated[int, typer.Option("--n", min=1, max=DEMO_MAX_SAMPLES,
                                   help=f"Number of synthetic samples (at most {DEMO_MAX_SAMPLES}; the demo keeps "
                                        "every trajectory in memory, bench streams).")] = 100,
    seed: Annotated[int, seed_option("Dataset and run seed.")] = 0,
    max_rounds: Annotated[int, typer.Option(min=0, help="Re-edit rounds after the one-shot.")] = 3,
    skill: Annotated[float, typer.Option(min=0, max=1, help="sim editor skill (1 never fails).")] = 0.5,
    judge_noise: Annotated[float, typer.Option(min=0, max=5, help="Seeded noise on verify's scores.")] = 0.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Samples refined at once.")] = 16,
    baseline: Annotated[bool, typer.Option(help="Also run the resampling baseline (repeat critic).")] = True,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write every trajectory here.")] = None,
    force: ForceOpt = False,
) -> None:
    """Refine a synthetic set offline (sim editor, verify judge, rule critic) and compare with one-shot."""
    from refine_agent.benchmarks.demo import run_demo

    with handled():
        run_demo(console, n=n, seed=seed, max_rounds=max_rounds, skill=skill, noise=judge_noise,
                 concurrency=concurrency, baseline=baseline, out=out, force=force)


def datasets_make(
    kind: Annotated[str, typer.Argument(help="Dataset to make: synthetic.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of samples (at most 100000).")] = 100,
    seed: Annotated[int, seed_option("Generator seed.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for manifest.jsonl and images/.")] = Path(
        "synthetic"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing manifest.jsonl and images.")] = False,
) -> None:
    """Write a dataset: DIR/manifest.jsonl (id, source, instruction, category, ...) and its images.

    Nothing in DIR is replaced without --force, and an interrupted run leaves DIR as it was."""
    with handled():
        if kind != "synthetic":
            raise InputError(f"unknown dataset kind '{kind}'; known: synthetic")
        from refine_agent.tools.synthetic.generate import write_dataset

        from ..outputs import out_path

        with console.status(f"writing {n} synthetic samples ..."):
            manifest = write_dataset(out_path(out), n, seed, force=force)
        console.print(f"wrote {n} samples to {manifest}")
