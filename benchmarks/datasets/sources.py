"""One way to read a benchmark that ships either as a Hugging Face dataset (parquet/arrow) or as JSON rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .base import DatasetError
from .rows import Row, RowError, count_jsonl_records, iter_json_records
from .tables import dir_files, is_table_path, iter_rows, num_rows, require_columns, table_files

JSON_SUFFIXES = (".json", ".jsonl")


@dataclass
class Records:
    """A lazily read table: ``rows()`` yields (index, split, row), ``base`` resolves relative image paths."""

    rows: Callable[[], Iterator[tuple[int, str | None, Row | RowError]]]
    size: int
    base: Path
    layout: str


def open_records(root: Path, what: str, expected: str, *, cols: Sequence[str] | None = None,
                 required: Sequence[str] = (), split: str | None = None) -> Records:
    """Open ``root``: a .json/.jsonl file, a .parquet/.arrow file, or a directory of either.

    For tables, ``required`` columns must exist (else DatasetError) and only ``split`` is read when given.
    A JSON file is parsed now (so a broken file fails at once); JSON Lines and tables are streamed.
    """
    json_file = _json_file(root, what, expected)
    if json_file is not None:
        return _json_records(json_file)
    files = table_files(root, what=what, expected=expected, split=split)
    if required:
        require_columns(files, required, what, expected)

    def rows() -> Iterator[tuple[int, str | None, Row | RowError]]:
        for index, (f, row) in enumerate(iter_rows(files, what, cols)):
            yield index, f.split, row

    return Records(rows=rows, size=num_rows(files, what), base=root if root.is_dir() else root.parent,
                   layout="table")


def _json_file(root: Path, what: str, expected: str) -> Path | None:
    if root.is_file():
        if root.suffix.lower() in JSON_SUFFIXES:
            return root
        if is_table_path(root):
            return None
        raise DatasetError(f"{what}: {root} is not a .json, .jsonl, .parquet or .arrow file; expected {expected}")
    if dir_files(root, what):
        return None
    candidates = sorted(p for s in JSON_SUFFIXES for p in root.glob(f"*{s}") if p.name != "dataset_info.json")
    if len(candidates) == 1:
        return candidates[0]
    found = ", ".join(p.name for p in candidates) or "no .json/.jsonl/.parquet/.arrow files"
    raise DatasetError(f"{what}: cannot tell which file to read in {root} ({found}); pass the file itself. "
                       f"Expected {expected}")


def _json_records(path: Path) -> Records:
    what = str(path)
    if path.suffix.lower() == ".jsonl":
        size = count_jsonl_records(path)

        def stream() -> Iterator[tuple[int, str | None, Row | RowError]]:
            for index, row in enumerate(iter_json_records(path, what)):
                yield index, None, row

        return Records(rows=stream, size=size, base=path.parent, layout="jsonl")
    items = list(iter_json_records(path, what))

    def listed() -> Iterator[tuple[int, str | None, Row | RowError]]:
        for index, row in enumerate(items):
            yield index, None, row

    return Records(rows=listed, size=len(items), base=path.parent, layout="json")
