"""Turn a run directory into numbers: replay each stored trajectory at every budget, score round 0 and the
final round with the evaluation judge, and assemble ``summary.json`` / ``ablation.json``.

Reads the store one sample at a time, so memory stays flat however large the run.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from refine_agent.loop import LoopPolicy
from refine_agent.store import RunStore
from refine_agent.types import StopReason, Verdict

from .metrics import (
    Outcome,
    Score,
    budget_stats,
    by_category,
    category_averages,
    compare,
    count_errors,
    finite,
    score_of,
)
from .replay import NotReplayable, replay

OPTIMISTIC_WARNING = ("the evaluation judge is the loop judge: the loop kept the round this judge liked best, so "
                      "the measured gain is optimistic; rescore with 'refine-agent rejudge RUN_DIR --eval-judge "
                      "SPEC' using an independent judge")


def eval_key(run_info: dict[str, Any]) -> str | None:
    """The evals-table key of the run's evaluation judge, or None when it is the loop judge."""
    ev = run_info.get("eval_judge") or {}
    return None if ev.get("is_loop_judge", True) else ev["key"]


def collect(store: RunStore, run_info: dict[str, Any], budgets: list[int], policy: LoopPolicy | None = None
            ) -> tuple[dict[int, list[Outcome]], Counter[str], dict[str, Any]]:
    """Outcomes per budget, sample errors by kind, and run totals (calls, cost)."""
    run_policy = LoopPolicy.model_validate(run_info["config"]["policy"])
    judge_key = eval_key(run_info)
    per_budget: dict[int, list[Outcome]] = {b: [] for b in budgets}
    errors: Counter[str] = Counter()
    totals: dict[str, Any] = {"tool_calls": {"editor": 0, "judge": 0, "critic": 0}, "cost_usd": 0.0,
                              "n_samples": 0, "not_replayable": []}
    for rec in store.iter_samples():
        totals["n_samples"] += 1
        if rec.status != "done" or rec.trajectory is None:
            errors[rec.error_kind or "error"] += 1
            continue
        traj = rec.trajectory
        for kind, n in traj.usage.calls.items():
            totals["tool_calls"][kind] = totals["tool_calls"].get(kind, 0) + n
        totals["cost_usd"] += traj.usage.cost_usd
        if not traj.rounds or traj.rounds[0].image is None:
            errors["editor_failed"] += 1
            continue
        count_loop_failures(traj, errors, judge_key is None)
        evals: dict[int, Verdict] | None = store.evals(judge_key, rec.sample_id) if judge_key else None
        scores: dict[int, Score] = {}  # one Score per round, shared by every budget's outcome
        category = sys.intern(rec.category) if rec.category else None
        if evals is not None:
            totals["eval_calls"] = totals.get("eval_calls", 0) + len(evals)
            totals["cost_usd"] += sum(v.usage.cost_usd for v in evals.values())

        for b in budgets:
            try:
                rp = replay(traj, b, policy, run_policy)
            except NotReplayable as exc:
                totals["not_replayable"].append(str(exc))
                continue
            final = rp.best_round if rp.best_round is not None else 0
            for index in (0, final):
                if index not in scores:
                    scores[index] = score_of(_judged(traj, evals, index))
            per_budget[b].append(Outcome(
                sample_id=rec.sample_id, category=category, one_shot=scores[0], final=scores[final],
                final_round=final, rounds_used=len(rp.rounds) - 1, calls=_shared(rp.calls_by_kind),
                cost_usd=rp.cost_usd, seconds=rp.tool_seconds))
    return per_budget, errors, totals


_CALLS: dict[tuple[tuple[str, int], ...], dict[str, int]] = {}
LATE_FAILURES = {StopReason.critic_failed: "loop_critic_failed",
                 StopReason.controller_failed: "loop_controller_failed"}


def count_loop_failures(traj: Any, errors: Counter[str], evaluated_by_loop_judge: bool) -> None:
    """What failed inside a sample that still has a result: every loop judgment that gave no score, every
    re-edit that failed (a controller may go on after one), and a critique or controller turn that ended the
    loop early. Round 0's judgment is left to ``eval_one_shot_*`` when it is also the evaluation."""
    for rnd in traj.rounds:
        v = rnd.verdict
        if v is not None and not v.ok and not (rnd.index == 0 and evaluated_by_loop_judge):
            errors[f"loop_judge_{v.status}"] += 1
        if rnd.index > 0 and rnd.image is None:
            errors["loop_editor_failed"] += 1
    if traj.stop_reason in LATE_FAILURES:
        errors[LATE_FAILURES[traj.stop_reason]] += 1


def _shared(calls: dict[str, int]) -> dict[str, int]:
    """One dict per distinct call count, shared read-only: runs have few distinct ones and many samples."""
    return _CALLS.setdefault(tuple(sorted(calls.items())), calls)


def _judged(traj: Any, evals: dict[int, Verdict] | None, index: int) -> Verdict | None:
    """The evaluation verdict of a round: from the evals table, or the loop's own verdict."""
    return evals.get(index) if evals is not None else traj.rounds[index].verdict


def summarize(store: RunStore, run_info: dict[str, Any], budgets: list[int] | None = None,
              policy: LoopPolicy | None = None) -> dict[str, Any]:
    """``summary.json``: the final budget's comparison at the top, every budget under ``by_budget``."""
    top = int(run_info["config"]["budget"]["max_rounds"])
    if budgets is None:  # a controller run is known at budget 0 and at its own budget only (see replay)
        budgets = [0, top] if run_info["config"].get("controller") else list(range(top + 1))
    budgets = sorted(set(budgets))
    per_budget, errors, totals = collect(store, run_info, budgets, policy)
    final = per_budget[budgets[-1]]
    ev = run_info.get("eval_judge") or {}
    same = bool(ev.get("is_loop_judge", True))
    cats = by_category(final, run_info.get("dataset", {}).get("categories"))
    summary: dict[str, Any] = {
        "n_samples": totals["n_samples"],
        "dataset": run_info.get("dataset", {}).get("spec"),
        "budget": budgets[-1],
        "by_budget": {str(b): budget_stats(per_budget[b]) for b in budgets},
        **compare(final),
        "eval_judge": ev.get("identity"),
        "loop_judge": run_info.get("tools", {}).get("judge"),
        "eval_judge_is_loop_judge": same,
        "warnings": [OPTIMISTIC_WARNING] if same else [],
        "by_category": cats,
        "category_averages": category_averages(cats, final),
        "tool_calls": {**totals["tool_calls"], **({"eval_judge": totals["eval_calls"]} if "eval_calls" in totals
                                                 else {})},
        "cost_usd": totals["cost_usd"],
        "errors": count_errors(final, errors),
    }
    if totals["not_replayable"]:
        summary["not_replayable"] = totals["not_replayable"][:20]
        summary["warnings"].append(f"{len(totals['not_replayable'])} sample-budget pairs could not be replayed")
    return finite(summary)
