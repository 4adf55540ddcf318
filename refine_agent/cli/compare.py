"""``refine-agent compare``: a thin wrapper over ``refine_agent.benchmarks.compare``, imported only when the
command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import console, handled


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="Two or more run directories made by 'refine-agent bench' on one dataset; the first is the baseline.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where compare.json and compare.html go.")]
    = Path("compare"),
    max_samples: Annotated[int, typer.Option(min=0, help="Samples in the page's side-by-side browser (0: none).")]
    = 200,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace files of the same names in --out that refine-agent did not write.")] = False,
) -> None:
    """Compare runs side by side: each run against the first (paired per-sample deltas with CIs, p-values and
    win/tie/loss, overall and by category), the runs' score against editor calls and cost, and their images.
    Writes OUT/compare.json and OUT/compare.html (self-contained)."""
    from refine_agent.benchmarks.compare_make import make_compare
    from refine_agent.benchmarks.compare_tables import print_compare

    with handled():
        made = make_compare(run_dirs, out, max_samples=max_samples, force=force)
        print_compare(console, made.result)
        console.print(f"wrote {made.html} (open it in a browser) and {made.json}", soft_wrap=True)
