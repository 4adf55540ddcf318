"""Best-of-n at every width n up to a run's own, replayed from that run without new tool calls.

A round's candidates are seeded by (run seed, sample, round, candidate index) alone, never by how many there are,
so the first n candidates of a best-of-N round are exactly the candidates a best-of-n run makes. At depth 0
(``--max-rounds 0``) a run is that one round, so best-of-n for every n <= N is a prefix of it. Deeper runs are
not: at another width a round may keep another image, and every later round (critique, base, re-edit) follows
from that choice. They replay only at their own width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from refine_agent.errors import InputError
from refine_agent.loop import LoopPolicy
from refine_agent.types import Candidate, Round, StopReason, Trajectory, UsageTotals, Verdict, best_of, edit_fields

from .replay import rule_stop


def run_width(run_info: dict[str, Any]) -> int:
    """The run's ``--candidates`` (1 for runs made before candidates existed)."""
    return int(run_info["config"]["policy"].get("candidates", 1))


def run_depth(run_info: dict[str, Any]) -> int:
    return int(run_info["config"]["budget"]["max_rounds"])


def check_widths(run_info: dict[str, Any], widths: Sequence[int]) -> None:
    """Refuse widths the run cannot answer, saying what to run instead."""
    own, depth = run_width(run_info), run_depth(run_info)
    if widths[-1] > own:
        raise InputError(f"width {widths[-1]} is beyond the run's --candidates {own}; a replay cannot add candidates. "
                         f"Rerun with --candidates {widths[-1]}")
    other = [w for w in widths if w != own]
    if depth > 0 and other:
        raise InputError(f"the run has --max-rounds {depth}, so it replays only at its own width {own}: at width "
                         f"{other[0]} its rounds would have kept other images and the critic would have asked for "
                         f"other edits. Rerun with --candidates {other[0]}, or ablate widths of a --max-rounds 0 run")


def narrow(traj: Trajectory, width: int, policy: LoopPolicy) -> Trajectory:
    """The trajectory a fresh depth-0 run with ``width`` candidates (at most the run's) makes, from this depth-0
    run's wider one (``check_widths`` has refused deeper runs)."""
    if not traj.rounds or not traj.rounds[0].candidates:
        return traj  # a given edit (refine), or no round at all: the same at every width
    r0 = traj.rounds[0]
    made = len(r0.candidates)
    # Fewer made than asked: the call budget ran out after ``made``, as it would for any width above it. At
    # exactly ``made`` a fresh run is not cut short, so it stops as a whole round does.
    if width > made or (width == made and traj.stop_reason != StopReason.max_tool_calls):
        return traj
    kept = r0.candidates[:width]
    rnd = _round_of(r0, kept)
    usage = UsageTotals()
    for c in rnd.calls:
        usage.add_call(c.kind, c.usage, cached=c.cached, attempts=max(1, c.attempts), failed=c.error is not None)
    stop = (StopReason.editor_failed if rnd.image is None
            else rule_stop(rnd, rnd if rnd.scored else None, policy) or StopReason.max_rounds)
    return traj.model_copy(update={"rounds": [rnd], "best_round": 0 if rnd.scored else None, "stop_reason": stop,
                                   "usage": usage})


def _round_of(r0: Round, kept: list[Candidate]) -> Round:
    """Round 0 as a run with these candidates records it: a lone candidate is a plain round, as with width 1."""
    fields = {**edit_fields(kept[0]), "chosen": None, "candidates": []} if len(kept) == 1 else best_of(kept)
    return r0.model_copy(update={**fields, "critique": None})


def narrowed_evals(traj: Trajectory, by_candidate: dict[tuple[int, int], Verdict],
                   evals: dict[int, Verdict]) -> dict[int, Verdict]:
    """The evaluation verdicts of a (narrowed) trajectory's rounds. A round made from candidates is judged as
    its kept candidate was: the same image under the same evaluation seed. ``by_candidate``: (round, candidate)
    -> verdict; a plain round narrowed from candidates (width 1) kept candidate 0."""
    out = dict(evals)
    for rnd in traj.rounds:
        kept = rnd.chosen if rnd.candidates else 0
        if kept is None or (rnd.index, kept) not in by_candidate:
            if rnd.candidates:
                out.pop(rnd.index, None)  # no candidate kept (every edit failed), or not judged yet
            continue
        out[rnd.index] = by_candidate[(rnd.index, kept)]
    return out
