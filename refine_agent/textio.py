"""Reading text files that users and data sets hand us: UTF-8 with or without a byte-order mark (BOM).

Editors on Windows (Notepad, Excel's "CSV UTF-8", PowerShell) often start a file with a BOM. Plain
``encoding="utf-8"`` keeps it as U+FEFF, so the first JSON line or the whole JSON/TOML file fails to parse.
Here the BOM picks the encoding (UTF-8, UTF-16 or UTF-32) and is dropped; without one, the text is UTF-8.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

# UTF-32 first: its little-endian BOM starts with UTF-16's.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_MARKED = re.compile("[\udc00-\udcff]")  # bytes that did not decode (see _mark); valid text never holds these


def _mark(exc: UnicodeError) -> tuple[str, int]:
    """Like errors="surrogateescape", but for any byte and any codec (UTF-16's odd trailing byte, too)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start:exc.end]), exc.end


_ERRORS = "refine_agent.mark"
codecs.register_error(_ERRORS, _mark)


def sniff_encoding(head: bytes) -> str:
    """The codec for a file that starts with ``head``: from its BOM, else UTF-8 (``utf-8-sig`` drops a BOM)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding
    return "utf-8-sig"


def file_encoding(path: str | Path) -> str:
    with open(path, "rb") as f:
        return sniff_encoding(f.read(4))


def decode_text(data: bytes) -> str:
    """Bytes as text, BOM dropped; UnicodeDecodeError when they are not text in the BOM's (or UTF-8) encoding."""
    return data.decode(sniff_encoding(data[:4]))


def read_text(path: str | Path) -> str:
    """A whole text file, BOM dropped; UnicodeDecodeError when it is not UTF-8 (or the encoding its BOM names)."""
    return decode_text(Path(path).read_bytes())


def open_lines(path: str | Path) -> IO[str]:
    """A text file opened for reading line by line, BOM dropped.

    Bytes that do not decode never stop the reading: they come through as lone surrogates, so a caller can
    reject the one line that holds them (``undecodable``) and go on with the others.
    """
    return open(path, encoding=file_encoding(path), errors=_ERRORS)


def undecodable(line: str) -> bool:
    """Whether a line from ``open_lines`` held bytes that are not text in the file's encoding."""
    return _MARKED.search(line) is not None


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, line) for each line of a text file opened with ``open_lines``."""
    with open_lines(path) as f:
        yield from enumerate(f, 1)


def read_our_json(path: str | Path, check: Callable[[Any], T], not_ours: str) -> tuple[T | None, str | None]:
    """``check`` of the JSON in a file we wrote (it raises KeyError, TypeError, ... on another shape), or None
    and why not, to end "PATH {why}": a side file a command reads (a damaged one is a warning, never a crash)."""
    try:
        return check(json.loads(read_text(path))), None
    except OSError as exc:
        return None, f"cannot be read: {exc.strerror or exc}"
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at line {exc.lineno})"
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        return None, not_ours
