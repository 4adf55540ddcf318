"""``gedit:PATH``: GEdit-Bench (stepfun-ai/GEdit-Bench) from local disk.

PATH is the dataset as the hub holds it (a ``save_to_disk`` folder: ``state.json``, ``dataset_info.json``,
``data-0000N-of-0000M.arrow``), a ``save_to_disk`` of the DatasetDict (``dataset_dict.json`` + ``train/``),
a parquet export (``data/*.parquet``) or a single .parquet/.arrow file.

Columns used: ``key`` (the id; EvalScope's offline files use the same id), ``task_type`` (the category),
``instruction``, ``instruction_language`` (``en`` or ``cn``; rows are kept for the chosen language only)
and ``input_image`` (a Hugging Face Image struct ``{bytes, path}``; ``input_image_raw`` is used only when
``input_image`` is empty). ``Intersection_exist``, when present, goes to ``extra["intersection"]`` (GEdit
reports an intersection subset). The official score averages each task type first, then the 11 means.
A row whose language is neither ``en`` nor ``cn`` is an error record, not dropped.

Option ``confine=true`` turns a row whose image path (symlinks and ``..`` followed) leads outside the
dataset's folder into an error; without it such paths are read, and reports embed those images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import Dataset, ImageRef, Sample, SampleError, require_path
from .rows import (
    CONFINE_OPTION,
    Row,
    RowError,
    capped,
    check_options,
    choice,
    confine_root,
    get_id,
    get_str,
    image_ref,
    limited,
    missing_field,
    samples_from_rows,
)
from .tables import column_values, iter_rows, require_columns, table_files

KIND = "gedit"
EXPECTED = ("GEdit-Bench as a local Hugging Face dataset (save_to_disk folder with .arrow files, or parquet "
            "files) with columns key, task_type, instruction, instruction_language, input_image")
TASK_TYPES = ["background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
              "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer"]
LANGUAGES = ("en", "cn")
OPTIONS = {"language": "instruction language: en (default) or cn", **CONFINE_OPTION}
COLUMNS = ["key", "task_type", "instruction", "instruction_language", "input_image", "input_image_raw",
           "Intersection_exist"]


def load(path: str, *, limit: int | None = None, seed: int = 0, options: dict[str, Any] | None = None) -> Dataset:
    opts = check_options(KIND, options, OPTIONS)
    language = choice(KIND, "language", opts.get("language", "en"), LANGUAGES, aliases={"zh": "cn"})
    root = require_path(path, KIND, EXPECTED)
    what = f"{KIND} ({root})"
    files = table_files(root, what=what, expected=EXPECTED)
    require_columns(files, ["key", "instruction", "input_image"], what, EXPECTED)
    langs = column_values(files, "instruction_language", what)
    size = sum(1 for v in langs if _kept(v, language))
    base = root if root.is_dir() else root.parent
    confine = confine_root(KIND, opts, base)

    def rows() -> Iterator[tuple[int, Row]]:
        for index, (_, row) in enumerate(iter_rows(files, what, COLUMNS)):
            if _kept(row.get("instruction_language"), language):
                yield index, row

    def make(index: int, row: Row) -> Sample:
        return _sample(index, row, base, language, confine)

    samples: Iterator[Sample | SampleError] = samples_from_rows(rows(), make, lambda i, r: get_id(r, "key"))
    return Dataset(spec=f"{KIND}:{path}", rows=limited(samples, limit), size=capped(size, limit),
                   categories=list(TASK_TYPES),
                   info={"format": KIND, "path": str(root), "language": language,
                         "macro": "mean of the task-type means (official)"})


def _lang(value: Any) -> str:
    # Rows without a language tag count as English.
    text = str(value or "en").strip().lower()
    return "cn" if text == "zh" else text


def _kept(value: Any, language: str) -> bool:
    # A row in an unknown language is kept so that it becomes an error record instead of vanishing.
    lang = _lang(value)
    return lang == language or lang not in LANGUAGES


def _sample(index: int, row: Row, base: Path, language: str, confine: Path | None = None) -> Sample:
    sid = get_id(row, "key")
    if sid is None:
        raise missing_field(row, "key")
    if _lang(row.get("instruction_language")) not in LANGUAGES:
        raise RowError(f"field 'instruction_language' should be en or cn, got {row.get('instruction_language')!r}")
    image = row.get("input_image") or row.get("input_image_raw")
    source: ImageRef = image_ref(image, [base], f"{sid} input_image", confine)
    extra: dict[str, Any] = {"language": language}
    if row.get("Intersection_exist") is not None:
        extra["intersection"] = bool(row["Intersection_exist"])
    return Sample(id=sid, instruction=get_str(row, "instruction") or "", source=source,
                  category=get_str(row, "task_type"), extra=extra)
