"""Dataset loaders: ``load_dataset("KIND:PATH")`` -> a lazily streamed, sized ``Dataset`` of ``Sample``s.

Loaders read local files only and never download. A bad row becomes a ``SampleError`` and the other rows go
on; a dataset that cannot be read at all (a missing path, an unknown kind or option) is a ``DatasetError``.
Text files may start with a byte-order mark. Image paths in a dataset's files may be absolute or lead out of
its folder; every loader that reads such paths takes option ``confine=true`` to make those rows errors.
Images are read only from regular files (a device, FIFO or folder is a row error) of at most
``refine_agent.images.MAX_IMAGE_BYTES`` (scaled by --max-pixels). The record of a row without a usable id is
named ``#row-N`` (N: its row), and of a row whose id repeats an earlier row's ``#row-N:ID``; a dataset's own id
may not start with ``#row-``, so these names never collide with a real id.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import gedit, iebench, jsonl, reedit, refedit, synthetic
from .base import Dataset, DatasetError, ImageRef, Sample, SampleError, require_path

DATASET_KINDS: dict[str, str] = {
    "synthetic": "built-in synthetic scenes with ground truth; size = --limit (default 100), no path",
    "jsonl": "jsonl:PATH, our manifest (id, source, instruction, ...); join=<spec> joins EvalScope predictions",
    "gedit": "gedit:PATH, GEdit-Bench as a local HF dataset (arrow/parquet); language=en|cn",
    "refedit": "refedit:PATH, RefEdit-Bench (parquet/arrow/JSON) with target masks; split=easy|hard|all",
    "re-edit": "re-edit:PATH, the RE-Edit JSON (reasoning edits; rationale given to judges)",
    "iebench": "iebench:PATH, IE-Bench-4k human MOS for judge evaluation; split=test|train|all",
}
_LOADERS: dict[str, Callable[..., Dataset]] = {
    "synthetic": synthetic.load, "jsonl": jsonl.load, "gedit": gedit.load, "refedit": refedit.load,
    "re-edit": reedit.load, "iebench": iebench.load,
}
_ALIASES = {"reedit": "re-edit", "ie-bench": "iebench", "gedit-bench": "gedit", "refedit-bench": "refedit"}


def parse_spec(spec: str) -> tuple[str, str]:
    """``"KIND:PATH"`` -> (kind, path); ``"synthetic"`` -> ("synthetic", "")."""
    kind, _, path = spec.strip().partition(":")
    kind = kind.strip().lower()
    kind = _ALIASES.get(kind, kind)
    if kind not in _LOADERS:
        known = ", ".join(DATASET_KINDS)
        raise DatasetError(f"unknown dataset kind '{spec.partition(':')[0]}' in '{spec}'; use KIND:PATH with KIND "
                           f"one of: {known} (or just 'synthetic')")
    return kind, path.strip()


def load_dataset(spec: str, *, limit: int | None = None, seed: int = 0,
                 options: dict[str, Any] | None = None) -> Dataset:
    """Open a dataset by spec, e.g. ``gedit:/data/GEdit-Bench`` or ``jsonl:out/manifest.jsonl``.

    ``limit`` keeps the first N samples (for ``synthetic`` it is the size); ``seed`` seeds generated data;
    ``options`` are the loader's options (see each module). Nothing is decoded until a sample's images are
    loaded.
    """
    kind, path = parse_spec(spec)
    if kind != "synthetic" and not path:
        raise DatasetError(f"{kind}: give the local path, as {kind}:PATH ({DATASET_KINDS[kind]})")
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    if kind == "jsonl":
        ds = jsonl.load(path, limit=limit, seed=seed, options=options, load_benchmark=load_dataset)
    else:
        ds = _LOADERS[kind](path, limit=limit, seed=seed, options=options)
    ds.spec = spec
    return ds


__all__ = ["DATASET_KINDS", "Dataset", "DatasetError", "ImageRef", "Sample", "SampleError", "load_dataset",
           "parse_spec", "require_path"]
