"""The side-by-side sample browser of ``compare.html``, as plain data: per aligned sample, the source, then for
each run its one-shot (round 0) and final images with their evaluation scores, and who wins against the
baseline. At most ``max_samples`` cards, shared evenly between the win patterns (``report.pick_cards``), so a
large comparison still shows where B loses, not only the first samples."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from refine_agent.store import RunStore, SampleRecord, open_run

from .compare import RunData, winner
from .metrics import Score
from .report import pick_cards, thumbnail


@dataclass
class SideView:
    """One run's view of one sample."""

    label: str
    status: str  # "ok", "error" (a record with no scored final) or "missing" (no record)
    reason: str | None = None
    one_shot: Score | None = None
    final: Score | None = None
    final_round: int | None = None
    round0_thumb: str | None = None
    final_thumb: str | None = None
    stop_reason: str | None = None


@dataclass
class Card:
    sample_id: str
    index: int
    category: str
    instruction: str
    wins: list[str]  # per non-baseline run: "a", "b", "tie" or "na" (see ``compare.winner``)
    source_thumb: str | None = None
    sides: list[SideView] = field(default_factory=list)


@dataclass
class Browser:
    cards: list[Card]
    n_total: int
    max_samples: int

    @property
    def truncated(self) -> bool:
        return self.n_total > len(self.cards)


def wins_of(runs: Sequence[RunData], sid: str) -> list[str]:
    a = runs[0].scored(sid)
    return [winner(a, r.scored(sid)) for r in runs[1:]]


def choose(runs: Sequence[RunData], every: Sequence[str], max_samples: int) -> set[str]:
    groups: dict[str, list[str]] = {}
    for sid in every:
        groups.setdefault(",".join(wins_of(runs, sid)), []).append(sid)
    return pick_cards(groups, max_samples)


def _side(store: RunStore, r: RunData, rec: SampleRecord, thumbs: dict[str, str | None]) -> SideView:
    def thumb(sha: str | None) -> str | None:
        if sha is None:
            return None
        if sha not in thumbs:
            thumbs[sha] = thumbnail(store, sha)
        return thumbs[sha]

    view = SideView(label=r.label, status="error")
    traj = rec.trajectory
    if rec.status != "done" or traj is None:
        view.reason = f"{rec.error_kind or 'error'}: {rec.error or 'no trajectory'}"
        return view
    view.stop_reason = traj.stop_reason.value
    o = r.outcomes.get(rec.sample_id)
    if traj.rounds:  # the one-shot edit: round 0, or its candidate 0 in a best-of-N run (as its score is)
        r0 = traj.rounds[0]
        view.round0_thumb = thumb(r0.candidates[0].image if r0.candidates else r0.image)
    if o is None:
        first = traj.rounds[0] if traj.rounds else None
        view.reason = (f"the one-shot edit failed: {(first.error if first else None) or traj.stop_reason.value}"
                       if first is None or first.image is None else "cannot be replayed at the run's budget")
        return view
    view.one_shot, view.final, view.final_round = o.one_shot, o.final, o.final_round
    if o.final_round < len(traj.rounds):
        view.final_thumb = thumb(traj.rounds[o.final_round].image)
    if r.scored(rec.sample_id) is not None:
        view.status = "ok"
    else:
        view.reason = f"final round not scored: {o.final.status}"
    return view


def collect_cards(runs: Sequence[RunData], every: Sequence[str], max_samples: int) -> Browser:
    """Stream each run's records once, keeping the chosen samples' views and thumbnails."""
    chosen = choose(runs, every, max_samples) if max_samples > 0 else set()
    cards: dict[str, Card] = {}
    sides: dict[str, dict[str, SideView]] = {sid: {} for sid in chosen}
    for r in runs:
        store, _ = open_run(r.dir)
        thumbs: dict[str, str | None] = {}
        try:
            for rec in store.iter_samples():
                if rec.sample_id not in chosen:
                    continue
                card = cards.get(rec.sample_id)
                if card is None:
                    card = cards[rec.sample_id] = Card(
                        sample_id=rec.sample_id, index=rec.index, category=rec.category or "uncategorized",
                        instruction=rec.instruction or "", wins=wins_of(runs, rec.sample_id))
                if card.source_thumb is None and rec.inputs is not None:
                    card.source_thumb = thumbnail(store, rec.inputs.source)
                sides[rec.sample_id][r.label] = _side(store, r, rec, thumbs)
        finally:
            store.close()
    for sid, card in cards.items():
        card.sides = [sides[sid].get(r.label) or SideView(label=r.label, status="missing",
                                                          reason="not in this run") for r in runs]
    ordered = sorted(cards.values(), key=lambda c: (c.index, c.sample_id))
    return Browser(cards=ordered, n_total=len(every), max_samples=max_samples)
