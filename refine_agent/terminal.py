"""The consoles everything prints through. Text is always printed verbatim.

Paths, instructions, sample ids, categories, tool replies and error messages come from users and data sets,
and any of them may hold ``[/]``, ``[bold]`` or ``:smile:``. Rich reads such text as markup by default, which
eats brackets or crashes. So here, the one place, markup and emoji codes are off for every string, including
spinner and progress text (rich parses those separately). Styles are given as ``style=`` or with ``styled()``,
never written inside the text.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import TextColumn
from rich.status import Status
from rich.text import Text

# Control characters other than newline and tab (ESC above all) would let a file name or a tool's reply
# move the cursor, clear the screen or retitle the terminal: they print as visible escapes instead.
# Bidirectional overrides (U+202E and kin) would reorder what follows them on the line, so they go too.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_LINE = 2000  # an error line quotes user text; a 100 KB instruction should not fill the terminal


def visible(text: str) -> str:
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """A message as one visible line: newlines shown as escapes, and cut (saying so) past ``limit``."""
    text = visible(text).replace("\n", "\\n")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def plain(text: RenderableType) -> RenderableType:
    """A string as literal text (rich would parse it as markup); any other renderable as it is."""
    return Text(visible(text)) if isinstance(text, str) else text


def styled(*parts: str | tuple[str, str]) -> Text:
    """Literal text with styles, e.g. ``styled(("error:", "bold red"), " ", message)``."""
    return Text.assemble(*(visible(p) if isinstance(p, str) else (visible(p[0]), p[1]) for p in parts))


class _VerbatimStatus(Status):
    def update(self, status: RenderableType | None = None, **kwargs: Any) -> None:
        super().update(plain(status) if status is not None else None, **kwargs)


class VerbatimConsole(Console):
    """A rich Console that never interprets markup or emoji codes in the text it is given."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"markup": False, "emoji": False, **kwargs})

    def status(self, status: RenderableType, **kwargs: Any) -> Status:  # type: ignore[override]
        return _VerbatimStatus(plain(status), console=self, **kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:  # every string printed, in tables too
        return super().render_str(visible(text), **kwargs)


def text_column(template: str, **kwargs: Any) -> TextColumn:
    """A progress column whose formatted text (task descriptions, fields) is printed verbatim."""
    return TextColumn(template, markup=False, **kwargs)


def make_console(*, stderr: bool = False, **kwargs: Any) -> VerbatimConsole:
    return VerbatimConsole(stderr=stderr, **kwargs)
