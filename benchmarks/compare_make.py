"""``refine-agent compare``'s files: ``compare.json`` (the numbers of ``compare``) and ``compare.html`` (the
page of ``compare_html``), written into a folder where only files refine-agent wrote are ever replaced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refine_agent.atomic import write_atomic, write_json
from refine_agent.errors import InputError
from refine_agent.outputs import FilesTarget

from .compare import check_dirs, compare_runs, union_ids
from .compare_browser import collect_cards
from .compare_html import render

COMPARE_FILES = ["compare.json", "compare.html"]


@dataclass
class Compared:
    result: dict[str, Any]  # compare.json's numbers
    json: Path
    html: Path


def make_compare(run_dirs: Sequence[Path], out_dir: Path, *, max_samples: int = 200,
                 force: bool = False) -> Compared:
    """Write ``out_dir/compare.json`` and ``out_dir/compare.html`` (self-contained), reading the runs read-only.
    Files of those names that refine-agent did not write there are kept unless ``force``."""
    if max_samples < 0:
        raise InputError(f"max_samples must be 0 or more, not {max_samples}")
    check_dirs(run_dirs)
    # checked before any work, and always as a folder the user named: another program's files are never replaced
    target = FilesTarget.choose(out_dir, out_dir, COMPARE_FILES, force=force, what="compare")
    result, runs = compare_runs(run_dirs)
    browser = collect_cards(runs, union_ids(runs), max_samples)
    folder = target.open()
    json_path = write_json(folder / "compare.json", result)
    html_path = write_atomic(folder / "compare.html", render(result, browser).encode("utf-8"))
    target.close()
    return Compared(result=result, json=json_path, html=html_path)
