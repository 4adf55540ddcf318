"""Rules that turn the verifier's findings on a synthetic scene into one re-edit instruction and a base.

- The main edit failed (not applied, half done, wrong object, wrong attributes): restart from the source
  with the most specific wording (size, area, relative position) and emphasis against what went wrong.
- One side effect on an otherwise good edit: fix it on the current image ("make the blue square in the
  top-left area green", "remove the stray marks near the center").
- Several problems, or a fix that did not work last time: restart from the source.
- The latest round is worse than an earlier one: work from the best round instead.
- A restart that already failed is never made again as it was: it asks with every emphasis, then in the
  grammar's other phrasings; when all were tried, the critic gives up (``critic_gave_up``).
"""

from __future__ import annotations

from collections.abc import Sequence

from refine_agent.tools.synthetic.detect import detect, is_scene
from refine_agent.tools.synthetic.language import (
    ParseError,
    RefExpr,
    SceneInstruction,
    full_ref,
    parse_scene_instruction,
    render_instruction,
    resolve,
)

from refine_agent.types import Base, Critique, CritiqueRequest, Finding, Round, round_key

from .novelty import first_new, normal, retry_from_source, scene_rewordings, used

TARGET_KINDS = {"target_unchanged", "partial_edit", "wrong_edit", "wrong_object", "missing_object",
                "wrong_location", "wrong_attributes", "canvas_changed"}
SIDE_KINDS = {"neighbour_changed", "extra_object"}
RESTART_KINDS = {"background_changed", "irregular_shape"}
EMPHASIS_FOR_FINDING = {"partial_edit": "completely", "wrong_attributes": "completely", "wrong_object": "only",
                        "neighbour_changed": "only", "extra_object": "only", "background_changed": "only",
                        "artifacts": "cleanly", "irregular_shape": "completely"}


def _working_round(history: Sequence[Round]) -> tuple[Round, Base]:
    """The round to improve: the latest, unless an earlier one scored better."""
    last = history[-1]
    scored = [r for r in history if r.scored]
    if not scored:
        return last, "current"
    best = max(scored, key=round_key)
    if best.index != last.index and last.scored and round_key(best) > round_key(last):
        return best, "best"
    return last, "current"


def _specific(task: SceneInstruction, req: CritiqueRequest, findings: list[Finding],
              earlier: Sequence[Round]) -> SceneInstruction:
    """The original task, worded as specifically as the source allows, with emphasis where it went wrong."""
    out = task.model_copy(deep=True)
    if task.ref is not None and is_scene(req.source.array):
        objects = detect(req.source.array).objects
        hits = resolve(task.ref, objects)
        if len(hits) == 1:
            out.ref = full_ref(objects[hits[0]], objects)
    emphasis = list(out.emphasis)
    for name in [EMPHASIS_FOR_FINDING.get(f.kind) for f in findings] + _earlier_emphasis(earlier):
        if name and name not in emphasis:
            emphasis.append(name)  # type: ignore[arg-type]
    order = ("only", "completely", "cleanly")
    out.emphasis = sorted(emphasis, key=order.index)  # type: ignore[arg-type]
    return out


def _earlier_emphasis(rounds: Sequence[Round]) -> list[str]:
    found: list[str] = []
    for r in rounds:
        try:
            found.extend(parse_scene_instruction(r.instruction).emphasis)
        except ParseError:
            pass
    return found


def _ref_for(obj: dict, *, with_colour: str | None) -> RefExpr:
    return RefExpr(shape=obj["shape"], colour=with_colour, size=obj["size"], cell=tuple(obj["cell"]))


def _fix(finding: Finding) -> SceneInstruction | None:
    """An instruction that undoes one side effect on the current image."""
    d = finding.data
    if finding.kind == "extra_object":
        o = d["object"]
        return SceneInstruction(category="subject-remove", ref=_ref_for(o, with_colour=o["colour"]),
                                emphasis=["only"])
    if finding.kind != "neighbour_changed":
        return None
    was, now, change = d["object"], d.get("now"), d.get("change")
    if change == "removed" or now is None:
        return SceneInstruction(category="subject-add", shape=was["shape"], colour=was["colour"], size=was["size"],
                                cell=tuple(was["cell"]), emphasis=["only"])
    if change == "recoloured":
        ref = _ref_for({**now, "shape": was["shape"]}, with_colour=now["colour"] if now["colour"] != was["colour"]
                       else None)
        return SceneInstruction(category="color_alter", ref=ref, colour=was["colour"],
                                emphasis=["only", "completely"])
    if change == "resized":
        return SceneInstruction(category="size_change", ref=_ref_for({**was, "size": now["size"]},
                                                                     with_colour=was["colour"]),
                                direction="smaller" if was["size"] == "small" else "larger", emphasis=["only"])
    if change == "reshaped":
        return SceneInstruction(category="subject-replace", ref=_ref_for(now, with_colour=now["colour"]),
                                shape=was["shape"], colour=was["colour"], emphasis=["only"])
    return None


def _cleanup(finding: Finding) -> SceneInstruction:
    cells = {tuple(c["cell"]) for c in finding.data.get("clusters", [])}
    return SceneInstruction(category="cleanup", cell=next(iter(cells)) if len(cells) == 1 else None)


def critique_scene(req: CritiqueRequest) -> Critique:
    try:
        task = parse_scene_instruction(req.instruction)
    except ParseError:
        return retry_from_source(req, "The instruction is not in the scene grammar")
    history = list(req.history)
    working, base = _working_round(history)
    findings = working.verdict.findings if working.verdict is not None else req.verdict.findings
    kinds = {f.kind for f in findings}
    if not findings:
        return Critique(satisfied=True, analysis="The verifier found nothing left to fix.")

    def restart(why: str) -> Critique:
        specific = _specific(task, req, findings, history)
        pick = first_new(((text, "source") for text in scene_rewordings(specific)), history)
        if pick is None:
            return Critique(satisfied=False, gave_up=True, analysis=f"{why} But every restart the rules know was "
                                                                    "tried; giving up rather than repeating a "
                                                                    "failed instruction.")
        if normal(pick[0]) != normal(render_instruction(specific)):
            why += " The same restart failed before, so it asks with more care, in other words."
        return Critique(satisfied=False, analysis=why, instruction=pick[0], base="source")

    problems = [f for f in findings if f.kind in SIDE_KINDS | RESTART_KINDS | {"artifacts"}]
    if kinds & TARGET_KINDS:
        main = next(f for f in findings if f.kind in TARGET_KINDS)
        return restart(f"The requested edit did not come out right ({main.message}); restarting from the "
                       "source with a more specific instruction.")
    if kinds & RESTART_KINDS or len(problems) > 1:
        listed = "; ".join(f.message for f in problems)
        return restart(f"Several problems ({listed}); restarting from the source, asking for care.")
    if not problems:
        return restart("The verifier is not satisfied; restarting from the source with a more specific instruction.")
    problem = problems[0]
    fix = _cleanup(problem) if problem.kind == "artifacts" else _fix(problem)
    if fix is None:
        return restart(f"{problem.message}; restarting from the source.")
    instruction = render_instruction(fix)
    if normal(instruction) in used(history):
        return restart(f"{problem.message}, and the same fix did not work before; restarting from the source.")
    return Critique(satisfied=False, analysis=f"The main edit is right but {problem.message}; fixing that.",
                    instruction=instruction, base=base)

