"""``synthetic``: the built-in scene generator (tools.synthetic), made on the fly; no files needed.

``limit`` is the dataset's size (default 100) and ``seed`` picks the scenes; the same pair always gives
the same samples. Ground truth (``extra["truth"]``) and ``extra["difficulty"]`` are for analysis only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from refine_agent.tools.synthetic.generate import iter_samples
from refine_agent.tools.synthetic.language import TASK_CATEGORIES

from .base import Dataset, DatasetError, ImageRef, Sample, SampleError
from .rows import check_options

KIND = "synthetic"
DEFAULT_SIZE = 100
# confine is accepted (e.g. passed on by jsonl's join=synthetic) and has nothing to do: no image paths.
OPTIONS: dict[str, str] = {"confine": "accepted for symmetry; synthetic samples read no image paths"}


def load(path: str, *, limit: int | None = None, seed: int = 0, options: dict[str, Any] | None = None) -> Dataset:
    check_options(KIND, options, OPTIONS)
    if path:
        raise DatasetError(f"{KIND} takes no path (got '{path}'); use the spec 'synthetic' and set the size with "
                           "--limit")
    n = DEFAULT_SIZE if limit is None else max(0, limit)
    return Dataset(spec=KIND, rows=_rows(n, seed), size=n, categories=list(TASK_CATEGORIES),
                   info={"format": KIND, "seed": seed})


def _rows(n: int, seed: int) -> Iterator[Sample | SampleError]:
    for s in iter_samples(n, seed):
        yield Sample(id=s.id, instruction=s.instruction, category=s.category,
                     source=ImageRef(image=s.image(), name=s.id),
                     extra={"difficulty": s.difficulty, "truth": s.truth()})
