"""The typer app every command registers on, and how the command line reports failure.

One clear line and an exit code for any error (a traceback only with ``--debug``); consoles that print text
verbatim. The commands themselves live in ``run`` and ``bench``; ``refine_agent.cli`` registers them on ``app``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # typer vendors click in recent releases
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

from .. import __version__
from ..errors import RefineAgentError, describe
from ..terminal import make_console, one_line, styled

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


def fail(message: str, code: int) -> None:
    print_error(message)
    raise typer.Exit(code)


@contextmanager
def handled() -> Iterator[None]:
    """One clear line and a non-zero exit for any failure; a traceback only with --debug. Whatever happens, the
    local models and managed servers the command loaded are released when it ends."""
    try:
        with _releasing_models():
            yield
    except typer.Exit:
        raise
    except RefineAgentError as exc:
        if _state["debug"]:
            raise
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except OSError as exc:  # e.g. an output path that is a file, a full disk, no permission
        if _state["debug"]:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or describe(exc)}{where}", 1)
    except Exception as exc:  # a bug, not bad input: say so, and how to see more
        if _state["debug"]:
            raise
        fail(f"internal error: {describe(exc)} (rerun with --debug for the traceback)", 1)


@contextmanager
def _releasing_models() -> Iterator[None]:
    from ..pool import model_pool

    try:
        yield
    finally:
        pool = model_pool()
        if len(pool):  # GPU memory, worker threads and vllm server processes: gone with the command
            pool.close()


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


def main() -> None:
    """The ``refine-agent`` console script (and ``python -m refine_agent``)."""
    # Library warnings (e.g. a model with no known price) as one line, like everything else we print.
    warnings.showwarning = lambda message, *a, **k: print_warning(str(message))
    app(prog_name="refine-agent")
