"""Photo rules for the ``rule`` critic: turn the photo checker's findings into a re-edit instruction and base.

- too weak / not applied / unwanted side effect with a counter-op: adjust the *current* image ("make it
  slightly brighter"), joining one correction per op;
- wrong direction, wrong geometry, clipping, halos/noise/banding, or a blur that went too far: damage that
  cannot be undone, so restart from the *source* with the original instruction, strengths rescaled by what
  was measured;
- a local change outside the requested edit (a patch, a region changed alone): the grammar cannot paint it
  out, so restart from the *source* with the same request; if that request already failed, ask for it in the
  grammar's other words (a new sample) before varying its strength;
- the latest round scored worse than an earlier one: go back to the *best* round and act on its findings.

History keeps it from repeating what did not help: an adjustment that made no progress is escalated once, then
abandoned for a restart. An instruction that already failed from the same kind of base is never issued again
unchanged (``novelty``): an adjustment that is needed again is made stronger, a restart is varied in strength
or words, and when every variation was tried the critic gives up (``critic_gave_up``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

from refine_agent.tools.photo.grammar import PhotoOp, PhotoPlan, parse_photo_instruction, render_plan, strength_level

from refine_agent.errors import UnsupportedInstructionError
from refine_agent.types import Base, Critique, CritiqueRequest, Finding, Round, Verdict

from .novelty import first_new, normal, photo_rewordings, used

PRIORITY = {"geometry": 0, "wrong_direction": 1, "local_change": 2, "clipping": 3, "artifact": 4, "not_applied": 5,
            "too_strong": 6, "too_weak": 7, "side_effect": 8}
_RESTART_KINDS = {"geometry", "wrong_direction", "local_change", "clipping", "artifact"}
_WORSE_BY = 0.25     # a round this much below the best counts as worse
_PROGRESS = 0.25     # an adjustment that moved the measurement by less than this fraction of its size stalled


@dataclass
class Action:
    base: Base
    instruction: str
    why: str


def _parse(text: str | None) -> PhotoPlan | None:
    try:
        return parse_photo_instruction(text or "")
    except UnsupportedInstructionError:
        return None


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _score(v: Verdict | None) -> float:
    if v is None or not v.ok:
        return float("-inf")
    if v.overall is not None:
        return v.overall
    return 10.0 if v.passed else 0.0


def _actionable(v: Verdict | None) -> list[Finding]:
    found = [f for f in (v.findings if v is not None else []) if f.kind in PRIORITY]
    return sorted(found, key=lambda f: (PRIORITY[f.kind], -f.severity))


def _scaled(ops: list[PhotoOp], factors: dict[str, float]) -> list[PhotoOp]:
    """Ops with graded strengths scaled per op name and snapped to a grammar level."""
    out = []
    for op in ops:
        if op.graded and op.op in factors:
            op = op.model_copy(update={"strength": strength_level(min(3.0, max(0.25, op.strength * factors[op.op])))})
        out.append(op)
    return out


def _restart(findings: list[Finding], instruction: str, extra: float = 1.0) -> str:
    """The original instruction with each graded op rescaled by what was measured (for a fresh start)."""
    plan = _parse(instruction)
    if plan is None:
        return str(next((f.data["restart"] for f in findings if f.data.get("restart")), instruction))
    factors: dict[str, float] = {}
    for f in findings:
        op, req, got = f.data.get("op"), f.data.get("requested"), f.data.get("measured")
        if f.kind in ("too_weak", "too_strong") and _number(got) and got > 0 and _number(req) and req > 0:
            factors[str(op)] = float(req) / got
    # Clipping or halos call for a gentler edit, unless they sit with a local change, which likely caused them.
    damage = (any(f.kind in ("clipping", "artifact") for f in findings)
              and not any(f.kind == "local_change" for f in findings))
    for op in plan.ops:
        if op.graded and op.op not in factors:
            factors[op.op] = 0.6 if damage else 1.0
    factors = {k: v * extra for k, v in factors.items()}
    return render_plan(_scaled(plan.ops, factors))


def _suggested_ops(findings: list[Finding]) -> list[PhotoOp]:
    """One incremental correction per op, from the findings' ``suggest`` texts (worst finding first)."""
    ops: dict[str, PhotoOp] = {}
    for f in findings:
        plan = _parse(f.data.get("suggest")) if f.data.get("fix_base", "current") == "current" else None
        for op in plan.ops if plan else []:
            ops.setdefault(op.op, op)
    return list(ops.values())


def _act(findings: list[Finding], instruction: str) -> tuple[Action, list[PhotoOp]]:
    first = findings[0]
    why = first.message
    suggested = _suggested_ops(findings)
    if first.kind in _RESTART_KINDS or first.data.get("fix_base") == "source" or not suggested:
        return Action("source", _restart(findings, instruction), f"{why}; restarting from the source"), []
    return Action("current", render_plan(suggested), f"{why}; adjusting the current image"), suggested


def _measured(v: Verdict | None, key: str) -> float | None:
    for f in v.findings if v is not None else []:
        if (f.data.get("op") == key or f.data.get("what") == key) and _number(f.data.get("measured")):
            return float(f.data["measured"])
    return None


def _stalled(op: PhotoOp, latest: Round, before: Verdict | None, now: Verdict) -> bool:
    """Did the latest round already try this correction without moving the measurement enough?"""
    tried = _parse(latest.instruction)
    same = [t for t in (tried.ops if tried else []) if t.op == op.op and t.direction == op.direction]
    finding = next((f for f in now.findings if op.op in (f.data.get("op"), f.data.get("what"))), None)
    m_before, m_now = _measured(before, op.op), _measured(now, op.op)
    if not same or finding is None or m_before is None or m_now is None:
        return False
    if finding.kind == "side_effect":  # an unwanted drift should shrink
        return m_now > 0.8 * m_before
    if not op.graded:  # absolute ops: did the measurement move at all?
        return abs(m_now - m_before) < 0.05
    # Graded measurements are signed toward the requested effect; a correction the same way should raise them.
    progress = (m_now - m_before) if finding.data.get("direction") == op.direction else (m_before - m_now)
    return progress < _PROGRESS * same[0].strength


def _streak(op: PhotoOp, rounds: list[Round]) -> int:
    """How many of the latest consecutive incremental rounds already applied this op the same way."""
    n = 0
    for r in reversed(rounds):
        plan = _parse(r.instruction) if r.base in ("current", "best") else None
        if not plan or not any(t.op == op.op and t.direction == op.direction for t in plan.ops):
            break
        n += 1
    return n


def _split(req: CritiqueRequest) -> tuple[Round | None, list[Round]]:
    hist = list(req.history)
    if hist and hist[-1].verdict is not None and hist[-1].verdict == req.verdict:
        return hist[-1], hist[:-1]
    return None, hist


def _round_verdict(rounds: list[Round], index: int | None) -> Verdict | None:
    return next((r.verdict for r in rounds if r.index == index), None)


def critique_photo(req: CritiqueRequest) -> Critique:
    """Decide whether the photo edit is done and, if not, the next instruction and base image."""
    v = req.verdict
    if not v.ok:
        return Critique(satisfied=True, analysis=f"the verdict is '{v.status}', so there is nothing to act on")
    findings = _actionable(v)
    if not findings:
        return Critique(satisfied=True, analysis=f"No actionable findings. {v.reasoning}".strip())
    latest, earlier = _split(req)
    rounds = earlier + ([latest] if latest is not None else [])
    best = max((r for r in earlier if r.scored), key=lambda r: _score(r.verdict), default=None)
    if best is not None and _score(v) < _score(best.verdict) - _WORSE_BY and _actionable(best.verdict):
        action = _from_best(best, rounds, req.instruction)
    else:
        action, suggested = _act(findings, req.instruction)
        if action.base == "current" and latest is not None:
            action = _check_progress(action, suggested, latest, rounds, v, findings, req.instruction)
    info = {"finding": findings[0].kind, "findings": [f.kind for f in findings]}
    fresh = _unrepeated(action, findings, req.history, req.instruction)
    if fresh is None:
        return Critique(satisfied=False, gave_up=True, info=info, analysis=f"{action.why.split(';')[0]}; every fix "
                        "the rules know was tried already, so it gives up rather than repeat a failed instruction")
    return Critique(satisfied=False, analysis=fresh.why, instruction=fresh.instruction, base=fresh.base, info=info)


def _unrepeated(action: Action, findings: list[Finding], history: list[Round], instruction: str) -> Action | None:
    """``action``, or when it already failed as it is, the first escalation not yet tried (None: all were)."""
    return first_new(chain([action], _escalations(action, findings, instruction)), history,
                     lambda a: (a.instruction, a.base))


def _escalations(action: Action, findings: list[Finding], instruction: str) -> Iterator[Action]:
    """What to do instead of repeating ``action``, in order of preference."""
    why = action.why.split(";")[0]
    plan = _parse(action.instruction)
    if action.base != "source" and plan is not None:
        # The same correction is needed again, so the last one fell short (the editor under-applies): step harder.
        for factor in (2.0, 4.0):
            yield Action(action.base, render_plan(_scaled(plan.ops, {op.op: factor for op in plan.ops})),
                         f"{why}; the same adjustment fell short before, so it is stronger now")
    restart = _restart(findings, instruction)
    gentler = any(f.kind in ("too_strong", "clipping", "artifact") for f in findings)
    varied = [_restart(findings, instruction, extra=e) for e in ((0.5, 2.0) if gentler else (2.0, 0.5))]
    # A local change is the editor's accident, not the request's: ask for the same edit in other words (a new
    # sample) before changing its strength. Otherwise vary the strength first.
    texts = [restart] + (_reworded(restart) + varied if findings[0].kind == "local_change" else
                         varied + _reworded(restart))
    texts += [t for v in varied for t in _reworded(v)]
    for text in dict.fromkeys(texts):
        yield Action("source", text, f"{why}; restarting from the source" + ("" if text == restart else
                                                                              " (varied: that restart was tried)"))


def _reworded(text: str) -> list[str]:
    """The same plan in the grammar's other phrasings."""
    plan = _parse(text)
    return photo_rewordings(plan)[1:] if plan is not None else []


def _from_best(best: Round, rounds: list[Round], instruction: str) -> Action:
    """Go back to the best round and act on its findings, without repeating what was tried from it."""
    action, suggested = _act(_actionable(best.verdict), instruction)
    why = f"round {best.index} scored better than the latest; " + action.why
    if action.base == "source":
        return Action("source", action.instruction, why)
    tried = used(rounds, "best", best.index) | used(rounds, "current", best.index)
    text = action.instruction
    if normal(text) in tried:  # that adjustment made things worse: try a smaller step
        smaller = [op.model_copy(update={"strength": strength_level(op.strength / 2)}) if op.graded else op
                   for op in suggested]
        text = render_plan(smaller)
        if normal(text) in tried:
            return Action("source", _restart(_actionable(best.verdict), instruction), why + "; restarting instead")
        why += " with a smaller step"
    return Action("best", text, why)


def _check_progress(action: Action, suggested: list[PhotoOp], latest: Round, rounds: list[Round], v: Verdict,
                    findings: list[Finding], instruction: str) -> Action:
    """Escalate a correction that made no progress last round; after two stalls, restart from the source."""
    before = _round_verdict(rounds, latest.base_round)
    stalled = [op for op in suggested if _stalled(op, latest, before, v)]
    if not stalled:
        return action
    if any(_streak(op, rounds) >= 2 for op in stalled):
        return Action("source", _restart(findings, instruction),
                      f"{action.why.split(';')[0]}; repeated adjustments did not help, restarting from the source")
    names = {op.op for op in stalled}
    ops = [op.model_copy(update={"strength": strength_level(min(3.0, op.strength * 2))}) if op.op in names else op
           for op in suggested]
    return Action("current", render_plan(ops), f"{action.why}; the same adjustment did not help last round, "
                                               "so it is stronger now")
