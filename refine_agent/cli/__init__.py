"""The ``refine-agent`` command line. Commands stay thin; the work happens in the library.

``app`` holds the typer app and the error handling, ``options`` the run options, ``run`` and ``bench`` the
commands, ``trajectory`` and ``tool_listing`` what they print. The commands are plain functions, registered on
the app here, in the order ``--help`` lists them; the command modules import ``app``, never the reverse. The CLI
is the one part of ``refine_agent`` that reaches into ``refine_agent.benchmarks`` (and ``refine_agent.tools``),
lazily, inside commands.
"""

from __future__ import annotations

from . import bench, check, compare, run
from .app import app, datasets_app, main

for _command in (run.edit, run.refine, run.tools, run.demo, bench.bench, bench.rejudge, bench.export,
                 bench.ablate):
    app.command()(_command)
app.command("judge-eval")(bench.judge_eval)
app.command("judge-check")(check.judge_check)
app.command()(bench.report)
app.command()(compare.compare)
datasets_app.command("make")(run.datasets_make)

__all__ = ["app", "main"]
