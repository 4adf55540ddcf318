"""``refine-agent compare``: two or more run directories of one dataset, side by side.

The first run is the baseline A; every other run B is compared with it sample by sample (aligned by sample
id) on the final result each run kept at its own budget, scored by its own evaluation judge: per-sample delta
= B's final overall - A's, over the samples scored in both. A sample missing from a run, or with no scored
final there (a load error, a failed edit, a failed judgment), is counted per run and per pair, never dropped
in silence. Each run's cost/quality curves (``compare_points``) put strategies on one axis of editor calls.

The statistics are ``metrics``' own: a pair of finals is an ``Outcome`` whose ``one_shot`` is A's final and
whose ``final`` is B's, so ``compare`` and ``by_category`` give the mean delta with its paired bootstrap CI,
the Wilcoxon p-value and win/tie/loss rates exactly as ``summary.json`` defines them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refine_agent import __version__
from refine_agent.cache import identity_hash
from refine_agent.errors import InputError
from refine_agent.store import open_run

from .compare_points import compute_points
from .evaluate import OPTIMISTIC_WARNING, summarize_with_outcomes
from .metrics import TIE_EPS, Outcome, budget_row, by_category, compare, finite
from .report_html import identity

NOTES = {
    "pairs": "each run B against the baseline A over the samples both have a record of: delta = B's final overall - "
             "A's (n_scored_pairs: scored in both); a/b: each run's mean final overall and pass rate over its scored "
             "samples among them; win/tie/loss: B higher/equal (within 1e-6)/lower; improvement_rate: A failed and "
             "B passed, regression_rate: A passed and B failed; mean_delta_ci95: seeded paired bootstrap; p_value: "
             "Wilcoxon signed-rank",
    "points": "one per by_budget row (strategy depth: at most d re-edit rounds, at the run's width) and per "
              "by_candidates row (strategy width: best of N edits, at the run's depth) of each run's summary",
}
MAX_IDS = 20  # sample ids listed per count in compare.json; the counts cover them all


@dataclass
class RunData:
    """One run, read once: its run.json, its summary and every sample's outcome at the run's own budget."""

    label: str  # "A" is the baseline
    dir: Path
    info: dict[str, Any]
    summary: dict[str, Any]
    outcomes: dict[str, Outcome]  # by sample id, in dataset order
    records: set[str]  # every sample id with a record (done or failed)
    not_replayable: list[str] = field(default_factory=list)

    def scored(self, sid: str) -> Outcome | None:
        """The sample's outcome when its final result has an overall score; None otherwise."""
        o = self.outcomes.get(sid)
        return o if o is not None and o.final.ok and o.final.overall is not None else None

    @property
    def name(self) -> str:
        return f"{self.label} ({self.dir})"


def label(i: int) -> str:
    """A, B, ..., Z, then R27, R28, ..."""
    return chr(ord("A") + i) if i < 26 else f"R{i + 1}"


def check_dirs(run_dirs: Sequence[Path]) -> None:
    if len(run_dirs) < 2:
        raise InputError(f"compare needs two or more run directories (got {len(run_dirs)}); e.g. 'refine-agent "
                         "compare runs/a runs/b', where runs/a is the baseline")
    seen: dict[str, Path] = {}
    for d in run_dirs:
        real = os.path.realpath(d)
        if real in seen:
            same = f"{d} is given twice" if str(d) == str(seen[real]) else f"{seen[real]} and {d} are one folder"
            raise InputError(f"{same}; give each run directory once")
        seen[real] = Path(d)


def dataset_key(info: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs' samples the same: the dataset spec and options, and what the loader made of them
    (e.g. the seed of generated scenes). Not --limit: a shorter run has a subset of the samples."""
    ds = info.get("dataset") or {}
    return {"spec": ds.get("spec"), "options": ds.get("options") or {}, "info": ds.get("info") or {}}


def _describe_dataset(key: dict[str, Any]) -> str:
    seed = key["info"].get("seed") if isinstance(key["info"], dict) else None
    return (f"{key['spec']}" + (f" {json.dumps(key['options'], sort_keys=True)}" if key["options"] else "")
            + (f" (seed {seed})" if seed is not None else ""))


def check_same_dataset(run_dirs: Sequence[Path]) -> None:
    """Before any work: every run's run.json names the baseline's dataset."""
    keys = []
    for d in run_dirs:
        store, info = open_run(d)
        store.close()
        keys.append(dataset_key(info))
    for i, other in enumerate(keys[1:], start=1):
        if json.dumps(other, sort_keys=True, default=str) != json.dumps(keys[0], sort_keys=True, default=str):
            raise InputError(f"the runs are on different datasets: {label(0)} ({run_dirs[0]}) is on "
                             f"{_describe_dataset(keys[0])}, {label(i)} ({run_dirs[i]}) on "
                             f"{_describe_dataset(other)}; compare runs of one dataset (same spec, -D options and, "
                             "for synthetic, --seed)")


def read_run(run_dir: Path, lbl: str) -> RunData:
    """A run's summary and outcomes at its own budget (the store is open only while it is read)."""
    store, info = open_run(run_dir)
    try:
        summary, got, why = summarize_with_outcomes(store, info)  # at the run's own budget
        records = store.finished(include_errors=True)
    finally:
        store.close()
    return RunData(label=lbl, dir=Path(run_dir), info=info, summary=summary,
                   outcomes={o.sample_id: o for o in got}, records=records, not_replayable=why)


def winner(a: Outcome | None, b: Outcome | None) -> str:
    """Who has the higher final overall: "a", "b", "tie" (within TIE_EPS), or "na" unless both are scored."""
    if a is None or b is None:
        return "na"
    d = b.final.overall - a.final.overall  # type: ignore[operator]
    return "b" if d > TIE_EPS else "a" if d < -TIE_EPS else "tie"


def union_ids(runs: Sequence[RunData]) -> list[str]:
    """Every sample id any run has, in dataset order as far as the runs know it."""
    ordered = [sid for r in runs for sid in r.outcomes]
    ordered += sorted(sid for r in runs for sid in r.records)
    return list(dict.fromkeys(ordered))


def pair_outcomes(a: RunData, b: RunData) -> list[Outcome]:
    """A's and B's finals of every sample both have a record of, as Outcome(one_shot=A's, final=B's)."""
    out = []
    for sid, oa in a.outcomes.items():
        ob = b.outcomes.get(sid)
        if ob is not None:
            out.append(Outcome(sample_id=sid, category=oa.category or ob.category, one_shot=oa.final,
                               final=ob.final))
    return out


def _side(outcomes: Sequence[Outcome], b_side: bool) -> dict[str, Any]:
    """One run's mean final overall and pass rate over its scored samples among ``outcomes`` (as
    ``by_category`` counts each side, so the "all" row reads like the category rows)."""
    scores = [o.final if b_side else o.one_shot for o in outcomes]
    scores = [s for s in scores if s.ok]
    overall = [s.overall for s in scores if s.overall is not None]
    passed = [s.passed for s in scores if s.passed is not None]
    return {"mean_overall": sum(overall) / len(overall) if overall else None,
            "pass_rate": sum(passed) / len(passed) if passed else None}


def _renamed(stats: dict[str, Any]) -> dict[str, Any]:
    """``by_category``'s one_shot/final sides are A's and B's here."""
    out = {k: v for k, v in stats.items() if k not in ("one_shot", "final")}
    return {**out, "a": stats.get("one_shot"), "b": stats.get("final")}


def compare_pair(a: RunData, b: RunData, every: Sequence[str]) -> dict[str, Any]:
    """B against A: counts of what could not be paired, then the paired statistics, overall and by category."""
    pairs = pair_outcomes(a, b)
    both = set(a.records) & set(b.records)
    unscored_a = sorted(sid for sid in both if a.scored(sid) is None)
    unscored_b = sorted(sid for sid in both if b.scored(sid) is None)
    missing_a = [sid for sid in every if sid in b.records and sid not in a.records]
    missing_b = [sid for sid in every if sid in a.records and sid not in b.records]
    order = (a.info.get("dataset") or {}).get("categories")
    return {
        "a": a.label, "b": b.label,
        "n_aligned": len(both),  # samples both runs have a record of
        "missing_in_a": len(missing_a), "missing_in_b": len(missing_b),
        "unscored_in_a": len(unscored_a), "unscored_in_b": len(unscored_b),
        "ids": {"missing_in_a": missing_a[:MAX_IDS], "missing_in_b": missing_b[:MAX_IDS],
                "unscored_in_a": unscored_a[:MAX_IDS], "unscored_in_b": unscored_b[:MAX_IDS]},
        "overall": {"n_samples": len(pairs), "a": _side(pairs, False), "b": _side(pairs, True), **compare(pairs)},
        "by_category": {c: _renamed(s) for c, s in by_category(pairs, order).items()},
    }


def run_entry(r: RunData, every: Sequence[str]) -> dict[str, Any]:
    s, info = r.summary, r.info
    top = budget_row(s["by_budget"], s["budget"])
    missing = [sid for sid in every if sid not in r.records]
    unscored = [sid for sid in r.records if r.scored(sid) is None]
    ev = info.get("eval_judge") or {}
    return {
        "label": r.label, "dir": str(r.dir), "name": r.dir.resolve().name,
        "created": info.get("created"),
        "depth": s["budget"], "width": s.get("candidates", 1),
        "tools": info.get("tools") or {},
        "eval_judge": ev.get("identity"), "loop_judge": (info.get("tools") or {}).get("judge"),
        "eval_judge_is_loop_judge": bool(ev.get("is_loop_judge", True)),
        "n_records": len(r.records), "n_expected": s.get("n_expected"), "complete": s.get("complete"),
        "n_scored": len(r.records) - len(unscored), "n_unscored": len(unscored), "n_missing": len(missing),
        "ids": {"unscored": sorted(unscored)[:MAX_IDS], "missing": missing[:MAX_IDS]},
        "mean_overall": top.get("mean_overall"), "mean_overall_ci95": top.get("mean_overall_ci95"),
        "pass_rate": top.get("pass_rate"), "pass_rate_ci95": top.get("pass_rate_ci95"),
        "tool_calls": s.get("tool_calls"), "cost_usd": s.get("cost_usd"),
        "errors": s.get("errors") or {},
        "warnings": [w for w in s.get("warnings") or [] if w != OPTIMISTIC_WARNING],
    }


def show_identity(ident: dict[str, Any] | None) -> str:
    return identity(ident, missing="unknown")


def judge_warnings(runs: Sequence[RunData]) -> list[str]:
    """Scores from different judges are not on one scale; a judge that steered a loop favours that loop."""
    out: list[str] = []
    evals = {r.label: (r.info.get("eval_judge") or {}).get("identity") for r in runs}
    if len({identity_hash(v or {}) for v in evals.values()}) > 1:
        listed = "; ".join(f"{k}: {show_identity(v)}" for k, v in evals.items())
        out.append(f"the runs' evaluation judges differ ({listed}): their scores are not on one scale, so the "
                   "deltas compare judges as much as edits; rescore every run with one judge ('refine-agent "
                   "rejudge RUN_DIR --eval-judge SPEC')")
    loops = {r.label: identity_hash((r.info.get("tools") or {}).get("judge") or {}) for r in runs}
    groups: dict[str, list[str]] = {}
    for r in runs:
        groups.setdefault(identity_hash(evals[r.label] or {}), []).append(r.label)
    for key, scored in groups.items():
        steered = [lbl for lbl, j in loops.items() if j == key]
        if steered:
            who = ", ".join(scored)
            out.append(f"optimistic: {who} {'is' if len(scored) == 1 else 'are'} scored by "
                       f"{show_identity(evals[scored[0]])}, the loop judge of {', '.join(steered)}: "
                       f"{'that loop' if len(steered) == 1 else 'those loops'} kept the rounds this judge liked "
                       "best, so their scores are optimistic and favour them; rescore with an independent judge "
                       "('refine-agent rejudge RUN_DIR --eval-judge SPEC')")
    return out


def run_warnings(runs: Sequence[RunData]) -> list[str]:
    out = []
    for r in runs:
        out += [f"{r.name}: {w}" for w in r.summary.get("warnings") or [] if w != OPTIMISTIC_WARNING]
        if r.not_replayable:
            out.append(f"{r.name}: {len(r.not_replayable)} samples could not be replayed at the run's budget")
    return out


def count_warnings(result: dict[str, Any]) -> list[str]:
    """Samples a run lacks, or could not score, are left out of the deltas: say how many."""
    out = []
    for p in result["pairs"]:
        a, b = p["a"], p["b"]
        gaps = [f"{n} {what}" for n, what in ((p["missing_in_a"], f"missing from {a}"),
                                              (p["missing_in_b"], f"missing from {b}"),
                                              (p["unscored_in_a"], f"not scored in {a}"),
                                              (p["unscored_in_b"], f"not scored in {b}")) if n]
        if gaps:
            out.append(f"{b} vs {a}: samples {', '.join(gaps)}; the deltas cover the "
                       f"{p['overall']['n_scored_pairs']} samples scored in both")
    return out


def compare_runs(run_dirs: Sequence[Path]) -> tuple[dict[str, Any], list[RunData]]:
    """compare.json's numbers for ``run_dirs`` (the first is the baseline), and the runs they came from."""
    check_dirs(run_dirs)
    check_same_dataset(run_dirs)
    runs = [read_run(Path(d), label(i)) for i, d in enumerate(run_dirs)]
    every = union_ids(runs)
    ds = dataset_key(runs[0].info)
    result: dict[str, Any] = {
        "refine_agent_version": __version__,
        "dataset": {"spec": ds["spec"], "options": ds["options"]},
        "baseline": runs[0].label,
        "n_samples": len(every),  # in any run
        "runs": [run_entry(r, every) for r in runs],
        "pairs": [compare_pair(runs[0], r, every) for r in runs[1:]],
        "points": compute_points([(r.label, r.summary) for r in runs]),
        "notes": NOTES,
    }
    result["warnings"] = judge_warnings(runs) + run_warnings(runs) + count_warnings(result)
    return finite(result), runs

