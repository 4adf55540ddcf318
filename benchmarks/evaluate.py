"""Turn a run directory into numbers: replay each stored trajectory at every budget, score round 0 and the
final round with the evaluation judge, and assemble ``summary.json`` / ``ablation.json``.

Reads the store one sample at a time, so memory stays flat however large the run.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from refine_agent.loop import LoopPolicy
from refine_agent.store import RunStore, SampleRecord
from refine_agent.types import StopReason, Trajectory, Verdict

from .bench_judge_check import add_judge_check
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
from .replay import Cut, Cuts, NotReplayable, PerBudget, replay_budgets
from .widths import narrow, narrowed_evals, run_depth, run_width

OPTIMISTIC_WARNING = ("the evaluation judge is the loop judge: the loop kept the round this judge liked best, so "
                      "the measured gain is optimistic; rescore with 'refine-agent rejudge RUN_DIR --eval-judge "
                      "SPEC' using an independent judge")


def eval_key(run_info: dict[str, Any]) -> str | None:
    """The evals-table key of the run's evaluation judge, or None when it is the loop judge."""
    ev = run_info.get("eval_judge") or {}
    return None if ev.get("is_loop_judge", True) else ev["key"]


SampleOutcomes = PerBudget[Outcome | str]  # one sample at every budget; a string: why it cannot be replayed


@dataclass
class Collected:
    """Every sample's outcomes, sample errors by kind, and run totals (calls, cost). Memory and work grow with
    the samples and the rounds they ran, never with the budgets asked for."""

    samples: list[SampleOutcomes]
    errors: Counter[str]
    totals: dict[str, Any]

    def settles(self, budgets: Sequence[int]) -> int:
        """The first of the budgets' range from which no sample changes: every larger budget is the same as
        it. At most the largest budget asked for."""
        if not budgets:
            return 0
        last_change = max((s.settles for s in self.samples), default=0)
        return min(last_change, budgets[-1])

    def outcomes(self, budget: int) -> tuple[list[Outcome], list[str]]:
        """The outcomes at ``budget``, and why the samples left out could not be replayed."""
        got: list[Outcome] = []
        why: list[str] = []
        for s in self.samples:
            o = s.at(budget)
            if isinstance(o, str):
                why.append(o)
            else:
                got.append(o)
        return got, why


def collect(store: RunStore, run_info: dict[str, Any], budgets: Sequence[int], policy: LoopPolicy | None = None,
            width: int | None = None) -> Collected:
    """Every sample's outcomes at ``budgets`` (sorted; a ``range`` is not expanded) and at any budget past them;
    with ``width``, as a run with that many candidates per round (``widths.check_widths`` says which can be)."""
    return collect_widths(store, run_info, budgets, policy, [width])[width]


def collect_widths(store: RunStore, run_info: dict[str, Any], budgets: Sequence[int], policy: LoopPolicy | None,
                   widths: Sequence[int | None]) -> dict[int | None, Collected]:
    """``collect`` at each of ``widths`` (None: as the run was made), in one pass over the store."""
    run_policy = LoopPolicy.model_validate(run_info["config"]["policy"])
    run_budget = int(run_info["config"]["budget"]["max_rounds"])
    judge_key = eval_key(run_info)
    own_width = run_width(run_info)
    outs = {w: Collected([], Counter(), {"tool_calls": {"editor": 0, "judge": 0, "critic": 0}, "cost_usd": 0.0,
                                         "n_samples": 0}) for w in widths}
    for rec in store.iter_samples():
        if rec.status != "done" or rec.trajectory is None:
            for out in outs.values():
                out.totals["n_samples"] += 1
                out.errors[rec.error_kind or "error"] += 1
            continue
        stored = rec.trajectory
        by_candidate = store.candidate_evals(judge_key, rec.sample_id, stored.widest) if judge_key else {}
        evals = store.evals(judge_key, rec.sample_id) if judge_key else None
        for w, out in outs.items():
            # at its own width a run is itself (a deeper run may have stopped on a call limit after round 0)
            traj = stored if w is None or w == own_width else narrow(stored, w, policy or run_policy)
            if not _tally(out, stored, traj, evals, by_candidate, judge_key is None):
                continue  # the one-shot edit failed: counted, nothing to score
            scored = narrowed_evals(traj, by_candidate, evals) if evals is not None else None
            cuts = replay_budgets(traj, budgets, policy, run_policy, run_budget=run_budget)
            out.samples.append(_outcomes(rec, traj, scored, cuts, by_candidate))
    return outs


def _tally(out: Collected, stored: Trajectory, traj: Trajectory, evals: dict[int, Verdict] | None,
           by_candidate: dict[tuple[int, int], Verdict], loop_is_eval: bool) -> bool:
    """Add a finished sample (``traj``: as stored, or narrowed) to the run totals and error counts; False when
    its one-shot edit failed, so there is nothing to score."""
    totals, errors = out.totals, out.errors
    totals["n_samples"] += 1
    for kind, n in traj.usage.calls.items():
        totals["tool_calls"][kind] = totals["tool_calls"].get(kind, 0) + n
    totals["cost_usd"] += traj.usage.cost_usd
    if not traj.rounds or traj.rounds[0].image is None:
        errors["editor_failed"] += 1
        return False
    count_loop_failures(traj, errors, loop_is_eval)
    if evals is not None:  # what the evaluation judge was asked, as stored: a kept candidate is judged once
        judged_images = [*by_candidate.values(), *(v for i, v in evals.items()
                                                   if i >= len(stored.rounds) or not stored.rounds[i].candidates)]
        totals["eval_calls"] = totals.get("eval_calls", 0) + len(judged_images)
        totals["cost_usd"] += sum(v.usage.cost_usd for v in judged_images)
    return True


def _outcomes(rec: SampleRecord, traj: Trajectory, evals: dict[int, Verdict] | None, cuts: Cuts,
              by_candidate: dict[tuple[int, int], Verdict]) -> SampleOutcomes:
    """A sample's replays of ``traj`` (its record's, or narrowed to a width) scored by the evaluation judge (one
    Score per round, shared by every budget)."""
    scores: dict[int, Score] = {}
    category = sys.intern(rec.category) if rec.category else None
    first = score_of(one_shot(traj, evals, by_candidate))

    def outcome(c: Cut | NotReplayable) -> Outcome | str:
        if isinstance(c, NotReplayable):
            return str(c)
        final = c.best_round if c.best_round is not None else 0
        if final not in scores:
            scores[final] = score_of(judged(traj, evals, final))
        return Outcome(sample_id=rec.sample_id, category=category, one_shot=first, final=scores[final],
                       final_round=final, rounds_used=c.n_rounds - 1, calls=_shared(c.calls_by_kind),
                       cost_usd=c.cost_usd, seconds=c.tool_seconds)

    return cuts.map(outcome)


def budget_rows(collected: Collected, budgets: Sequence[int]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``by_budget``: a row of numbers per budget up to k, the budget from which no sample changes; every
    budget past k is the small row ``{"same_as": k}`` (and k gets its row even if not asked for), so a large
    budget costs one row, not a copy of the same numbers per budget. Also why samples could not be replayed at
    some of the budgets: one reason per sample (a reason names its sample and is the same at every budget)."""
    k = collected.settles(budgets)
    numbered = [b for b in budgets if b <= k]
    later = [b for b in budgets if b > k]
    if later and k not in numbered:
        numbered.append(k)  # the row the later budgets repeat
    rows: dict[str, dict[str, Any]] = {}
    why: list[str] = []
    for b in numbered:
        got, missing = collected.outcomes(b)
        rows[str(b)] = budget_stats(got)
        why += missing
    for b in later:
        rows[str(b)] = {"same_as": k}
    return rows, list(dict.fromkeys(why))


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
        for c in rnd.candidates:  # failed candidates of a round that kept another (a failed round counts once)
            if rnd.chosen is None or c.index == rnd.chosen:
                continue
            if c.image is None:
                errors["loop_candidate_editor_failed"] += 1
            elif c.verdict is not None and not c.verdict.ok:
                errors[f"loop_candidate_judge_{c.verdict.status}"] += 1
    if traj.stop_reason in LATE_FAILURES:
        errors[LATE_FAILURES[traj.stop_reason]] += 1


def _shared(calls: dict[str, int]) -> dict[str, int]:
    """One dict per distinct call count, shared read-only: runs have few distinct ones and many samples."""
    return _CALLS.setdefault(tuple(sorted(calls.items())), calls)


def one_shot(traj: Trajectory, evals: dict[int, Verdict] | None, by_candidate: dict[tuple[int, int], Verdict]
             ) -> Verdict | None:
    """The evaluation verdict of the one-shot edit: round 0, or, when round 0 made best-of-N candidates, its
    candidate 0, which is the edit a run without candidates makes (so best-of-N is measured against it)."""
    r0 = traj.rounds[0]
    if not r0.candidates:
        return judged(traj, evals, 0)
    return by_candidate.get((0, 0)) if evals is not None else r0.candidates[0].verdict


def judged(traj: Any, evals: dict[int, Verdict] | None, index: int) -> Verdict | None:
    """The evaluation verdict of a round: from the evals table, or the loop's own verdict."""
    return evals.get(index) if evals is not None else traj.rounds[index].verdict


def width_rows(store: RunStore, run_info: dict[str, Any], widths: Sequence[int], policy: LoopPolicy | None = None
               ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``by_candidates``: a row per width (as a ``by_budget`` row) at the run's own depth, replayed from its
    candidates (``widths.check_widths`` says which widths a run can answer); and why samples were left out."""
    depth = run_depth(run_info)
    rows: dict[str, dict[str, Any]] = {}
    why: list[str] = []
    for w, collected in collect_widths(store, run_info, [depth], policy, widths).items():
        got, missing = collected.outcomes(depth)
        rows[str(w)] = budget_stats(got)
        why += missing
    return rows, list(dict.fromkeys(why))


def summary_widths(run_info: dict[str, Any]) -> list[int]:
    """The widths summary.json lists: every width up to the run's at depth 0, else the run's own."""
    own = run_width(run_info)
    return list(range(1, own + 1)) if run_depth(run_info) == 0 else [own]


def summary_budgets(asked: Sequence[int], collected: Collected, controller: bool) -> list[int]:
    """The budgets summary.json lists: each one up to where the run's samples settle, and the run's own (the
    last asked). A controller run is known at budget 0 and at its own budget only: those are all it asks."""
    if controller:
        return list(asked)
    return sorted({*range(collected.settles(asked) + 1), asked[-1]})


def completeness(run_info: dict[str, Any], n_samples: int) -> dict[str, Any]:
    """How many samples the run meant to have (run.json's dataset size, after --limit) and whether all have a
    record: a run killed part-way must not read as a whole one."""
    expected = (run_info.get("dataset") or {}).get("size")
    complete = None if expected is None else n_samples >= int(expected)
    return {"n_expected": expected, "complete": complete}


def incomplete_warning(n_samples: int, n_expected: int) -> str:
    return (f"incomplete: {n_samples} of {n_expected} samples were run; the numbers cover those only. Finish the "
            "run with the same 'refine-agent bench' command and --resume")


def summarize(store: RunStore, run_info: dict[str, Any], budgets: list[int] | None = None,
              policy: LoopPolicy | None = None) -> dict[str, Any]:
    """``summary.json``: the final budget's comparison at the top, every budget under ``by_budget`` (each one
    past the last that changes anything as ``{"same_as": k}``)."""
    return summarize_with_outcomes(store, run_info, budgets, policy)[0]


def summarize_with_outcomes(store: RunStore, run_info: dict[str, Any], budgets: list[int] | None = None,
                            policy: LoopPolicy | None = None) -> tuple[dict[str, Any], list[Outcome], list[str]]:
    """``summarize``, with the per-sample outcomes at the summary's final budget and why samples are missing
    from them (for those that also need the samples, such as ``compare``: one pass over the store, not two)."""
    top = int(run_info["config"]["budget"]["max_rounds"])
    controller = bool(run_info["config"].get("controller"))
    asked: Sequence[int] = sorted(set(budgets)) if budgets is not None else (
        [0, top] if controller else range(top + 1))
    collected = collect(store, run_info, asked, policy)
    shown = list(asked) if budgets is not None else summary_budgets(asked, collected, controller)
    by_budget, not_replayable = budget_rows(collected, shown)
    final, left_out = collected.outcomes(shown[-1])
    totals, errors = collected.totals, collected.errors
    ev = run_info.get("eval_judge") or {}
    same = bool(ev.get("is_loop_judge", True))
    cats = by_category(final, run_info.get("dataset", {}).get("categories"))
    done = completeness(run_info, totals["n_samples"])
    summary: dict[str, Any] = {
        "n_samples": totals["n_samples"],
        **done,
        "dataset": run_info.get("dataset", {}).get("spec"),
        "budget": shown[-1],
        "by_budget": by_budget,
        "candidates": run_width(run_info),
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
    if done["complete"] is False:
        summary["warnings"].insert(0, incomplete_warning(totals["n_samples"], done["n_expected"]))
    if run_width(run_info) > 1:
        summary["by_candidates"], narrower = width_rows(store, run_info, summary_widths(run_info), policy)
        not_replayable = list(dict.fromkeys([*not_replayable, *narrower]))
    if not_replayable:
        summary["not_replayable"] = not_replayable[:20]
        summary["warnings"].append(f"{len(not_replayable)} samples could not be replayed at some budgets "
                                   "(see not_replayable)")
    add_judge_check(summary, store.dir, run_info)  # from RUN_DIR/judge_check.json, matched by judge
    return finite(summary), final, left_out
