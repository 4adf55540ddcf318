"""What every dataset loader yields: ``Sample`` records (or ``SampleError`` for a bad row), lazily.

Images stay on disk (or as the bytes a parquet row holds) until the runner loads them, so a run streams
samples and never holds a whole dataset's pixels.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from refine_agent.errors import InputError
from refine_agent.images import DEFAULT_MAX_PIXELS, Image, decode_image, load_image, non_regular_kind


class DatasetError(InputError):
    """A dataset that cannot be read at all: a missing path, an unknown format. One line, with a fix."""


class ImageRef(BaseModel):
    """Where a sample's image lives: a file path, encoded bytes (e.g. from a parquet row), or pixels."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    path: str | None = None
    data: bytes | None = None
    image: Image | None = None
    name: str = "image"  # for error messages, e.g. "row 12 input_image"

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
        if self.image is not None:
            return self.image
        if self.data is not None:
            return decode_image(self.data, name=self.name, max_pixels=max_pixels)
        if self.path is not None:
            return load_image(self.path, max_pixels=max_pixels)
        raise InputError(f"{self.name}: no image given")


class Sample(BaseModel):
    """One benchmark item.

    - ``context`` is shown to judges and critics (e.g. RE-Edit's rationale); tools never see ``extra``,
      which is for analysis only (ground truth, human scores, difficulty, language).
    - ``mask`` is a judging mask (white = region of interest), as RefEdit-Bench's protocol needs; it goes
      to the judge, never to the editor.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    instruction: str
    source: ImageRef
    category: str | None = None
    edited: ImageRef | None = None
    mask: ImageRef | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)


class SampleError(BaseModel):
    """A row that could not become a Sample. It becomes an error record; the other samples go on."""

    id: str
    index: int
    error: str
    kind: str = "load_error"


@dataclass
class Dataset:
    """A named, sized stream of samples. ``categories`` lists the benchmark's official groups, if any."""

    spec: str
    rows: Iterator[Sample | SampleError]
    size: int | None = None
    categories: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Sample | SampleError]:
        return self.rows


# Ids refine-agent makes up start with this; a dataset's own id may not, so a made-up id never equals a real one.
RESERVED_ID_PREFIX = "#row-"


def placeholder_id(index: int, repeated: str | None = None) -> str:
    """The id of the record of row ``index`` when the row has no usable id (``#row-4``), or when its id repeats
    an earlier row's (``#row-4:ID``). Real ids may not start with ``RESERVED_ID_PREFIX`` (``get_id`` refuses
    them), so these never collide with one, and the row index keeps them apart from each other."""
    return f"{RESERVED_ID_PREFIX}{index}" if repeated is None else f"{RESERVED_ID_PREFIX}{index}:{repeated}"


def require_path(path: str | Path, what: str, expected: str) -> Path:
    """The dataset path, or a DatasetError saying where the data should be and in which format."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"{what}: {p} does not exist; expected {expected}. Datasets are never downloaded: "
                           "fetch it yourself and pass the local path")
    require_readable_file(p, what, folder_ok=True)
    return p


def require_readable_file(path: Path, what: str, *, folder_ok: bool = False) -> None:
    """A DatasetError when ``path`` is a device, FIFO or socket (or a folder, unless ``folder_ok``): reading
    one would never end (/dev/zero) or wait forever (a FIFO nobody writes to). Nothing is opened."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return  # missing or unreadable: the caller's open says so
    kind = non_regular_kind(mode)
    if kind is not None and not (folder_ok and stat.S_ISDIR(mode)):
        raise DatasetError(f"{what}: {path} is {kind}, not a regular file{' or folder' if folder_ok else ''}; "
                           "pass the dataset's file or folder")
