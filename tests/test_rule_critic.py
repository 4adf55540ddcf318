import asyncio

import numpy as np
import pytest
from refine_agent.benchmarks.replay import cut, replay
from refine_agent.tools.critics.novelty import normal
from refine_agent.tools.critics.repeat import RepeatCritic
from refine_agent.tools.critics.rule import RuleCritic
from refine_agent.tools.editors.classic import ClassicEditor
from refine_agent.tools.editors.sim import SimEditor
from refine_agent.tools.judges.verify import VerifyJudge
from refine_agent.tools.photo.grammar import parse_photo_instruction
from refine_agent.tools.synthetic import ops
from refine_agent.tools.synthetic.generate import iter_samples
from refine_agent.tools.synthetic.language import parse_scene_instruction
from refine_agent.tools.synthetic.scene import render

from refine_agent.budget import Budget
from refine_agent.errors import UnsupportedInstructionError
from refine_agent.images import Image
from refine_agent.loop import refine
from refine_agent.testing import FunctionEditor, FunctionJudge
from refine_agent.types import Critique, CritiqueRequest, JudgeRequest, Round, StopReason, Trajectory, Verdict

from .photos import photo_array
from .synthetic_truth import expected_scene

SAMPLES = list(iter_samples(60, seed=7))


async def verdict(sample, image: Image) -> Verdict:  # type: ignore[no-untyped-def]
    return await VerifyJudge().judge(JudgeRequest(source=sample.image(), edited=image,
                                                  instruction=sample.instruction, seed=0))


async def critique(sample, images: list[Image], instructions: list[str] | None = None):  # type: ignore[no-untyped-def]
    history = []
    for i, img in enumerate(images):
        history.append(Round(index=i, instruction=(instructions or [sample.instruction] * len(images))[i],
                             base="source", image=img.sha256, verdict=await verdict(sample, img)))
    req = CritiqueRequest(source=sample.image(), edited=images[-1], instruction=sample.instruction,
                          verdict=history[-1].verdict, history=history, seed=0)  # type: ignore[arg-type]
    return await RuleCritic().critique(req)


async def test_a_failed_main_edit_restarts_from_the_source_more_specifically() -> None:
    s = next(x for x in SAMPLES if x.category == "color_alter" and x.difficulty == "hard")
    c = await critique(s, [s.image()])
    assert not c.satisfied and c.base == "source"
    task = parse_scene_instruction(c.instruction or "")
    original = parse_scene_instruction(s.instruction)
    assert task.category == original.category and task.colour == original.colour
    assert task.ref is not None and task.ref.cell is not None and task.ref.size is not None
    assert task.ref.qualifiers() > original.ref.qualifiers()  # type: ignore[union-attr]


async def test_stray_marks_on_a_good_edit_are_cleaned_where_they_are() -> None:
    s = next(x for x in SAMPLES if x.category == "subject-remove")
    arr = render(expected_scene(s))
    ops.add_smudges(arr, np.random.default_rng(2), count=1, region=(70, 70, 120, 120))
    c = await critique(s, [Image(arr)])
    assert c.base == "current" and c.instruction == "Remove the stray marks near the center area"


async def test_a_changed_neighbour_is_put_back_on_the_current_image() -> None:
    s = next(x for x in SAMPLES if x.category == "size_change" and len(x.scene.shapes) >= 3)
    scene = expected_scene(s)
    k = next(i for i in range(len(scene.shapes)) if i != s.target)
    was = scene.shapes[k].colour
    scene.shapes[k].colour = "pink" if was != "pink" else "green"
    c = await critique(s, [Image(render(scene))])
    fix = parse_scene_instruction(c.instruction or "")
    assert c.base == "current" and fix.category == "color_alter" and fix.colour == was
    assert fix.ref is not None and fix.ref.cell == scene.shapes[k].cell


async def test_an_unasked_for_object_is_removed() -> None:
    s = next(x for x in SAMPLES if x.category == "background_change")
    scene = expected_scene(s)
    used = {sh.cell for sh in scene.shapes}
    free = next((r, c) for r in range(3) for c in range(3) if (r, c) not in used)
    from refine_agent.tools.synthetic.scene import Shape, cell_centre
    cx, cy = cell_centre(free)
    scene.shapes.append(Shape(shape="square", colour="black", size="small", cx=cx, cy=cy))
    c = await critique(s, [Image(render(scene))])
    fix = parse_scene_instruction(c.instruction or "")
    assert c.base == "current" and fix.category == "subject-remove" and fix.ref.cell == free  # type: ignore[union-attr]


async def test_works_from_the_best_round_when_the_latest_is_worse() -> None:
    s = next(x for x in SAMPLES if x.category == "subject-remove")
    good = render(expected_scene(s))
    smudged = np.array(good)
    ops.add_smudges(smudged, np.random.default_rng(3), count=1, region=(10, 10, 50, 50))
    c = await critique(s, [Image(smudged), s.image()], [s.instruction, "remove the stray marks"])
    assert c.base == "best" and "stray marks" in (c.instruction or "")


async def test_a_fix_that_failed_before_becomes_a_restart() -> None:
    s = next(x for x in SAMPLES if x.category == "subject-remove")
    arr = render(expected_scene(s))
    ops.add_smudges(arr, np.random.default_rng(2), count=1, region=(70, 70, 120, 120))
    img = Image(arr)
    c = await critique(s, [img, img], [s.instruction, "Remove the stray marks near the center area"])
    assert c.base == "source" and "without leaving marks" in (c.instruction or "")


async def test_nothing_to_fix_means_satisfied() -> None:
    s = SAMPLES[0]
    c = await critique(s, [Image(render(expected_scene(s)))])
    assert c.satisfied and c.instruction is None


async def test_judges_without_findings_fall_back_to_resampling() -> None:
    s = SAMPLES[0]
    v = Verdict(scores={"SC": [3, 9], "PQ": [9, 9]}, passed=False)
    req = CritiqueRequest(source=s.image(), edited=s.image(), instruction=s.instruction, verdict=v,
                          history=[Round(index=0, instruction=s.instruction, base="source", verdict=v)], seed=0)
    c = await RepeatCritic().critique(req)  # the resampling baseline asks again as it was
    assert c.instruction == s.instruction and c.base == "source"
    c = await RuleCritic().critique(req)  # the rule critic never repeats a failed instruction unchanged...
    assert c.base == "source" and normal(c.instruction or "") != normal(s.instruction)
    task = parse_scene_instruction(c.instruction or "")  # ...and rewords it in the grammar the sim editor reads
    assert task.model_copy(update={"emphasis": []}) == parse_scene_instruction(s.instruction)


# -- a judge without findings (a VLM judge, a function judge): the retries stay in the editor's grammar ----------

async def bare_verify(req: JudgeRequest) -> Verdict:
    """``verify``'s scores and pass, without its findings or domain: all a critic gets from a VLM judge."""
    v = await VerifyJudge().judge(req)
    return v.model_copy(update={"findings": [], "info": {}})


async def refine_all(editor, critic, cases: list[tuple[Image, str]], rounds: int = 3) -> list[Trajectory]:  # type: ignore[no-untyped-def]
    judge = FunctionJudge(bare_verify, name="bare-verify")

    async def one(i: int, image: Image, text: str) -> Trajectory:
        res = await refine(image, text, editor=editor, judge=judge, critic=critic, budget=Budget(max_rounds=rounds),
                           seed=0, sample_id=f"s{i}")
        return res.trajectory

    return list(await asyncio.gather(*(one(i, image, text) for i, (image, text) in enumerate(cases))))


def passes(trajectories: list[Trajectory]) -> int:
    return sum(t.best is not None and t.best.verdict is not None and bool(t.best.verdict.passed)
               for t in trajectories)


def photo_grammar(text: str) -> bool:
    try:
        parse_photo_instruction(text)
    except UnsupportedInstructionError:
        return False
    return True


PHOTO_TEXTS = ["make it brighter", "make it slightly warmer and flip it horizontally", "give it more contrast",
               "make it sharper", "rotate it 90 degrees", "make it black and white", "make it much cooler"]


@pytest.mark.parametrize("editor_name", ["sim", "classic"])
async def test_retries_without_findings_are_accepted_by_the_editor(editor_name: str) -> None:
    if editor_name == "sim":
        editor, cases = SimEditor(), [(s.image(), s.instruction) for s in iter_samples(40, 0)]
    else:  # an editor that under-applies; and synthetic recolourings, which are in both grammars
        both = [(s.image(), s.instruction) for s in iter_samples(200, 0) if photo_grammar(s.instruction)]
        editor, cases = ClassicEditor(strength_scale=0.3), [(Image(photo_array()), t) for t in PHOTO_TEXTS] + both[:8]
    rule = await refine_all(editor, RuleCritic(), cases)
    resampled = await refine_all(editor, RepeatCritic(), cases)
    assert sum(len(t.rounds) > 1 for t in rule) >= 5  # enough samples were retried
    for t in rule:
        assert t.stop_reason is not StopReason.editor_failed and all(r.error is None for r in t.rounds), \
            [(r.instruction, r.error) for r in t.rounds]
        texts = [normal(r.instruction) for r in t.rounds]
        assert len(set(texts)) == len(texts), texts  # and none is asked again as it was
    assert passes(rule) >= passes(resampled), (passes(rule), passes(resampled))


# -- a critic with nothing new to ask gives up; it is not satisfied ----------------------------------------------

async def test_a_critic_that_runs_out_of_fixes_gives_up() -> None:
    src = Image(photo_array())
    res = await refine(src, "make it brighter", editor=FunctionEditor(), judge=VerifyJudge(), critic=RuleCritic(),
                       budget=Budget(max_rounds=30), seed=0)  # the editor never changes anything
    t = res.trajectory
    assert t.stop_reason is StopReason.critic_gave_up and len(t.rounds) > 2
    last = t.rounds[-1].critique
    assert last is not None and last.gave_up and not last.satisfied and last.instruction is None
    assert "gives up" in last.analysis
    with pytest.raises(ValueError, match="gives up"):
        Critique(satisfied=True, gave_up=True)
    with pytest.raises(ValueError, match="gave_up"):
        Critique(satisfied=False)
    # Replays and budget cuts treat it like critic_satisfied: the critic's answer after the round.
    assert replay(t, 30).stop_reason is StopReason.critic_gave_up
    assert replay(t, 30).calls_by_kind["critic"] == len(t.rounds)
    assert replay(t, 1).stop_reason is StopReason.max_rounds and cut(t, 1).calls_by_kind["critic"] == 1
    # Runs recorded before it existed still load: critic_satisfied, and critiques without the field.
    old = t.model_dump(mode="json")
    old["stop_reason"] = "critic_satisfied"
    for r in old["rounds"]:
        if r["critique"] is not None:
            r["critique"].pop("gave_up")
            r["critique"]["satisfied"] = r["critique"]["instruction"] is None
    loaded = Trajectory.model_validate(old)
    assert loaded.stop_reason is StopReason.critic_satisfied and loaded.rounds[-1].critique.satisfied  # type: ignore[union-attr]
