"""``refine-agent report``: one self-contained HTML page (``RUN_DIR/report.html``) and its PNG plots
(``RUN_DIR/plots/``) for a run directory.

Outcomes (``improved``, ``regressed``, ``unchanged``, ``error``) are defined in ``report_views``.

Samples stream from the store one at a time; at most ``max_samples`` of them, shared between the
outcomes, keep thumbnails for the page.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refine_agent.atomic import write_atomic
from refine_agent.errors import InputError
from refine_agent.loop import LoopPolicy
from refine_agent.outputs import FilesTarget
from refine_agent.store import RunStore, SampleRecord, open_run
from refine_agent.textio import read_our_json
from refine_agent.types import Candidate, Round, Verdict

from .evaluate import eval_key, judged, one_shot
from .metrics import Score, score_of
from .replay import NotReplayable, cut
from .report_html import budget_table, render
from .report_views import OUTCOMES, CandidateView, ReportData, RoundView, SampleView, classify

THUMB_PX = 160
CANDIDATE_PX = 72  # a best-of-N round shows every candidate: small
MAX_CANDIDATES_SHOWN = 16
PNG_LIMIT = 14_000  # bytes; a larger PNG thumbnail (a photo) is sent as JPEG instead


def thumbnail(store: RunStore, sha: str, max_px: int = THUMB_PX) -> str | None:
    """A data URI of a small version of a stored image: PNG, or JPEG where the PNG would be large; None when
    the stored file is missing or damaged (the card then says so instead of showing a broken image)."""
    try:
        im = store.get_image(sha).to_pil()
    except (InputError, OSError):
        return None
    im.thumbnail((max_px, max_px))
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    mime = "image/png"
    if buf.tell() > PNG_LIMIT:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=82)
        mime = "image/jpeg"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _sample(store: RunStore, rec: SampleRecord, key: str | None, budget: int, policy: LoopPolicy,
            browse: bool, run_budget: int | None = None) -> SampleView:
    view = SampleView(sample_id=rec.sample_id, index=rec.index, category=rec.category or "uncategorized",
                      instruction=rec.instruction or "", outcome="error", one_shot=Score("missing"),
                      final=Score("missing"))
    traj = rec.trajectory
    if rec.status != "done" or traj is None:
        view.reason = f"{rec.error_kind or 'error'}: {rec.error or 'no trajectory'}"
        return view
    view.best_round, view.stop_reason = traj.best_round, traj.stop_reason.value
    evals: dict[int, Verdict] | None = store.evals(key, rec.sample_id) if key else None
    by_candidate = store.candidate_evals(key, rec.sample_id, traj.widest) if key else {}

    if not traj.rounds or traj.rounds[0].image is None:
        first = traj.rounds[0] if traj.rounds else None
        view.reason = f"the one-shot edit failed: {(first.error if first else None) or traj.stop_reason.value}"
    else:
        try:
            # no copies of the rounds: linear in them
            kept = cut(traj, budget, None, policy, run_budget=run_budget).best_round
            view.final_round = kept if kept is not None else 0
        except NotReplayable as exc:
            view.reason = str(exc)
    if view.final_round is not None:
        view.one_shot = score_of(one_shot(traj, evals, by_candidate))
        view.final = score_of(judged(traj, evals, view.final_round))
        view.outcome = classify(view.one_shot, view.final)
        if view.outcome == "error":
            bad = [f"{side} {s.status}" for side, s in (("one-shot", view.one_shot), ("final", view.final))
                   if not s.ok]
            view.reason = "evaluation judgment " + (", ".join(bad) if bad else "not comparable")
    if browse:
        if rec.inputs is not None:
            view.source_thumb = thumbnail(store, rec.inputs.source)
        thumbs: dict[str, str | None] = {}
        for r in traj.rounds:
            if r.image is not None and r.image not in thumbs:
                thumbs[r.image] = thumbnail(store, r.image)
            crit = r.critique
            view.rounds.append(RoundView(
                index=r.index, instruction=r.instruction, base=r.base, base_round=r.base_round,
                thumb=thumbs.get(r.image) if r.image else None, loop=score_of(r.verdict),
                eval=score_of(evals.get(r.index)) if evals is not None else None,
                reasoning=(r.verdict.reasoning if r.verdict else "") or "",
                critique=crit.analysis if crit else "", next_instruction=crit.instruction if crit else None,
                satisfied=crit.satisfied if crit else None, error=r.error, is_best=r.index == traj.best_round,
                is_final=r.index == view.final_round, has_image=r.image is not None,
                candidates=[CandidateView(index=c.index, thumb=thumbnail(store, c.image, CANDIDATE_PX) if c.image
                                          else None, loop=score_of(c.verdict),
                                          eval=score_of(by_candidate.get((r.index, c.index)))
                                          if evals is not None else None,
                                          chosen=c.index == r.chosen, error=c.error)
                            for c in shown_candidates(r)], more_candidates=max(0, len(r.candidates) -
                                                                                MAX_CANDIDATES_SHOWN)))
    return view


def shown_candidates(r: Round) -> list[Candidate]:
    """The first candidates of a round, and the kept one always (in its place as the last shown)."""
    shown = r.candidates[:MAX_CANDIDATES_SHOWN]
    if r.chosen is not None and r.chosen >= MAX_CANDIDATES_SHOWN:
        shown = [*shown[:-1], r.candidates[r.chosen]]
    return shown


def collect_report(store: RunStore, run_info: dict[str, Any], budget: int, max_samples: int = 200) -> ReportData:
    """Stream every sample once for the outcomes, deltas and pass transitions, keeping the first
    ``max_samples`` records of each outcome; the cards are made for those ``pick_cards`` chooses."""
    policy = LoopPolicy.model_validate(run_info["config"]["policy"])
    run_budget = int(run_info["config"]["budget"]["max_rounds"])
    key = eval_key(run_info)
    data = ReportData(budget=budget, max_samples=max_samples)
    kept: dict[str, list[SampleRecord]] = {o: [] for o in OUTCOMES}
    for rec in store.iter_samples():
        view = _sample(store, rec, key, budget, policy, browse=False, run_budget=run_budget)
        data.n_total += 1
        data.counts[view.outcome] += 1
        if len(kept[view.outcome]) < max_samples:
            kept[view.outcome].append(rec)
        a, b = view.one_shot, view.final
        if a.ok and b.ok:
            if a.overall is not None and b.overall is not None:
                data.deltas.append(b.overall - a.overall)
            if a.passed is not None and b.passed is not None:
                data.transitions.append((a.passed, b.passed))
    chosen = pick_cards({o: [r.sample_id for r in recs] for o, recs in kept.items()}, max_samples)
    cards = sorted((r for recs in kept.values() for r in recs if r.sample_id in chosen), key=lambda r: r.index)
    data.samples = [_sample(store, rec, key, budget, policy, browse=True, run_budget=run_budget) for rec in cards]
    return data


def pick_cards(by_outcome: dict[str, list[str]], limit: int) -> set[str]:
    """Up to ``limit`` sample ids, shared evenly between the outcomes (a share an outcome cannot fill goes to
    the others), the first ones of each in dataset order: on a large run the browser still shows regressions
    and errors, not only the first samples."""
    share = {o: 0 for o in by_outcome}
    left = limit
    while left > 0:
        open_ = [o for o in by_outcome if share[o] < len(by_outcome[o])]
        if not open_:
            break
        each = max(1, left // len(open_))
        for o in open_:
            take = min(each, len(by_outcome[o]) - share[o], left)
            share[o] += take
            left -= take
    return {sid for o, ids in by_outcome.items() for sid in ids[:share[o]]}


@dataclass
class Report:
    summary: dict[str, Any]  # summary.json's, with the report's own warnings (such as a damaged ablation.json)
    html: Path
    plots: Path


def read_ablation(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The ``ablation.json`` of ``bench --budgets``, for the page's ablation section: (None, None) when there is
    none, and (None, a warning that names the file and what to do) when it is damaged."""
    if not path.exists():
        return None, None

    def check(ablation: Any) -> dict[str, Any]:
        budget_table(ablation["by_budget"])  # what the page shows of it: it fails here as it would on the page
        return dict(ablation)

    ablation, why = read_our_json(path, check, "is not an ablation file (no by_budget table of numbers)")
    if why is None:
        return ablation, None
    return None, (f"{path} {why}, so the report leaves out the budget ablation. Delete or move the file to "
                  "silence this; 'refine-agent ablate RUN_DIR --budgets ...' recomputes the ablation")


REPORT_FILES = ["summary.json", "report.html", "plots/budget.png", "plots/gain_by_category.png", "plots/deltas.png"]


def make_plots(out_dir: Path, summary: dict[str, Any], data: ReportData) -> dict[str, Path]:
    """``plots/budget.png``, ``plots/gain_by_category.png`` and ``plots/deltas.png``."""
    from .plots import budget_curves, delta_histogram, gain_by_category

    plots = out_dir / "plots"
    name = summary.get("dataset") or ""
    return {
        "budget": budget_curves(summary["by_budget"], plots / "budget.png", title=f"{name}: one-shot is budget 0"),
        "gain_by_category": gain_by_category(summary.get("by_category") or {}, plots / "gain_by_category.png",
                                             title=f"Gain by category at budget {data.budget}"),
        "deltas": delta_histogram(data.deltas, plots / "deltas.png",
                                  title=f"Per-sample gain at budget {data.budget} (n={len(data.deltas)})"),
    }


def make_report(run_dir: Path, out_dir: Path | None = None, *, max_samples: int = 200,
                force: bool = False) -> Report:
    """Write summary.json, report.html (self-contained) and plots/*.png to ``out_dir`` (default: the run
    directory), reading the run read-only. summary.json is never replaced by one with fewer samples unless
    ``force``."""
    from .evaluate import summarize
    from .summary_file import save_summary

    if max_samples < 0:
        raise InputError(f"max_samples must be 0 or more, not {max_samples}")
    run_dir = Path(run_dir)
    store, info = open_run(run_dir)
    try:
        target = FilesTarget.choose(out_dir, run_dir, REPORT_FILES, force=force, what="report")
        summary = summarize(store, info)
        out_dir = target.open()
        save_summary(out_dir / "summary.json", summary, force=force)
        data = collect_report(store, info, int(summary["budget"]), max_samples)
    finally:
        store.close()
    ablation, damaged = read_ablation(run_dir / "ablation.json")
    if ablation is not None and ablation.get("eval_judge") != summary.get("eval_judge"):
        ablation, damaged = None, (f"{run_dir / 'ablation.json'} was computed with another evaluation judge (before "
                                   "a rejudge), so the report leaves it out; the budget table above is current")
    if damaged is not None:  # shown in the terminal and on the page; summary.json is about the records only
        summary = {**summary, "warnings": [*summary.get("warnings", []), damaged]}
    plots = make_plots(out_dir, summary, data)
    uris = {k: "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii") for k, p in plots.items()}
    page = render(info, summary, data, uris, ablation, run_name=run_dir.resolve().name)
    out = out_dir / "report.html"
    write_atomic(out, page.encode("utf-8"))
    target.close()
    return Report(summary=summary, html=out, plots=out_dir / "plots")


def write_report(run_dir: Path, *, max_samples: int = 200) -> Path:
    """Write ``RUN_DIR/report.html`` (self-contained) and ``RUN_DIR/plots/*.png``; return the HTML's path."""
    return make_report(run_dir, max_samples=max_samples).html
