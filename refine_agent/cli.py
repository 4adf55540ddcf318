"""The ``refine-agent`` command line. Commands stay thin; the work happens in the library."""

from __future__ import annotations

import asyncio
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer vendors click in recent releases
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

from . import __version__
from .cli_options import ForceOpt, OutOpt, config_from_flags, seed_option, with_run_options
from .errors import InputError, RefineAgentError, describe
from .terminal import make_console, one_line, styled

Abort = typer.Abort

class _OneLineErrors(TyperGroup):
    """Usage errors (a bad flag value, a missing argument) as one line, like every other error."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # help was asked for, in effect
                sys.exit(0 if exc.ctx is None else exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            print_error(f"{exc.format_message()}{hint}")
            sys.exit(exc.exit_code)
        except Abort:
            print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="refine-agent",
    cls=_OneLineErrors,
    help="Agentic image editing: edit, judge, critique and re-edit until the result is good or the budget "
         "runs out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)
datasets_app = typer.Typer(help="Make datasets for benchmarks and demos.", no_args_is_help=True, cls=_OneLineErrors)
app.add_typer(datasets_app, name="datasets")

console = make_console()
err_console = make_console(stderr=True)
_state = {"debug": False}


def print_error(message: str) -> None:
    err_console.print(styled(("error:", "bold red"), " ", one_line(message)), highlight=False, soft_wrap=True)


def print_warning(message: str, label: str = "warning:") -> None:
    err_console.print(styled((label, "yellow"), " ", one_line(message)), highlight=False, soft_wrap=True)


def _fail(message: str, code: int) -> None:
    print_error(message)
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """One clear line and a non-zero exit for any failure; a traceback only with --debug."""
    try:
        yield
    except typer.Exit:
        raise
    except RefineAgentError as exc:
        if _state["debug"]:
            raise
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except OSError as exc:  # e.g. an output path that is a file, a full disk, no permission
        if _state["debug"]:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        _fail(f"{exc.strerror or describe(exc)}{where}", 1)
    except Exception as exc:  # a bug, not bad input: say so, and how to see more
        if _state["debug"]:
            raise
        _fail(f"internal error: {describe(exc)} (rerun with --debug for the traceback)", 1)


def _version(value: bool) -> None:
    if value:
        console.print(f"refine-agent {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", envvar="REFINE_AGENT_DEBUG",
                                        help="Show full tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    _state["debug"] = debug


def _run(source: Path, edited: Path | None, instruction: str, out: Path | None, force: bool,
         **flags: object) -> None:
    from .config import public_dump
    from .images import load_image
    from .outputs import OutputDir
    from .session import build_tools, run_one

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
                    return await run_one(cfg, tools, src, instruction, edited=given, sample_id=source.stem,
                                         on_round=on_round)
                finally:
                    await tools.aclose()

            result = asyncio.run(run_and_close())
        written = target.write(result, src, config=public_dump(cfg))  # failed runs keep their record too
        first = result.trajectory.rounds[0]
        if first.image is None and result.failure is not None:  # nothing was made: just say why
            _fail(f"{result.failure} (record: {written})", result.failure.exit_code)
        from .console import print_summary

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
            _fail(str(failure), failure.exit_code)
        first = traj.rounds[0].verdict if traj.rounds else None
        why = first.reasoning if first is not None else reason
        if reason == "judge_unsupported":
            _fail(f"the judge could not score the edit, so there is no final.png (the edit is round_00.png): {why}",
                  1)
        _fail(f"no scored result: {why}", 1)
    if failure is not None:
        print_warning(f"stopped early ({reason}): {failure}")


@app.command()
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


@app.command()
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


@app.command()
def tools(
    kind: Annotated[str | None, typer.Option("--kind", help="Only editor, judge or critic.")] = None,
) -> None:
    """List the available editors, judges and critics, with their options."""
    from .tool_listing import print_tools

    with handled():
        print_tools(console, kind)


@app.command()
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


@datasets_app.command("make")
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

        from .outputs import out_path

        with console.status(f"writing {n} synthetic samples ..."):
            manifest = write_dataset(out_path(out), n, seed, force=force)
        console.print(f"wrote {n} samples to {manifest}")


from . import cli_bench  # noqa: E402,F401  (registers bench, rejudge, export, ablate, judge-eval)


def main() -> None:
    # Library warnings (e.g. a model with no known price) as one line, like everything else we print.
    warnings.showwarning = lambda message, *a, **k: print_warning(str(message))
    app(prog_name="refine-agent")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

