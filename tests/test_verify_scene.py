import numpy as np
from refine_agent.tools.judges.verify import VerifyJudge
from refine_agent.tools.synthetic import ops
from refine_agent.tools.synthetic.generate import iter_samples
from refine_agent.tools.synthetic.scene import render

from refine_agent.images import Image
from refine_agent.types import JudgeRequest

from .synthetic_truth import expected_image, expected_scene

SAMPLES = list(iter_samples(60, seed=5))


async def judge(sample, edited: Image, **opts):  # type: ignore[no-untyped-def]
    return await VerifyJudge(opts).judge(JudgeRequest(source=sample.image(), edited=edited,
                                                      instruction=sample.instruction, seed=opts.pop("seed", 0)
                                                      if "seed" in opts else 0))


async def test_ground_truth_edits_score_full_marks() -> None:
    for s in SAMPLES:
        v = await judge(s, expected_image(s))
        assert v.passed and v.overall == 10.0, (s.instruction, v.reasoning)
        assert v.scores == {"SC": [10.0, 10.0], "PQ": [10.0, 10.0]}
        assert v.info["domain"] == "scene"


async def test_an_unchanged_image_fails_on_success() -> None:
    for s in SAMPLES[:24]:
        v = await judge(s, s.image())
        assert not v.passed and v.scores["SC"][0] == 0.0, s.instruction
        assert {f.kind for f in v.findings} & {"target_unchanged", "missing_object"}


async def test_editing_the_wrong_object_is_seen() -> None:
    s = next(x for x in SAMPLES if x.category == "color_alter" and x.difficulty == "hard")
    scene = s.scene.model_copy(deep=True)
    other = next(i for i, sh in enumerate(scene.shapes) if i != s.target and sh.shape == scene.shapes[s.target].shape
                 and sh.colour == scene.shapes[s.target].colour)
    scene.shapes[other].colour = s.task.colour  # type: ignore[assignment]
    v = await judge(s, Image(render(scene)))
    kinds = {f.kind for f in v.findings}
    assert "target_unchanged" in kinds and "wrong_object" in kinds and not v.passed
    assert v.scores["SC"][1] <= 6.0


async def test_side_effects_partial_edits_and_artifacts_lower_the_right_scores() -> None:
    s = next(x for x in SAMPLES if x.category == "subject-remove" and len(x.scene.shapes) >= 3)
    good = expected_scene(s)
    # a neighbour also removed: overediting drops, success stays
    worse = good.model_copy(deep=True)
    worse.shapes.pop(0)
    v = await judge(s, Image(render(worse)))
    assert v.scores["SC"][0] == 10 and v.scores["SC"][1] <= 6 and "neighbour_changed" in {f.kind for f in v.findings}
    # stray marks: artifacts score drops and the finding says where
    arr = render(good)
    ops.add_smudges(arr, np.random.default_rng(1), count=1)
    v = await judge(s, Image(arr))
    art = [f for f in v.findings if f.kind == "artifacts"]
    assert v.scores["PQ"][1] < 7 and art and art[0].data["clusters"][0]["cell"]
    # half a background change
    b = next(x for x in SAMPLES if x.category == "background_change")
    arr = np.array(b.image().array)
    from refine_agent.tools.synthetic.detect import detect
    ops.change_background(arr, detect(arr), b.task.colour, 0.5, np.random.default_rng(0))  # type: ignore[arg-type]
    v = await judge(b, Image(arr))
    assert 3 <= v.scores["SC"][0] <= 7 and "partial_edit" in {f.kind for f in v.findings}


async def test_noise_is_seeded_and_never_turns_into_a_failed_status() -> None:
    s = SAMPLES[0]
    edited = expected_image(s)
    j = VerifyJudge({"noise": 1.5})
    a = await j.judge(JudgeRequest(source=s.image(), edited=edited, instruction=s.instruction, seed=1))
    b = await j.judge(JudgeRequest(source=s.image(), edited=edited, instruction=s.instruction, seed=1))
    c = await j.judge(JudgeRequest(source=s.image(), edited=edited, instruction=s.instruction, seed=2))
    assert a.scores == b.scores and a.scores != c.scores and a.ok
    assert all(0 <= x <= 10 for xs in a.scores.values() for x in xs)
    # identity carries the noise level, so cached verdicts never mix noisy and exact judges
    assert j.identity()["params"]["noise"] == 1.5


async def test_instructions_it_cannot_check_are_unsupported_not_scored() -> None:
    s = SAMPLES[0]
    v = await VerifyJudge().judge(JudgeRequest(source=s.image(), edited=s.image(),
                                               instruction="make it look like a van Gogh", seed=0))
    assert v.status == "unsupported" and v.overall is None and "scene check" in v.reasoning
