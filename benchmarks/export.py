"""``refine-agent export``: one row per sample x round x candidate, as CSV, Parquet or JSON lines, for pandas.

A round of a best-of-N run (``--candidates N``) has a row per candidate, with ``chosen`` true for the one the
round kept; a round with a single edit is its candidate 0. Scores come from the loop judge (``overall``,
``passed``, ``status``) and, when it differs, from the evaluation judge (``eval_*``). Samples that failed to
load get one row with ``round`` empty.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refine_agent.errors import InputError, MissingExtraError
from refine_agent.store import RunStore
from refine_agent.types import Verdict

from .evaluate import eval_key
from .metrics import score_of

FORMATS = ("csv", "parquet", "jsonl")
COLUMNS = ("sample_id", "round", "candidate", "chosen", "seed", "category", "instruction", "round_instruction",
           "base", "base_round", "image", "overall", "passed", "status", "sc", "pq", "eval_overall", "eval_passed",
           "eval_status", "is_best", "stop_reason", "critique", "seconds", "cost_usd", "error")


def rows(store: RunStore, run_info: dict[str, Any]) -> Iterator[dict[str, Any]]:
    key = eval_key(run_info)
    for rec in store.iter_samples():
        base = {"sample_id": rec.sample_id, "category": rec.category, "instruction": rec.instruction}
        if rec.trajectory is None:
            yield {**dict.fromkeys(COLUMNS), **base, "status": rec.error_kind or "error", "error": rec.error}
            continue
        t = rec.trajectory
        evals: dict[int, Verdict] = store.evals(key, rec.sample_id) if key else {}
        by_candidate = store.candidate_evals(key, rec.sample_id, t.widest) if key else {}
        for r in t.rounds:
            shared = {**base, "round": r.index, "round_instruction": r.instruction, "base": r.base,
                      "base_round": r.base_round, "stop_reason": t.stop_reason.value,
                      "critique": r.critique.instruction if r.critique else None}
            edits: list[Any] = r.candidates or [r]  # a single edit is the round's candidate 0
            for k, c in enumerate(edits):
                chosen = k == r.chosen if r.candidates else r.image is not None
                loop = score_of(c.verdict)
                ev = score_of((by_candidate.get((r.index, k)) if r.candidates else evals.get(r.index)) if key
                              else c.verdict)
                yield {**shared, "candidate": k, "chosen": chosen, "seed": c.seed,
                       "image": str(store.image_path(c.image).relative_to(store.dir)) if c.image else None,
                       "overall": loop.overall, "passed": loop.passed, "status": loop.status, "sc": loop.sc,
                       "pq": loop.pq, "eval_overall": ev.overall, "eval_passed": ev.passed, "eval_status": ev.status,
                       "is_best": r.index == t.best_round and chosen,
                       "seconds": round(sum(c.seconds.values()), 6), "cost_usd": c.usage.cost_usd,
                       "error": c.error}


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, not '{fmt}'")


def export(store: RunStore, run_info: dict[str, Any], fmt: str, out_dir: Path | None = None) -> Path:
    """Write ``rounds.<fmt>`` to ``out_dir`` (default RUN_DIR/export); image paths stay relative to the run."""
    check_format(fmt)
    out = (out_dir if out_dir is not None else store.dir / "export") / f"rounds.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        _write(tmp, fmt, store, run_info)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _write(tmp: Path, fmt: str, store: RunStore, run_info: dict[str, Any]) -> None:
    if fmt == "csv":
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows(store, run_info):
                writer.writerow(row)
    elif fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows(store, run_info):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        _write_parquet(tmp, rows(store, run_info))


def _write_parquet(path: Path, data: Iterator[dict[str, Any]], batch: int = 2048) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise MissingExtraError("pyarrow", "bench", "exporting parquet") from None
    schema = pa.schema([
        ("sample_id", pa.string()), ("round", pa.int64()), ("candidate", pa.int64()), ("chosen", pa.bool_()),
        ("seed", pa.int64()), ("category", pa.string()), ("instruction", pa.string()),
        ("round_instruction", pa.string()), ("base", pa.string()), ("base_round", pa.int64()), ("image", pa.string()),
        ("overall", pa.float64()), ("passed", pa.bool_()), ("status", pa.string()), ("sc", pa.float64()),
        ("pq", pa.float64()), ("eval_overall", pa.float64()), ("eval_passed", pa.bool_()),
        ("eval_status", pa.string()), ("is_best", pa.bool_()), ("stop_reason", pa.string()),
        ("critique", pa.string()), ("seconds", pa.float64()), ("cost_usd", pa.float64()), ("error", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        chunk: list[dict[str, Any]] = []
        for row in data:
            chunk.append(row)
            if len(chunk) >= batch:
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
