import numpy as np

from refine_agent.images import Image
from refine_agent.types import CritiqueRequest, JudgeRequest, Round, Verdict
from tools.critics.repeat import RepeatCritic
from tools.critics.rule import RuleCritic
from tools.judges.verify import VerifyJudge
from tools.synthetic import ops
from tools.synthetic.generate import iter_samples
from tools.synthetic.language import parse_scene_instruction
from tools.synthetic.scene import render

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
    from tools.synthetic.scene import Shape, cell_centre
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
    for critic in (RuleCritic(), RepeatCritic()):
        c = await critic.critique(req)
        assert c.instruction == s.instruction and c.base == "source"
