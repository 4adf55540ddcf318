"""Shared helpers for loaders: typed field access, image references, option checks, and the row loop.

A loader turns each raw row (a dict) into a Sample with a ``make(index, row)`` function that raises
``RowError`` for a bad row; ``samples_from_rows`` turns those into ``SampleError`` records and goes on.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from refine_agent.errors import InputError, parse_failure, validation_message
from refine_agent.images import non_regular_kind
from refine_agent.textio import iter_lines, read_text, undecodable

from .base import (
    RESERVED_ID_PREFIX,
    DatasetError,
    ImageRef,
    Sample,
    SampleError,
    placeholder_id,
    require_readable_file,
)

Row = dict[str, Any]


CONFINE_OPTION = {"confine": "true to refuse image paths that resolve (symlinks and .. followed) outside the "
                             "dataset root; such a row becomes an error (default false)"}


class RowError(ValueError):
    """One row that cannot become a Sample; the message says which field and what is wrong."""


def check_options(kind: str, options: Mapping[str, Any] | None, valid: Mapping[str, str]) -> dict[str, Any]:
    """The options as a dict, or a DatasetError naming the valid ones."""
    opts = dict(options or {})
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in valid.items()) or "none"
        raise DatasetError(f"{kind}: unknown option(s) {', '.join(unknown)}; valid options: {known}")
    return opts


def choice(kind: str, name: str, value: Any, allowed: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """An option value from a fixed set (case-insensitive), or a DatasetError listing the set."""
    allowed = list(allowed)
    text = str(value).strip().lower()
    text = (aliases or {}).get(text, text)
    if text not in allowed:
        raise DatasetError(f"{kind}: option {name}={value!r} is not one of {', '.join(allowed)}")
    return text


def flag(kind: str, name: str, value: Any) -> bool:
    """A true/false option (``-D confine=true`` arrives as a bool, a file's option may be a string)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise DatasetError(f"{kind}: option {name}={value!r} should be true or false")


def confine_root(kind: str, opts: Mapping[str, Any], root: Path) -> Path | None:
    """The real dataset root that image paths must stay under with ``confine=true``; None when not confined."""
    return root.expanduser().resolve() if flag(kind, "confine", opts.get("confine", False)) else None


def describe_type(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} ({text[:40]}{'...' if len(text) > 40 else ''})"


def missing_field(row: Mapping[str, Any], key: str) -> RowError:
    """The error for a required field that is absent, or present as null (JSON ``null``, a table's null)."""
    return RowError(f"field '{key}' is null" if key in row else f"missing field '{key}'")


def get_str(row: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    """A non-empty string field; RowError if it is required and missing (or null), or has another type."""
    value = row.get(key)
    if value is None:
        if required:
            raise missing_field(row, key)
        return None
    if not isinstance(value, str):
        raise RowError(f"field '{key}' should be a string, got {describe_type(value)}")
    if required and not value.strip():
        raise RowError(f"field '{key}' is empty")
    return value


def get_id(row: Mapping[str, Any], key: str = "id") -> str | None:
    """A string or integer id field as a string, or None when the row has none."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError(f"field '{key}' should be a string or an integer, got {describe_type(value)}")
    text = str(value).strip()
    if not text:
        raise RowError(f"field '{key}' is empty")
    if text.startswith(RESERVED_ID_PREFIX):
        raise RowError(f"field '{key}' {_short(text, 60)!r} starts with '{RESERVED_ID_PREFIX}', which is reserved for "
                       "the ids refine-agent gives rows without one; rename it")
    return text


def resolve_file(value: str, bases: Iterable[Path], name: str, confine: Path | None = None) -> Path:
    """An existing image file: absolute, or relative to the first of ``bases`` that holds it.

    With ``confine`` (a resolved directory), the file, symlinks and ``..`` followed, must lie under it; the
    resolved path is returned then, so the file checked is the file loaded.
    """
    special: tuple[Path, str] | None = None  # the first candidate that exists but is no regular file
    try:
        p = Path(value).expanduser()
        candidates = [p] if p.is_absolute() else [b / p for b in bases]
        for c in candidates:
            try:
                mode = c.stat().st_mode
            except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL byte in the name
                continue
            kind = non_regular_kind(mode)
            if kind is None:
                return c if confine is None else _confined(c, confine, name)
            special = special or (c, kind)
    except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop: this row's problem only
        raise RowError(f"{name}: cannot use image path {_short(value)} ({getattr(exc, 'strerror', None) or exc})"
                       ) from None
    if special is not None:  # a device, FIFO, socket or folder: never opened, so never read or waited on
        raise RowError(f"{name}: image {_short(special[0])} is {special[1]}, not a regular file")
    raise RowError(f"{name}: image file {_short(candidates[0])} does not exist")


def _confined(path: Path, root: Path, name: str) -> Path:
    real = path.resolve()
    if not real.is_relative_to(root):
        raise RowError(f"{name}: image {_short(path)} lies outside the dataset root {root} (it resolves to "
                       f"{_short(real)}); refused because confine=true")
    return real


def _short(path: str | Path, limit: int = 200) -> str:
    # A hostile row may hold a path of any length or with control characters; its message stays one line.
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def image_ref(value: Any, bases: Iterable[Path], name: str, confine: Path | None = None) -> ImageRef:
    """An ImageRef from a path string, raw bytes, or a Hugging Face Image struct ``{bytes, path}``.

    Nothing is decoded here; a path is only checked to exist (and, with ``confine``, to stay under that
    directory). Embedded bytes win over a struct's path.
    """
    bases = list(bases)
    if value is None:
        raise RowError(f"{name} is missing")
    if isinstance(value, (bytes, bytearray)):
        if not value:
            raise RowError(f"{name} is empty (0 bytes)")
        return ImageRef(data=bytes(value), name=name)
    if isinstance(value, str):
        if not value.strip():
            raise RowError(f"{name} is an empty path")
        return ImageRef(path=str(resolve_file(value, bases, name, confine)), name=name)
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        if data:
            return image_ref(data, bases, name, confine)
        if isinstance(path, str) and path:
            return image_ref(path, bases, name, confine)
        raise RowError(f"{name} has neither bytes nor a path")
    raise RowError(f"{name} should be a path or an image struct, got {describe_type(value)}")


def b64_image_ref(text: Any, name: str) -> ImageRef:
    """An ImageRef from a base64 string (a ``data:image/...;base64,`` prefix is allowed)."""
    if not isinstance(text, str):
        raise RowError(f"{name} should be a base64 string, got {describe_type(text)}")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RowError(f"{name} is not valid base64 ({exc})") from exc
    if not data:
        raise RowError(f"{name} is empty")
    return ImageRef(data=data, name=name)


def iter_json_records(path: Path, what: str, group_key: str | None = None) -> Iterator[Row | RowError]:
    """Records of a JSON Lines file (streamed) or a JSON file holding a list, or an object holding lists.

    For an object of lists keyed by group (``{"physics": [rows], ...}``), ``group_key`` names the field that
    receives the group name when a row lacks it. A JSONL line that does not parse, or a record that is not
    an object, comes out as a RowError so the other rows go on. A JSON file that does not parse is a
    DatasetError.
    """
    require_readable_file(path, what)
    if path.suffix.lower() == ".jsonl":
        yield from _jsonl_records(path)
        return
    try:
        data = json.loads(read_text(path))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # also numbers too long, nesting too deep
        raise DatasetError(f"{what}: cannot read {path} as JSON ({parse_failure(exc)})") from None
    for i, (group, item) in enumerate(_json_list(data, path, what)):
        try:
            record = _as_record(item, f"item {i}")
        except RowError as exc:
            yield exc
            continue
        if group is not None and group_key is not None:
            record.setdefault(group_key, group)
        yield record


def _jsonl_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a JSON Lines file with their line numbers, a BOM dropped from any line's start
    (files joined with ``cat`` keep each part's BOM)."""
    for lineno, line in iter_lines(path):
        line = line.lstrip("\ufeff")
        if line.strip():
            yield lineno, line


def count_jsonl_records(path: Path) -> int:
    """How many records ``iter_json_records`` yields for a JSON Lines file (bad lines included)."""
    require_readable_file(path, str(path))
    return sum(1 for _ in _jsonl_lines(path))


def _jsonl_records(path: Path) -> Iterator[Row | RowError]:
    for lineno, line in _jsonl_lines(path):
        if undecodable(line):
            yield RowError(f"line {lineno}: holds bytes that are not UTF-8 text")
            continue
        try:
            yield _as_record(json.loads(line), f"line {lineno}")
        except json.JSONDecodeError as exc:
            yield RowError(f"line {lineno}: not valid JSON ({exc.msg} at column {exc.pos + 1})")
        except (ValueError, RecursionError) as exc:  # a number of thousands of digits, arrays nested too deep
            yield RowError(f"line {lineno}: not usable JSON ({parse_failure(exc)})")
        except RowError as exc:
            yield exc


def _json_list(data: Any, path: Path, what: str) -> list[tuple[str | None, Any]]:
    if isinstance(data, list):
        return [(None, item) for item in data]
    if isinstance(data, dict):
        lists = {k: v for k, v in data.items() if isinstance(v, list)}
        if len(lists) == 1:
            return [(None, item) for item in next(iter(lists.values()))]  # {"data": [rows], "version": ...}
        if lists and len(lists) == len(data):
            return [(k, item) for k, v in lists.items() for item in v]  # {group: [rows], ...}
    raise DatasetError(f"{what}: {path} should hold a JSON list of rows, or an object holding one")


def _as_record(value: Any, where: str) -> Row:
    if not isinstance(value, dict):
        raise RowError(f"{where} should be a JSON object, got {describe_type(value)}")
    return value


def samples_from_rows(rows: Iterable[tuple[int, Row | RowError]], make: Callable[[int, Row], Sample],
                      fallback_id: Callable[[int, Row], str | None]) -> Iterator[Sample | SampleError]:
    """Run ``make`` on each row; a bad row or a duplicate id becomes a SampleError and the rest go on.

    Every item has its own id: the record of a row without a usable id, or whose id an earlier row (good or
    bad) already has, gets a ``placeholder_id``, which no real id can equal.
    """
    seen: set[str] = set()
    for index, row in rows:
        sid: str | None = None
        sample: Sample | None = None
        try:
            if isinstance(row, RowError):
                raise row
            sid = _safe_id(fallback_id, index, row)
            sample = make(index, row)
            sid = sample.id
            if sample.id in seen:
                sample = None
                raise RowError(f"duplicate id '{sid}'")
        except RowError as exc:
            error = f"row {index}: {exc}"
        except ValidationError as exc:
            error = validation_message(exc, f"row {index}")
        except InputError as exc:
            error = f"row {index}: {exc}"
        except (TypeError, ValueError, KeyError, OverflowError, OSError) as exc:  # a shape no check foresaw
            error = f"row {index}: unexpected value ({type(exc).__name__}: {exc})"
        if sample is not None:
            seen.add(sample.id)
            yield sample
            continue
        if sid is None:
            record_id = placeholder_id(index)
        elif sid in seen:
            record_id = placeholder_id(index, sid)
        else:
            record_id = sid
        seen.add(record_id)
        yield SampleError(id=record_id, index=index, error=error)


def _safe_id(fallback_id: Callable[[int, Row], str | None], index: int, row: Row) -> str | None:
    try:
        return fallback_id(index, row)
    except (RowError, TypeError, ValueError):
        return None


def limited(items: Iterator[Sample | SampleError], limit: int | None) -> Iterator[Sample | SampleError]:
    """The first ``limit`` items (samples and errors alike), lazily; all of them when ``limit`` is None."""
    return items if limit is None else itertools.islice(items, max(0, limit))


def capped(n: int | None, limit: int | None) -> int | None:
    if n is None:
        return None
    return n if limit is None else min(n, max(0, limit))


def extra_fields(row: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """The row's other fields, for ``Sample.extra`` (analysis only)."""
    skip = set(used)
    return {k: v for k, v in row.items() if k not in skip}
