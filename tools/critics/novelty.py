"""What the rule critic may not do: ask again, unchanged, for an edit that already failed.

An action is an instruction (compared by ``normal``: without case, spacing or final punctuation) and a base
kind (source, current, best). Once an action was used in a round that did not pass, the critic escalates or
changes strategy instead: stronger or gentler wording, a restart from the source, other words for the same
request. When every variation it knows was tried, it gives up (``Critique.gave_up``) rather than repeat itself.

Other words stay in the grammar the instruction is in, so the editor that took it takes them too: the scene
grammar's phrasings and emphasis, the photo grammar's phrasings (``render_plan(plan, style)``). Free text is
added only to an instruction in neither grammar (a real model's editor reads any text).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from refine_agent.tools.photo.grammar import STYLES, PhotoOp, PhotoPlan, parse_photo_instruction, render_plan
from refine_agent.tools.synthetic.language import (
    ParseError,
    SceneInstruction,
    parse_scene_instruction,
    phrasings,
    render_instruction,
)

from refine_agent.errors import UnsupportedInstructionError
from refine_agent.types import Base, Critique, CritiqueRequest, Round

Action = tuple[str, Base]
T = TypeVar("T")

# Other words for a request in no grammar (a judge without findings, a real editor), so asking again is not a
# repeat. Never used for a grammar instruction: the built-in editors would refuse the extra words.
_RETRY_SUFFIXES = ("", ". Follow the instruction exactly", ". Follow the instruction exactly and change nothing else",
                   ". Make the change clearly and completely, and change nothing else")
_CAREFUL = ["only", "completely", "cleanly"]  # every emphasis of the scene grammar, in its order


def normal(text: str) -> str:
    """An instruction as compared, the one notion of "the same instruction": lower case, single spaces, no
    final punctuation."""
    return " ".join(text.lower().split()).rstrip(" .!")


def failed(rounds: Sequence[Round]) -> set[Action]:
    """The actions of rounds that did not pass (an edit that failed to run counts: it would fail again)."""
    return {(normal(r.instruction), r.base) for r in rounds if r.verdict is None or not r.verdict.passed}


def used(rounds: Sequence[Round], base: Base | None = None, base_round: int | None = None) -> set[str]:
    """The instructions (``normal``) of ``rounds``, of those from ``base`` (and ``base_round``) when given."""
    return {normal(r.instruction) for r in rounds
            if (base is None or r.base == base) and (base_round is None or r.base_round == base_round)}


def _as_action(candidate: object) -> Action:
    return candidate  # type: ignore[return-value]


def first_new(candidates: Iterable[T], rounds: Sequence[Round],
              action: Callable[[T], Action] = _as_action) -> T | None:
    """The first candidate whose action (``action(candidate)``: instruction and base) has not already failed,
    or None. Candidates are read lazily, so a costly tail is made only when needed."""
    done = failed(rounds)
    for candidate in candidates:
        text, base = action(candidate)
        if text.strip() and (normal(text), base) not in done:
            return candidate
    return None


# -- other words for the same request ----------------------------------------------------------------------

def scene_rewordings(task: SceneInstruction) -> list[str]:
    """A scene instruction as worded, then with every emphasis (care against each failure mode) in each of the
    grammar's phrasings: a failed request is escalated, never repeated."""
    careful = task.model_copy(update={"emphasis": list(_CAREFUL)})
    texts = [render_instruction(task)] + [render_instruction(careful, s) for s in range(phrasings(task.category))]
    return list(dict.fromkeys(texts))


def photo_rewordings(plan: PhotoPlan | list[PhotoOp]) -> list[str]:
    """A photo plan in each of the grammar's phrasings, the canonical one first."""
    return list(dict.fromkeys(render_plan(plan, style) for style in range(STYLES)))


def _scene(text: str) -> SceneInstruction | None:
    try:
        return parse_scene_instruction(text)
    except ParseError:
        return None


def _photo(text: str) -> PhotoPlan | None:
    try:
        return parse_photo_instruction(text)
    except UnsupportedInstructionError:
        return None


def _plain(task: SceneInstruction | None) -> SceneInstruction | None:
    return None if task is None else task.model_copy(update={"emphasis": []})


def retry_texts(instruction: str) -> list[str]:
    """Ways to ask for ``instruction`` again, as it is first, for a critic that knows nothing more specific.

    In the grammar it is in: each text means the same in every grammar the instruction parses in (a scene
    instruction such as "make the red circle blue" is also a photo recolouring), so whichever built-in editor
    took the instruction takes every retry. Free-text wording only for an instruction in neither grammar."""
    core = instruction.strip()
    if not core.rstrip(" .!"):
        return []
    scene, photo = _scene(core), _photo(core)
    if scene is None and photo is None:
        core = core.rstrip(" .!")
        return [core + suffix for suffix in _RETRY_SUFFIXES]
    texts = [core]
    if scene is not None:  # with care first; then only other phrasings, which a recolouring's photo reading takes
        texts += scene_rewordings(scene) + [render_instruction(scene, s) for s in range(phrasings(scene.category))]
    if photo is not None:
        texts += photo_rewordings(photo)
    return [t for t in dict.fromkeys(texts)
            if (scene is None or _plain(_scene(t)) == _plain(scene))
            and (photo is None or ((p := _photo(t)) is not None and p.ops == photo.ops))]


def retry_from_source(req: CritiqueRequest, why: str) -> Critique:
    """Sample the edit again from the source, in words not yet tried (a failed instruction is never repeated
    unchanged); give up when every wording was tried or there is no instruction to repeat."""
    pick = first_new(((t, "source") for t in retry_texts(req.instruction)), req.history)
    if pick is None:
        return Critique(satisfied=False, gave_up=True,
                        analysis=f"{why}, and every way of asking again was tried; giving up rather than "
                                 "repeating a failed instruction.")
    return Critique(satisfied=False, instruction=pick[0], base="source",
                    analysis=f"{why}; sampling the edit again from the source.")
