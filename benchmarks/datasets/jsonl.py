"""``jsonl:PATH``: our manifest, or EvalScope's offline predictions joined to a benchmark.

**Manifest** (what ``refine-agent datasets make synthetic --out DIR`` writes). PATH is the ``.jsonl`` file or
a directory holding ``manifest.jsonl``. One JSON object per line::

    {"id": "s1", "source": "images/s1.png", "instruction": "make the car blue",
     "category": "color_alter", "edited": "edits/s1.png", "context": {...}, "difficulty": "easy"}

``id`` (string or integer), ``source`` and ``instruction`` are required; ``category``, ``edited`` (an existing
edit to refine), ``mask`` and ``context`` (an object shown to judges and critics) are optional; any other
field goes to ``extra``. Image paths are relative to the manifest's directory (or to option ``root``).
They may also be absolute or lead out of that folder (``../``, symlinks), and reports embed the images they
name; option ``confine=true`` turns such a row into an error (the dataset root is ``root``, else the
manifest's directory).

**EvalScope offline format** (option ``join=<benchmark spec>``, e.g. ``join=gedit:/data/gedit``): each line is
``{"id": ..., "image_path": ...}``, the edited image a model produced for that benchmark id. The benchmark's
samples are streamed and each one with a line gets ``edited`` = that image. Benchmark samples without a line
are skipped (option ``missing=error`` reports them instead); lines whose id is not in the benchmark come out
as errors at the end. Relative ``image_path``s are looked up under ``root`` (default: the file's directory),
then the current directory, as EvalScope writes them relative to where it ran. Other options are passed
to the joined benchmark's loader (e.g. ``language=cn`` for gedit); ``confine`` applies to both files.

A UTF-8 byte-order mark is accepted (as is UTF-16 or UTF-32 with one). A line that is not JSON, not an
object, or lacks a field becomes an error record naming its line; the other lines go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import Dataset, DatasetError, ImageRef, Sample, SampleError, placeholder_id, require_path
from .rows import (
    CONFINE_OPTION,
    Row,
    RowError,
    capped,
    choice,
    confine_root,
    count_jsonl_records,
    describe_type,
    extra_fields,
    get_id,
    get_str,
    image_ref,
    iter_json_records,
    limited,
    missing_field,
    samples_from_rows,
)

KIND = "jsonl"
EXPECTED = ("a JSON Lines manifest (one object per line with id, source, instruction), or a directory holding "
            "manifest.jsonl")
OPTIONS = {"root": "directory that relative image paths are resolved against (default: the file's directory)",
           "join": "benchmark spec (e.g. gedit:/data/gedit) whose samples get each line's image_path as edited",
           "missing": "with join: skip (default) or error for benchmark samples without a line",
           **CONFINE_OPTION}
MANIFEST_FIELDS = ("id", "source", "instruction", "category", "edited", "mask", "context")

Loader = Callable[..., Dataset]


def load(path: str, *, limit: int | None = None, seed: int = 0, options: dict[str, Any] | None = None,
         load_benchmark: Loader | None = None) -> Dataset:
    """Open a manifest, or with option ``join`` the benchmark that ``load_benchmark`` (``load_dataset``) opens
    from the joined spec, with this file's images as its edits."""
    opts = dict(options or {})
    own = {k: opts.pop(k) for k in list(opts) if k in OPTIONS}
    if opts and "join" not in own:
        raise DatasetError(f"{KIND}: unknown option(s) {', '.join(sorted(opts))}; valid options: "
                           + ", ".join(f"{k} ({v})" for k, v in OPTIONS.items()))
    if "missing" in own and "join" not in own:
        raise DatasetError(f"{KIND}: option missing= needs join=<benchmark spec>")
    p = require_path(path, KIND, EXPECTED)
    if p.is_dir():
        p = require_path(p / "manifest.jsonl", KIND, EXPECTED)
    bases = [_root_option(own["root"])] if own.get("root") else [p.parent]
    confine = confine_root(KIND, own, bases[0])
    if "join" in own:
        if load_benchmark is None:  # the registry passes itself in: this module never imports it back
            raise DatasetError(f"{KIND}: join= needs the benchmark loader; open the file with "
                               f"load_dataset('jsonl:{path}', options={{'join': ...}})")
        missing = choice(KIND, "missing", own.get("missing", "skip"), ("skip", "error"))
        if "confine" in own:
            opts["confine"] = own["confine"]  # the benchmark's own image paths are held to its root too
        bench = load_benchmark(str(own["join"]), limit=None, seed=seed, options=opts)
        return _join(p, Paths(bases + [Path.cwd()], confine), bench, missing, path, limit)
    size = count_jsonl_records(p)
    records = enumerate(iter_json_records(p, KIND))
    where = Paths(bases, confine)
    samples = samples_from_rows(records, lambda i, r: _manifest_sample(i, r, where), lambda i, r: get_id(r))
    return Dataset(spec=f"{KIND}:{path}", rows=limited(samples, limit), size=capped(size, limit),
                   info={"format": KIND, "path": str(p)})


def _root_option(value: Any) -> Path:
    """Option ``root``, checked once up front: a missing folder would otherwise fail every row on its own."""
    root = Path(str(value)).expanduser()
    try:
        if root.is_dir():
            return root
        problem = "is not a folder" if root.exists() else "does not exist"
    except (OSError, ValueError) as exc:  # a name too long, a NUL byte
        problem = f"cannot be used ({getattr(exc, 'strerror', None) or exc})"
    raise DatasetError(f"{KIND}: option root={root} {problem}; give the folder that the manifest's relative image "
                       "paths are under (default: the manifest's own folder)")


@dataclass(frozen=True)
class Paths:
    """Where relative image paths are looked up, and the root they must stay under (None: anywhere)."""

    bases: list[Path]
    confine: Path | None = None

    def image(self, value: Any, name: str) -> ImageRef:
        return image_ref(value, self.bases, name, self.confine)


def _manifest_sample(index: int, row: Row, where: Paths) -> Sample:
    sid = get_id(row)
    if sid is None:
        raise missing_field(row, "id")
    if "source" not in row and "image_path" in row:
        raise RowError("has image_path but no source: an EvalScope predictions file needs the option "
                       "join=<benchmark spec>")
    context = row.get("context", {})
    if not isinstance(context, dict):
        raise RowError(f"field 'context' should be an object, got {describe_type(context)}")
    return Sample(id=sid, instruction=get_str(row, "instruction") or "",
                  source=where.image(get_str(row, "source"), f"{sid} source"),
                  category=get_str(row, "category", required=False),
                  edited=_optional_image(row, "edited", where, sid), mask=_optional_image(row, "mask", where, sid),
                  context=context, extra=extra_fields(row, MANIFEST_FIELDS))


def _optional_image(row: Row, key: str, where: Paths, sid: str) -> ImageRef | None:
    value = get_str(row, key, required=False)
    return None if value is None else where.image(value, f"{sid} {key}")


def _predictions(p: Path, where: Paths) -> tuple[dict[str, ImageRef | str], list[SampleError]]:
    """id -> the edited image (or why it is bad), and errors for lines without a usable id."""
    preds: dict[str, ImageRef | str] = {}
    errors: list[SampleError] = []
    for index, row in enumerate(iter_json_records(p, KIND)):
        try:
            if isinstance(row, RowError):
                raise row
            sid = get_id(row)
            if sid is None:
                raise missing_field(row, "id")
        except RowError as exc:
            errors.append(SampleError(id=placeholder_id(index), index=index, error=f"row {index}: {exc}"))
            continue
        if sid in preds:
            errors.append(SampleError(id=placeholder_id(index, sid), index=index,
                                      error=f"row {index}: duplicate id '{sid}'"))
            continue
        try:
            value = row.get("image_path", row.get("edited"))
            if value is None:
                raise missing_field(row, "image_path")
            preds[sid] = where.image(value, f"{sid} image_path")
        except RowError as exc:
            preds[sid] = f"row {index}: {exc}"
    return preds, errors


def _join(p: Path, where: Paths, bench: Dataset, missing: str, path: str, limit: int | None) -> Dataset:
    preds, errors = _predictions(p, where)
    order = {sid: i for i, sid in enumerate(preds)}

    def rows() -> Iterator[Sample | SampleError]:
        yield from errors
        unmatched = dict(preds)
        for position, item in enumerate(bench):
            pred = unmatched.pop(item.id, None)
            if pred is None:
                if missing == "error":
                    error = item.error if isinstance(item, SampleError) else "no line for this id in the predictions"
                    yield SampleError(id=item.id, index=position, error=f"{item.id}: {error}", kind="missing_edit")
                continue
            if isinstance(item, SampleError):
                yield item
            elif isinstance(pred, str):
                yield SampleError(id=item.id, index=order[item.id], error=pred)
            else:
                yield item.model_copy(update={"edited": pred})
        for sid in unmatched:
            yield SampleError(id=sid, index=order[sid], kind="unknown_id",
                              error=f"{sid}: no sample with this id in {bench.spec}")

    size = len(preds) + len(errors) if missing == "skip" else None
    info = {"format": KIND, "path": str(p), "join": bench.spec, "benchmark": bench.info}
    return Dataset(spec=f"{KIND}:{path}", rows=limited(rows(), limit), size=capped(size, limit),
                   categories=bench.categories, info=info)
