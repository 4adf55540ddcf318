"""Read Hugging Face datasets from local disk with pyarrow alone (no ``datasets`` package), batch by batch.

Accepted layouts:

- parquet files: one file, or a directory (a hub snapshot such as ``data/test-00000-of-00001.parquet``);
- a ``save_to_disk`` directory: ``state.json`` listing ``data-*.arrow`` files (Arrow IPC stream format, the
  file format is read too) and ``dataset_info.json``; a DatasetDict adds ``dataset_dict.json`` and one
  folder per split;
- any directory holding ``.arrow`` files (``cache-*.arrow`` files are skipped).

A file's split comes from ``dataset_dict.json``, ``state.json``'s ``_split``, a name like ``test-0000...``,
or a parent folder named after a split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refine_agent.errors import MissingExtraError
from refine_agent.textio import read_text

from .base import DatasetError, require_readable_file

SPLIT_NAMES = ("train", "test", "validation", "valid", "val", "dev")
TABLE_SUFFIXES = (".parquet", ".arrow")
BATCH_ROWS = 16  # rows converted to Python at a time; image rows can be megabytes each


@dataclass(frozen=True)
class TableFile:
    path: Path
    split: str | None = None


def pyarrow(what: str) -> Any:
    """The pyarrow module, or MissingExtraError with the install hint."""
    try:
        import pyarrow as pa
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError("pyarrow", "bench", what) from exc
    return pa


def is_table_path(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in TABLE_SUFFIXES


def table_files(path: Path, *, what: str, expected: str, split: str | None = None) -> list[TableFile]:
    """The parquet/arrow files of a local dataset, in order, keeping only ``split`` when given."""
    if path.is_file():
        if path.suffix.lower() not in TABLE_SUFFIXES:
            raise DatasetError(f"{what}: {path} is not a .parquet or .arrow file; expected {expected}")
        files = [TableFile(path, _split_of(path, path.parent))]
    else:
        files = dir_files(path, what)
    if split is not None:
        files = _pick_split(files, split, path, what)
    if not files:
        raise DatasetError(f"{what}: no .parquet or .arrow files under {path}; expected {expected}")
    for f in files:  # a FIFO or a device named like a table would hang or never end
        require_readable_file(f.path, what)
    return files


def dir_files(root: Path, what: str) -> list[TableFile]:
    meta = root / "dataset_dict.json"
    if meta.is_file():
        splits = _read_json(meta, what).get("splits") or []
        return [f for s in splits for f in _with_split(dir_files(root / s, what), s)]
    state = root / "state.json"
    if state.is_file():
        info = _read_json(state, what)
        names = [d.get("filename") for d in info.get("_data_files") or [] if isinstance(d, dict)]
        return [TableFile(root / n, info.get("_split")) for n in names if n]
    found = sorted(p for p in root.rglob("*.parquet") if _visible(p, root))
    if not found:
        found = sorted(p for p in root.rglob("*.arrow") if _visible(p, root) and not p.name.startswith("cache-"))
    return [TableFile(p, _split_of(p, root)) for p in found]


def _with_split(files: list[TableFile], split: str) -> list[TableFile]:
    return [TableFile(f.path, f.split or split) for f in files]


def _visible(p: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in p.relative_to(root).parts)


def _split_of(p: Path, root: Path) -> str | None:
    stem = p.name.split("-")[0].split(".")[0].lower()
    if stem in SPLIT_NAMES:
        return stem
    for part in reversed(p.relative_to(root).parts[:-1] if p.is_relative_to(root) else ()):
        if part.lower() in SPLIT_NAMES:
            return part.lower()
    return None


def _pick_split(files: list[TableFile], split: str, path: Path, what: str) -> list[TableFile]:
    if all(f.split is None for f in files):
        return files  # a single-split dataset: use what is there
    chosen = [f for f in files if f.split == split]
    if not chosen:
        found = ", ".join(sorted({f.split for f in files if f.split}))
        raise DatasetError(f"{what}: no '{split}' split under {path} (found: {found}); choose one with split=...")
    return chosen


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(read_text(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{what}: cannot read {path} ({exc})") from exc
    return data if isinstance(data, dict) else {}


def columns(files: Sequence[TableFile], what: str) -> set[str]:
    """The union of the files' column names; opening each file also checks that it is readable."""
    names: set[str] = set()
    for f in files:
        names.update(_schema(f.path, what).names)
    return names


def require_columns(files: Sequence[TableFile], needed: Sequence[str], what: str, expected: str) -> None:
    have = columns(files, what)
    missing = [c for c in needed if c not in have]
    if missing:
        raise DatasetError(f"{what}: {files[0].path} has no column {', '.join(missing)} "
                           f"(columns: {', '.join(sorted(have))}); expected {expected}")


def _schema(path: Path, what: str) -> Any:
    pa = pyarrow(what)
    try:
        if path.suffix.lower() == ".parquet":
            return pa.parquet.ParquetFile(path).schema_arrow
        with pa.memory_map(str(path)) as src:
            return _arrow_reader(pa, src).schema
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{what}: cannot read {path} ({exc})") from exc


def _arrow_reader(pa: Any, src: Any) -> Any:
    head = src.read(6)
    src.seek(0)
    return pa.ipc.open_file(src) if head == b"ARROW1" else pa.ipc.open_stream(src)


def _batches(path: Path, cols: Sequence[str] | None, what: str) -> Iterator[Any]:
    pa = pyarrow(what)
    try:
        if path.suffix.lower() == ".parquet":
            pf = pa.parquet.ParquetFile(path)
            keep = None if cols is None else [c for c in cols if c in pf.schema_arrow.names]
            yield from pf.iter_batches(batch_size=BATCH_ROWS, columns=keep)
            return
        with pa.memory_map(str(path)) as src:
            reader = _arrow_reader(pa, src)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches)) \
                if isinstance(reader, pa.ipc.RecordBatchFileReader) else reader
            for batch in batches:
                if cols is not None:
                    batch = batch.select([c for c in cols if c in batch.schema.names])
                yield batch
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{what}: cannot read {path} ({exc})") from exc


def iter_rows(files: Sequence[TableFile], what: str, cols: Sequence[str] | None = None
              ) -> Iterator[tuple[TableFile, dict[str, Any]]]:
    """Each row as a dict (only ``cols`` when given), a few rows at a time; images stay encoded bytes."""
    for f in files:
        for batch in _batches(f.path, cols, what):
            for start in range(0, batch.num_rows, BATCH_ROWS):
                for row in batch.slice(start, BATCH_ROWS).to_pylist():
                    yield f, row


def num_rows(files: Sequence[TableFile], what: str) -> int:
    """The number of rows, from parquet metadata or Arrow batch headers (no data is decoded)."""
    pa = pyarrow(what)
    total = 0
    for f in files:
        if f.path.suffix.lower() == ".parquet":
            total += pa.parquet.ParquetFile(f.path).metadata.num_rows
        else:
            total += sum(b.num_rows for b in _batches(f.path, None, what))  # memory-mapped: no copy
    return total


def column_values(files: Sequence[TableFile], column: str, what: str) -> list[Any]:
    """One (small) column's values, e.g. for filtering and counting without touching image columns."""
    values: list[Any] = []
    for f in files:
        if column in _schema(f.path, what).names:
            values.extend(v for b in _batches(f.path, [column], what) for v in b.column(0).to_pylist())
        else:
            values.extend([None] * num_rows([f], what))
    return values
