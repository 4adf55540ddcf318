"""``re-edit:PATH``: the RE-Edit reasoning-edit benchmark, one JSON file.

PATH is the JSON file: a list of rows, an object holding one list (``{"data": [...]}``), or an object of lists
keyed by subset (``{"物理": [...], ...}``); a directory holding a single .json/.jsonl file, or a JSON Lines
file, also works. Row fields (as released):

- ``subset``: the category (the release uses Chinese names: 物理 physics, 环境 environment, 社会 social,
  因果 causal, 指代 referring);
- ``src_img_b64`` (base64 image, a ``data:`` prefix is allowed) or ``original_image_path`` (relative to the
  JSON file's directory); the embedded image wins when both are present;
- ``edit_instruction_en`` (the instruction), ``original_description_en`` and ``rationale_short_en``; both go
  to ``Sample.context`` as ``original_description`` and ``rationale``: RE-Edit's yes/no judge reads the
  rationale as extra context. Option ``language=zh`` uses ``edit_instruction``, ``original_description``
  and ``rationale_short`` instead;
- anything else (``difficulty``, ``tags``, ``seed``, ``original_image_path``, ...) goes to ``extra``.

The release has no id field, so ``id`` is the row's ``id`` if present, else ``re-edit-NNNNN-<subset>`` from
the row's position in the file (the release names its images ``NNNNN_<subset>_<difficulty>.png`` the same
way). The whole JSON is parsed at load time (it embeds the images); images are decoded only when used.
Option ``confine=true`` turns a row whose ``original_image_path`` (symlinks and ``..`` followed) leads
outside the JSON file's folder into an error; without it such paths are read, and reports embed the images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Dataset, DatasetError, ImageRef, Sample, SampleError, require_path
from .rows import (
    CONFINE_OPTION,
    Row,
    RowError,
    b64_image_ref,
    capped,
    check_options,
    choice,
    confine_root,
    extra_fields,
    get_id,
    get_str,
    image_ref,
    iter_json_records,
    limited,
    samples_from_rows,
)
from .sources import JSON_SUFFIXES

KIND = "re-edit"
EXPECTED = ("the RE-Edit JSON file (a list of rows with subset, edit_instruction_en, original_description_en, "
            "rationale_short_en and src_img_b64 or original_image_path)")
OPTIONS = {"language": "en (default, the *_en fields) or zh", **CONFINE_OPTION}
FIELDS = {"en": ("edit_instruction_en", "original_description_en", "rationale_short_en"),
          "zh": ("edit_instruction", "original_description", "rationale_short")}


def load(path: str, *, limit: int | None = None, seed: int = 0, options: dict[str, Any] | None = None) -> Dataset:
    opts = check_options(KIND, options, OPTIONS)
    language = choice(KIND, "language", opts.get("language", "en"), tuple(FIELDS), aliases={"cn": "zh"})
    root = require_path(path, KIND, EXPECTED)
    file = _json_path(root)
    confine = confine_root(KIND, opts, file.parent)
    records = list(iter_json_records(file, f"{KIND} ({file})", group_key="subset"))
    categories = list(dict.fromkeys(r["subset"] for r in records if isinstance(r, dict)
                                    and isinstance(r.get("subset"), str)))

    def make(index: int, row: Row) -> Sample:
        return _sample(index, row, file.parent, language, confine)

    samples: Iterator[Sample | SampleError] = samples_from_rows(enumerate(records), make, _id)
    return Dataset(spec=f"{KIND}:{path}", rows=limited(samples, limit), size=capped(len(records), limit),
                   categories=categories or None,
                   info={"format": KIND, "path": str(file), "language": language,
                         "judge": "yes/no questions with context['rationale'] as extra context"})


def _json_path(root: Path) -> Path:
    if root.is_file():
        return root
    found = sorted(p for s in JSON_SUFFIXES for p in root.glob(f"*{s}"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DatasetError(f"{KIND}: cannot tell which JSON file to read in {root} (found: {names}); pass the "
                           f"file itself. Expected {EXPECTED}")
    return found[0]


def _id(index: int, row: Row) -> str:
    sid = get_id(row)
    if sid is not None:
        return sid
    subset = get_str(row, "subset")
    return f"re-edit-{index:05d}-{subset}"


def _sample(index: int, row: Row, base: Path, language: str, confine: Path | None = None) -> Sample:
    sid = _id(index, row)
    instruction_key, description_key, rationale_key = FIELDS[language]
    b64 = row.get("src_img_b64")
    source: ImageRef
    if b64:
        source = b64_image_ref(b64, f"{sid} src_img_b64")
    elif row.get("original_image_path") is not None:
        source = image_ref(get_str(row, "original_image_path"), [base], f"{sid} original_image_path", confine)
    else:
        raise RowError("has neither src_img_b64 nor original_image_path")
    context = {k: v for k, v in (("original_description", get_str(row, description_key, required=False)),
                                 ("rationale", get_str(row, rationale_key, required=False))) if v}
    used = ("id", "subset", "src_img_b64", *FIELDS[language])
    return Sample(id=sid, instruction=get_str(row, instruction_key) or "", source=source,
                  category=get_str(row, "subset"), context=context, extra=extra_fields(row, used))
