"""``iebench:PATH``: IE-Bench-4k (hub id Coobiw/IE-Bench-4k), human opinion scores for judging the judges.

PATH is a local Hugging Face dataset (a hub snapshot with ``data/train-*.parquet`` and ``data/test-*.parquet``,
or a ``save_to_disk`` folder), a single .parquet/.arrow file, or a JSON/JSONL file of rows. Fields:

- ``images``: ``[source, edited]``, each an HF Image struct ``{bytes, path}`` or a path relative to the file;
- ``edit_inst``: the instruction;
- ``answer``: the human MOS (1-5; a number or a numeric string) -> ``extra["mos"]``.

Option ``split`` picks ``test`` (default, what IE-Critic-R1 reports), ``train`` or ``all``; files without a
split name are all read. ``category`` is taken from a ``category`` field when present. ``id`` is the row's
``id`` if any, else ``iebench-<split>-NNNNN`` from the row's position in its split. The prompt column
``problem`` is not used. Correlate judge scores with ``extra["mos"]`` (PLCC/SRCC).

Option ``confine=true`` turns a row whose image path (symlinks and ``..`` followed) leads outside the
dataset's folder into an error; without it such paths are read, and reports embed those images.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Dataset, ImageRef, Sample, require_path
from .rows import (
    CONFINE_OPTION,
    Row,
    RowError,
    capped,
    check_options,
    choice,
    confine_root,
    describe_type,
    get_id,
    get_str,
    image_ref,
    limited,
    missing_field,
    samples_from_rows,
)
from .sources import open_records

KIND = "iebench"
EXPECTED = ("IE-Bench-4k as a local Hugging Face dataset (parquet or save_to_disk arrow) or a JSON/JSONL file, "
            "with images [source, edited], edit_inst and answer (MOS)")
OPTIONS = {"split": "test (default), train or all", **CONFINE_OPTION}
COLUMNS = ["id", "images", "edit_inst", "answer", "category"]


def load(path: str, *, limit: int | None = None, seed: int = 0, options: dict[str, Any] | None = None) -> Dataset:
    opts = check_options(KIND, options, OPTIONS)
    split = choice(KIND, "split", opts.get("split", "test"), ("test", "train", "all"))
    root = require_path(path, KIND, EXPECTED)
    what = f"{KIND} ({root})"
    rec = open_records(root, what, EXPECTED, cols=COLUMNS, required=("images", "edit_inst", "answer"),
                       split=None if split == "all" else split)
    confine = confine_root(KIND, opts, rec.base)

    def rows() -> Iterator[tuple[int, Row | RowError]]:
        counters: dict[str | None, int] = {}
        for index, file_split, row in rec.rows():
            k = counters[file_split] = counters.get(file_split, -1) + 1
            if isinstance(row, dict):
                row.setdefault("_key", f"iebench-{file_split}-{k:05d}" if file_split else f"iebench-{k:05d}")
            yield index, row

    def make(index: int, row: Row) -> Sample:
        return _sample(row, rec.base, confine)

    samples = samples_from_rows(rows(), make, lambda i, r: get_id(r) or r.get("_key"))
    return Dataset(spec=f"{KIND}:{path}", rows=limited(samples, limit), size=capped(rec.size, limit),
                   info={"format": KIND, "path": str(root), "split": split, "score": "extra['mos'] (1-5)",
                         "metric": "PLCC and SRCC between judge scores and MOS"})


def _mos(value: Any) -> float:
    if value is None:
        raise RowError("missing field 'answer'")
    if isinstance(value, bool):
        raise RowError(f"field 'answer' should be a number, got {describe_type(value)}")
    try:
        mos = float(value)
    except (TypeError, ValueError) as exc:
        raise RowError(f"field 'answer' should be a number, got {describe_type(value)}") from exc
    if not math.isfinite(mos):
        raise RowError(f"field 'answer' is not finite ({value!r})")
    return mos


def _sample(row: Row, base: Path, confine: Path | None = None) -> Sample:
    sid = get_id(row) or str(row["_key"])
    images = row.get("images")
    if not isinstance(images, (list, tuple)) or len(images) != 2:
        shown = f"{len(images)} items" if isinstance(images, (list, tuple)) else describe_type(images)
        raise RowError(f"field 'images' should be [source, edited], got {shown}")
    source: ImageRef = image_ref(images[0], [base], f"{sid} source", confine)
    edited: ImageRef = image_ref(images[1], [base], f"{sid} edited", confine)
    if row.get("answer") is None:
        raise missing_field(row, "answer")
    return Sample(id=sid, instruction=get_str(row, "edit_inst") or "", source=source, edited=edited,
                  category=get_str(row, "category", required=False), extra={"mos": _mos(row.get("answer"))})
