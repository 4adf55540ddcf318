"""Hostile inputs to the built-in tools (issue 8): extreme image shapes for ``verify``'s geometry check (High 4),
stacked strengths and hostile instruction text for the classic grammar (Medium 7), and the rule critic that must
never repeat a failed instruction unchanged (Low)."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from refine_agent.tools.critics.novelty import normal
from refine_agent.tools.critics.rule import RuleCritic
from refine_agent.tools.editors.classic import ClassicEditor
from refine_agent.tools.editors.sim import SimEditor
from refine_agent.tools.judges.verify import VerifyJudge
from refine_agent.tools.photo.grammar import MAX_STRENGTH, parse_photo_instruction
from refine_agent.tools.photo.measure import accepted_transforms
from refine_agent.tools.photo.ops import apply_plan
from refine_agent.tools.synthetic.generate import iter_samples
from refine_agent.tools.synthetic.language import parse_scene_instruction

from refine_agent.budget import Budget
from refine_agent.images import Image
from refine_agent.loop import refine
from refine_agent.types import CritiqueRequest, EditRequest, JudgeRequest, Round, Trajectory, Verdict
from tests.photos import photo_array

from .conftest import cli

# -- High 4: verify's geometry check on any shape --------------------------------------------------------------

SMALL = (1, 2, 7, 20)
# Every pair of small sides, and thin strips and panoramas up to 3000 px (few: they take longer to judge).
SHAPES = sorted(set(itertools.product(SMALL, SMALL)) | {
    (1, 300), (300, 1), (2, 1000), (1000, 7), (7, 137), (20, 3000), (137, 1000), (1000, 137), (300, 3000)})
CORRECT = ("rotate it 90 degrees", "flip it horizontally", "rotate it 180 degrees", "make it slightly warmer",
           "make it brighter")
# (asked, done): a wrong rotation or flip, one not made (None: the image comes back unchanged), one not asked.
WRONG = (("rotate it 90 degrees clockwise", "rotate left"), ("flip it horizontally", "flip it vertically"),
         ("rotate it 180 degrees", None), ("rotate it 90 degrees", None),
         ("make it warmer", "rotate it 90 degrees and make it warmer"))


def shaped(h: int, w: int) -> np.ndarray:
    """A photo-like image squeezed to h x w (box-filtered, so even a 1 px strip keeps real content)."""
    big = photo_array(max(h, 96), max(w, 128))
    return np.asarray(PILImage.fromarray(big).resize((w, h), PILImage.Resampling.BOX))


def edited(src: np.ndarray, text: str | None) -> np.ndarray:
    return src.copy() if text is None else apply_plan(src, parse_photo_instruction(text))


def judge(src: np.ndarray, out: np.ndarray, text: str) -> Verdict:
    req = JudgeRequest(source=Image(src), edited=Image(out), instruction=text, seed=0)
    return VerifyJudge()._judge(req)  # the pixel work, without the async wrapper


def geometry_message(v: Verdict) -> str:
    return " ".join(f.message for f in v.findings if f.kind == "geometry")


def accepted(text: str) -> set[str]:
    """The rotations/flips that satisfy ``text`` ("identity" when it asks for none)."""
    return accepted_transforms([op for op in parse_photo_instruction(text).ops if op.op in ("rotate", "flip")])


@pytest.mark.parametrize("h, w", SHAPES)
def test_correct_edits_pass_on_any_shape(h: int, w: int) -> None:
    src = shaped(h, w)
    texts = CORRECT if h * w <= 40_000 else CORRECT[:1] if h * w > 200_000 else CORRECT[:2]  # the big few: less
    for text in texts:
        v = judge(src, edited(src, text), text)
        assert "None" not in v.reasoning and "'None'" not in geometry_message(v), (h, w, text, v.reasoning)
        if text.startswith(("rotate", "flip")):  # geometry is always measurable or honestly "cannot tell"
            assert v.status == "ok", (h, w, text, v.reasoning)
        if v.status == "ok":
            assert v.passed and "geometry" not in [f.kind for f in v.findings], (h, w, text, v.reasoning)
            m = v.info["measurements"]
            if m["geometry_decidable"]:  # the transform found is one the instruction asks for
                assert m["detected_transform"] in accepted(text), (h, w, text, m)
            else:  # only a speck, or a strip too thin for its rows to differ, says so
                assert m["detected_transform"] == "cannot tell", (h, w, text, m)
                assert min(h, w) <= 2 or max(h, w) >= 100 * min(h, w), (h, w, text, m)
        else:  # a tone too few pixels show (it needs 16 mid-tone pixels): unsupported, never a guessed score
            assert v.status == "unsupported" and h * w < 64, (h, w, text, v.reasoning)


@pytest.mark.parametrize("h, w", [s for s in SHAPES if s[0] * s[1] <= 40_000])
def test_wrong_rotations_and_flips_are_still_caught(h: int, w: int) -> None:
    src = shaped(h, w)
    for asked, done in WRONG:
        out = edited(src, done)
        if np.array_equal(out, edited(src, asked)):
            continue  # on this shape the two give the same pixels (a 1 px row flipped upside down, a 1x1 rotated)
        v = judge(src, out, asked)
        if v.status == "unsupported":
            continue  # too small to measure the tone part of the request at all
        assert not v.passed, (h, w, asked, done, v.reasoning)
        assert v.info["measurements"]["geometry_decidable"] is False or geometry_message(v), \
            (h, w, asked, done, v.reasoning)
        assert "'None'" not in geometry_message(v)


GEOMETRY = ("rotate it 90 degrees clockwise", "rotate it 90 degrees counterclockwise", "rotate it 180 degrees",
            "flip it horizontally", "flip it vertically")


@pytest.mark.parametrize("h, w", [(2, 2), (3, 3), (2, 3), (3, 2), (4, 4), (5, 5), (3, 20)])
def test_a_wrong_transform_of_a_tiny_image_is_caught_or_cannot_tell(h: int, w: int) -> None:
    """On a few pixels a wrong flip can look like the asked rotation: then "cannot tell", never "Flip 10/10"."""
    src = shaped(h, w)
    for asked, done in itertools.permutations(GEOMETRY, 2):
        out = edited(src, done)
        if np.array_equal(out, edited(src, asked)):
            continue  # the same pixels: not a wrong edit
        v = judge(src, out, asked)
        m = v.info["measurements"]
        if v.passed:
            assert m["geometry_decidable"] is False and m["detected_transform"] == "cannot tell", (h, w, asked, done)
            assert "cannot tell" in v.reasoning, (h, w, asked, done, v.reasoning)
        else:
            assert geometry_message(v) or m["geometry_decidable"] is False, (h, w, asked, done, v.reasoning)


def test_a_panorama_rotated_the_wrong_way_names_the_transform() -> None:
    src = shaped(137, 1000)
    v = judge(src, edited(src, "rotate left"), "rotate it 90 degrees clockwise")
    assert not v.passed and "'rotate 90 counterclockwise' of the source" in geometry_message(v)
    v = judge(src, edited(src, "make it warmer"), "rotate it 90 degrees")  # not rotated: the shape shows it
    assert not v.passed and "'identity' of the source" in geometry_message(v)


@pytest.mark.parametrize("image", [shaped(1, 1), np.full((40, 60, 3), 128, np.uint8)], ids=["1x1", "uniform"])
def test_geometry_that_cannot_be_told_is_said_and_not_penalised(image: np.ndarray) -> None:
    for text in ("rotate it 180 degrees", "flip it vertically"):
        v = judge(image, edited(image, text), text)
        assert v.status == "ok" and v.passed, v.reasoning
        assert "cannot tell" in v.reasoning and v.info["measurements"]["geometry_decidable"] is False


def test_an_editor_resize_passes_but_a_stretch_is_named() -> None:
    src = shaped(60, 480)
    out = edited(src, "make it warmer")
    bigger = np.asarray(PILImage.fromarray(out).resize((960, 120)))  # same aspect ratio
    assert judge(src, bigger, "make it warmer").passed
    square = np.asarray(PILImage.fromarray(out).resize((256, 256)))
    v = judge(src, square, "make it warmer")
    assert not v.passed and "256x256 px but the source is 480x60 px" in geometry_message(v)


def test_a_wide_photo_through_the_cli_passes_in_one_round(tmp_path: Path) -> None:
    src = tmp_path / "wide.png"
    PILImage.fromarray(shaped(137, 1000)).save(src)
    for i, text in enumerate(("make it slightly warmer and flip it horizontally",)):
        r = cli("edit", src, text, "--editor", "classic", "--out", tmp_path / f"o{i}")
        assert r.exit_code == 0 and "Traceback" not in r.output, r.output
        data = json.loads((tmp_path / f"o{i}" / "trajectory.json").read_text())
        assert data["stop_reason"] == "passed" and len(data["rounds"]) == 1, data["rounds"][-1]["verdict"]


# -- Medium 7: stacked strengths and hostile instruction text ---------------------------------------------------

STACKED = {
    "dramatic x5": " and ".join(["dramatically brighter"] * 5),
    "20 brighter": " and ".join(["brighter"] * 20),
    "10k clauses": ("make it brighter, " * 600)[:10_000].rsplit(",", 1)[0],
    "contrast x10": " and ".join(["dramatically more contrast"] * 10),
    "mixed": " and ".join(["much brighter", "dramatically more saturated", "much warmer"] * 4),
    "blur x6": " and ".join(["dramatically blurrier"] * 6),
}
REFUSED = {
    "10k words": "x" * 10_000,
    "unicode": "make it brighter ✨ ünïcödé 🎨",
    "empty-ish": "   ,,, and ;; then  ",
    "markup": "make it brighter [/] [bold]warmer[/bold]",
    "only markup": "[/]",
    "too many edits": " and ".join(["flip it", "rotate it 90 degrees"] * 10),
}


@pytest.mark.parametrize("name", sorted(STACKED))
def test_stacked_strengths_are_capped_with_a_note(name: str) -> None:
    plan = parse_photo_instruction(STACKED[name])
    assert plan.notes and all("capped at 3x" in n for n in plan.notes)
    assert all(op.strength <= MAX_STRENGTH for op in plan.ops) and len(plan.ops) <= 3


def test_strengths_within_the_cap_are_unchanged() -> None:
    plan = parse_photo_instruction("make it brighter and much brighter and slightly warmer")
    assert plan.notes == [] and [op.strength for op in plan.ops] == [1.0, 2.0, 0.5]


def test_an_error_quotes_a_long_instruction_shortly() -> None:
    with pytest.raises(Exception, match="does not understand") as info:
        parse_photo_instruction("x" * 10_000)
    assert len(str(info.value)) < 400
    with pytest.raises(Exception, match="ünïcödé"):  # other scripts are quoted as written, not as "n c d"
        parse_photo_instruction("make it brighter ünïcödé")


async def _edit_judge_critique(text: str) -> tuple[Verdict, object]:
    src = Image(photo_array())
    try:
        out = (await ClassicEditor().edit(EditRequest(image=src, instruction=text, seed=0))).image
    except Exception as exc:  # the editor may refuse, with its own clear error, never an internal one
        assert type(exc).__name__ == "UnsupportedInstructionError", exc
        out = src
    v = await VerifyJudge().judge(JudgeRequest(source=src, edited=out, instruction=text, seed=0))
    history = [Round(index=0, instruction=text, base="source", image=out.sha256, verdict=v)]
    c = await RuleCritic().critique(CritiqueRequest(source=src, edited=out, instruction=text, verdict=v,
                                                    history=history, seed=0))
    return v, c


@pytest.mark.parametrize("name", sorted(STACKED) + sorted(REFUSED))
async def test_editor_judge_and_critic_survive_hostile_instructions(name: str) -> None:
    text = STACKED.get(name) or REFUSED[name]
    v, _ = await _edit_judge_critique(text)
    if name in STACKED:
        assert v.status == "ok" and v.passed and "capped at 3x" in v.reasoning, v.reasoning
    else:
        assert v.status == "unsupported" and len(v.reasoning) < 1000, v.reasoning


@pytest.mark.parametrize("text", [STACKED["dramatic x5"], STACKED["10k clauses"], REFUSED["markup"],
                                  REFUSED["unicode"], REFUSED["empty-ish"], REFUSED["10k words"]])
def test_hostile_instructions_through_the_cli(tmp_path: Path, text: str) -> None:
    src = tmp_path / "p.png"
    PILImage.fromarray(photo_array()).save(src)
    r = cli("edit", src, text, "--editor", "classic", "--out", tmp_path / "o")
    assert "Traceback" not in r.output and "ValidationError" not in r.output and "internal error" not in r.output
    if text in STACKED.values():
        assert r.exit_code == 0, r.output
        verdict = json.loads((tmp_path / "o" / "trajectory.json").read_text())["rounds"][0]["verdict"]
        assert verdict["passed"] and "capped at 3x" in verdict["reasoning"]
    else:
        assert r.exit_code != 0 and "classic editor" in r.output, r.output


# -- Low: the rule critic never repeats a failed instruction unchanged -----------------------------------------

def repeats(rounds: list[Round]) -> list[str]:
    """Instructions issued again, with the same kind of base, after a round with them did not pass."""
    failed: set[tuple[str, str]] = set()
    out = []
    for r in rounds:
        key = (normal(r.instruction), r.base)
        if key in failed:
            out.append(f"round {r.index}: {r.instruction!r} ({r.base})")
        if r.verdict is None or not r.verdict.passed:
            failed.add(key)
    return out


async def test_no_synthetic_trajectory_repeats_a_failed_instruction() -> None:
    editor, judge_, critic = SimEditor(), VerifyJudge(), RuleCritic()

    async def one(sample) -> Trajectory:  # type: ignore[no-untyped-def]
        res = await refine(sample.image(), sample.instruction, editor=editor, judge=judge_, critic=critic,
                           budget=Budget(max_rounds=3), seed=0, sample_id=sample.id)
        return res.trajectory

    trajectories = await asyncio.gather(*(one(s) for s in iter_samples(100, 0)))
    assert sum(len(t.rounds) > 2 for t in trajectories) >= 10  # enough of them went on past a failed restart
    bad = {t.sample_id: repeats(t.rounds) for t in trajectories if repeats(t.rounds)}
    assert not bad, bad


@pytest.mark.parametrize("scale", [0.3, 2.5])  # an editor that under-applies, and one that overshoots
async def test_no_photo_trajectory_repeats_a_failed_instruction(scale: float) -> None:
    editor = ClassicEditor(strength_scale=scale)
    texts = ["make it brighter", "make it cooler and brighter", "make it sharper",
             "flip it horizontally and make it warmer"]
    for text in texts:
        res = await refine(Image(photo_array()), text, editor=editor, judge=VerifyJudge(), critic=RuleCritic(),
                           budget=Budget(max_rounds=4), seed=0)
        assert not repeats(res.trajectory.rounds), (text, [(r.instruction, r.base) for r in res.trajectory.rounds])


async def _stuck(src: Image, text: str, out: Image, limit: int = 40) -> list[Round]:
    """Critique an editor that always returns ``out``, until the critic stops."""
    history: list[Round] = []
    instruction, base = text, "source"
    for i in range(limit):
        v = await VerifyJudge().judge(JudgeRequest(source=src, edited=out, instruction=text, seed=0))
        history.append(Round(index=i, instruction=instruction, base=base, base_round=None if base == "source"
                             else i - 1, image=out.sha256, verdict=v))
        c = await RuleCritic().critique(CritiqueRequest(source=src, edited=out, instruction=text, verdict=v,
                                                        history=history, seed=0))
        if c.satisfied or c.gave_up:
            assert c.gave_up and not c.satisfied and c.instruction is None, c  # never "satisfied" with a failure
            return history
        instruction, base = c.instruction or "", c.base
    raise AssertionError(f"the critic never stopped: {[(r.instruction, r.base) for r in history]}")


@pytest.mark.parametrize("domain", ["photo", "scene"])
async def test_a_stuck_editor_gets_new_instructions_until_the_critic_stops(domain: str) -> None:
    if domain == "photo":
        src, text = Image(photo_array()), "make it brighter"
    else:
        sample = next(s for s in iter_samples(20, 0) if s.category == "color_alter")
        src, text = sample.image(), sample.instruction
    history = await _stuck(src, text, src)  # nothing ever changes
    assert len(history) >= 4 and not repeats(history), [(r.instruction, r.base) for r in history]


NO_FINDINGS = [("make it pop", "photo"), ("flip it horizontally and make it warmer", "photo"),
               ("Make the red circle blue", "both"), ("Remove the big green square", "scene"),
               ("make the sky look like a van Gogh painting", "none")]


@pytest.mark.parametrize("text, grammar", NO_FINDINGS)
async def test_a_judge_without_findings_gets_reworded_retries_then_a_stop(text: str, grammar: str) -> None:
    src = Image(photo_array())
    v = Verdict(scores={"SC": [3, 9], "PQ": [9, 9]}, passed=False)
    history = [Round(index=0, instruction=text, base="source", image=src.sha256, verdict=v)]
    for i in range(1, 20):
        c = await RuleCritic().critique(CritiqueRequest(source=src, edited=src, instruction=text,
                                                        verdict=v, history=history, seed=0))
        if c.gave_up:
            break
        history.append(Round(index=i, instruction=c.instruction or "", base=c.base, image=src.sha256, verdict=v))
    else:
        raise AssertionError("the critic never stopped")
    assert "giving up rather than repeating" in c.analysis and not c.satisfied and len(history) >= 3
    assert len({normal(r.instruction) for r in history}) == len(history)
    # Every retry means the same in each grammar the instruction is in, so the editor that took it takes them all.
    for r in history[1:]:
        if grammar in ("photo", "both"):
            assert parse_photo_instruction(r.instruction).ops == parse_photo_instruction(text).ops, r.instruction
        if grammar in ("scene", "both"):
            assert parse_scene_instruction(r.instruction).model_copy(update={"emphasis": []}) == \
                parse_scene_instruction(text).model_copy(update={"emphasis": []}), r.instruction
        if grammar == "none":
            assert r.instruction.startswith(text)
    blank = await RuleCritic().critique(CritiqueRequest(source=src, edited=src, instruction="   ", verdict=v,
                                                        history=[], seed=0))
    assert blank.gave_up  # nothing to ask again: a clear stop, never a validation error
