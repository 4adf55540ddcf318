"""``refedit:PATH``: RefEdit-Bench (referring-expression edits on RefCOCO images; hub id bpathir1/RefEdit-Bench).

PATH is the dataset as a local Hugging Face dataset (parquet files, or a ``save_to_disk`` folder; split
``test``, 200 rows), a single .parquet/.arrow file, or a JSON/JSONL file of rows (images as paths relative
to that file, in ``input_image`` or ``image``). Fields:

- ``input_image``: the source (an HF Image struct ``{bytes, path}``, or a path);
- ``editing_instruction``: the instruction the editor gets (the protocol's default, option ``instruction``);
- ``edit_instruction_single``: the instruction restated for the masked target alone; it goes to
  ``context["masked_instruction"]``, which the protocol's SC judge uses on the masked images;
- ``mask``: the target's polygon(s), a JSON string or a list. Accepted: a flat ``[x1, y1, x2, y2, ...]``, a
  list of ``[x, y]`` points, or a list of such polygons (COCO style, ``[[x1, y1, ...], ...]``). Coordinates
  are pixels of the source image, or normalised to 0-1 when none exceeds 1. Like the official code, only
  the first polygon is used (option ``polygons=all`` takes their union).

Split: rows 0-99 are *easy*, rows 100 on are *hard* (option ``split``). The split name is the sample's
``category`` (and ``extra["split"]``), so per-category tables give the paper's Easy and Hard columns.
``id`` is the row's ``id`` field if any, else ``refedit-NNN`` from the row's position in the whole file,
so ids do not depend on the split chosen.

Option ``confine=true`` turns a row whose image path (symlinks and ``..`` followed) leads outside the
dataset's folder into an error; without it such paths are read, and reports embed those images.

Protocol (for judges): SC is judged on the source and the edited image both masked (black outside) by the
target polygon dilated by 7 px (a 15x15 square, as the official cv2.dilate) with ``masked_instruction``;
PQ on the full edited image. ``Sample.mask`` renders the undilated polygon; the VLM judge grows and applies
it (``refine_agent.tools.judges.masking.masked``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

from refine_agent.errors import InputError
from refine_agent.images import DEFAULT_MAX_PIXELS, Image

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
    extra_fields,
    get_id,
    get_str,
    image_ref,
    limited,
    missing_field,
    samples_from_rows,
)
from .sources import open_records

KIND = "refedit"
EXPECTED = ("RefEdit-Bench as a local Hugging Face dataset (parquet or save_to_disk arrow) or a JSON/JSONL file, "
            "with input_image, editing_instruction, edit_instruction_single and mask (polygon)")
OPTIONS = {"split": "easy (rows 0-99), hard (rows 100+) or all (default)",
           "instruction": "editing_instruction (default, what the protocol edits with) or edit_instruction_single",
           "polygons": "first (default, as the official code) or all (union of the mask's polygons)",
           **CONFINE_OPTION}
INSTRUCTIONS = ("editing_instruction", "edit_instruction_single")
EASY_ROWS = 100
MASK_DILATION_PX = 7
Polygon = tuple[tuple[float, float], ...]


def load(path: str, *, limit: int | None = None, seed: int = 0, options: dict[str, Any] | None = None) -> Dataset:
    opts = check_options(KIND, options, OPTIONS)
    split = choice(KIND, "split", opts.get("split", "all"), ("easy", "hard", "all"))
    field = choice(KIND, "instruction", opts.get("instruction", INSTRUCTIONS[0]), INSTRUCTIONS)
    which = choice(KIND, "polygons", opts.get("polygons", "first"), ("first", "all"))
    root = require_path(path, KIND, EXPECTED)
    what = f"{KIND} ({root})"
    rec = open_records(root, what, EXPECTED, required=("mask",), split="test")
    confine = confine_root(KIND, opts, rec.base)
    size = {"all": rec.size, "easy": min(rec.size, EASY_ROWS), "hard": max(0, rec.size - EASY_ROWS)}[split]

    def rows() -> Iterator[tuple[int, Row | RowError]]:
        for index, _, row in rec.rows():
            if split == "easy" and index >= EASY_ROWS:
                return
            if split in ("all", _split_of(index)):
                yield index, row

    def make(index: int, row: Row) -> Sample:
        return _sample(index, row, rec.base, field, which, confine)

    samples = samples_from_rows(rows(), make, _id)
    categories = ["easy", "hard"] if split == "all" else [split]
    info = {"format": KIND, "path": str(root), "split": split, "instruction": field, "polygons": which,
            "mask_dilation_px": MASK_DILATION_PX,
            "protocol": "SC on source and edited masked by the dilated target polygon, with masked_instruction; "
                        "PQ on the full edited image; overall = sqrt(min(SC) * min(PQ)); easy and hard reported "
                        "separately"}
    return Dataset(spec=f"{KIND}:{path}", rows=limited(samples, limit), size=capped(size, limit),
                   categories=categories, info=info)


def _split_of(index: int) -> str:
    return "easy" if index < EASY_ROWS else "hard"


def _id(index: int, row: Row) -> str:
    return get_id(row) or f"refedit-{index:03d}"


def _sample(index: int, row: Row, base: Path, field: str, which: str, confine: Path | None = None) -> Sample:
    sid = _id(index, row)
    image = row.get("input_image", row.get("image"))
    source = image_ref(image, [base], f"{sid} input_image", confine)
    if row.get("mask") is None:
        raise missing_field(row, "mask")
    polygons = parse_polygons(row.get("mask"))
    used = polygons[:1] if which == "first" else polygons
    if all(max(x for x, _ in poly) < 0 or max(y for _, y in poly) < 0 for poly in used):
        which_text = "the mask polygon" if len(used) == 1 else "every mask polygon"
        raise RowError(f"{which_text} lies entirely outside the image (all its x or all its y coordinates are "
                       "negative)")
    mask = PolygonMaskRef(polygons=tuple(used), source=source, name=f"{sid} mask")
    single = get_str(row, "edit_instruction_single", required=field == "edit_instruction_single")
    split = _split_of(index)
    extra = extra_fields(row, ("id", "input_image", "image", "mask", *INSTRUCTIONS))
    extra["split"] = split
    return Sample(id=sid, instruction=get_str(row, field) or "", source=source, category=split, mask=mask,
                  context={"masked_instruction": single} if single else {}, extra=extra)


def parse_polygons(value: Any) -> list[Polygon]:
    """Polygons from a mask field (see the module docstring for the accepted shapes); RowError if invalid."""
    if value is None:
        raise RowError("missing field 'mask'")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"mask is not valid JSON ({exc})") from exc
    bad = _non_finite(value)
    if bad is not None:
        raise RowError(f"mask has a coordinate that is not a finite number ({bad!r})")
    out: list[Polygon] = []
    _collect(value, out)
    return out


def _non_finite(value: Any, depth: int = 0) -> float | None:
    """The first NaN or infinite number among the mask's coordinates (JSON allows NaN and Infinity), else None."""
    if isinstance(value, float) and not np.isfinite(value):
        return value
    if isinstance(value, (list, tuple)) and depth < 8:
        for v in value:
            bad = _non_finite(v, depth + 1)
            if bad is not None:
                return bad
    return None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _collect(value: Any, out: list[Polygon]) -> None:
    if not isinstance(value, (list, tuple)) or not value:
        raise RowError(f"mask should be a list of polygon coordinates, got {describe_type(value)}")
    if all(_is_num(v) for v in value):  # flat [x1, y1, x2, y2, ...]
        if len(value) % 2 or len(value) < 6:
            raise RowError(f"a mask polygon needs an even number (>= 6) of coordinates, got {len(value)}")
        out.append(tuple((float(value[i]), float(value[i + 1])) for i in range(0, len(value), 2)))
    elif all(isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_num(c) for c in v) for v in value):
        if len(value) < 3:
            raise RowError(f"a mask polygon needs at least 3 points, got {len(value)}")
        out.append(tuple((float(x), float(y)) for x, y in value))
    else:
        for v in value:
            _collect(v, out)


def render_polygons(polygons: tuple[Polygon, ...] | list[Polygon], size: tuple[int, int]) -> Image:
    """A binary mask Image of ``size`` (width, height): white inside any polygon, black outside."""
    w, h = size
    coords = [c for poly in polygons for pt in poly for c in pt]
    sx, sy = (w, h) if coords and max(coords) <= 1.0 else (1.0, 1.0)  # normalised 0-1 coordinates
    canvas = PILImage.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon([(x * sx, y * sy) for x, y in poly], fill=255, outline=255)
    return Image(np.repeat(np.asarray(canvas)[:, :, None], 3, axis=2))


class PolygonMaskRef(ImageRef):
    """A mask rendered from polygons only when loaded, at the source image's size."""

    polygons: tuple[Polygon, ...]
    source: ImageRef

    def load(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image:
        size = self.source.load(max_pixels).size
        mask = render_polygons(self.polygons, size)
        if not mask.array.any():  # e.g. coordinates all past the right or bottom edge: nothing to judge
            raise InputError(f"{self.name}: the polygon lies entirely outside the {size[0]}x{size[1]} image")
        return mask

