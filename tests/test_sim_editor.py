from collections import Counter

import numpy as np
import pytest
from refine_agent.tools.editors.sim import SimEditor
from refine_agent.tools.judges.verify import VerifyJudge
from refine_agent.tools.synthetic.generate import iter_samples
from refine_agent.tools.synthetic.language import full_ref, render_instruction
from refine_agent.tools.synthetic.scene import CANVAS

from refine_agent.errors import UnsupportedInstructionError
from refine_agent.types import EditRequest, JudgeRequest

SAMPLES = list(iter_samples(120, seed=11))


async def edit(editor: SimEditor, sample, seed: int, instruction: str | None = None):  # type: ignore[no-untyped-def]
    src = sample.image()
    return src, await editor.edit(EditRequest(image=src, instruction=instruction or sample.instruction, seed=seed,
                                              source=src))


async def test_a_perfect_editor_passes_every_sample() -> None:
    editor, judge = SimEditor({"skill": 1.0}), VerifyJudge()
    for s in SAMPLES[:60]:
        src, out = await edit(editor, s, seed=1)
        v = await judge.judge(JudgeRequest(source=src, edited=out.image, instruction=s.instruction, seed=1))
        assert v.passed, (s.instruction, v.reasoning)


async def test_default_one_shot_pass_rate_is_realistic() -> None:
    editor, judge = SimEditor(), VerifyJudge()
    passed = 0
    for i, s in enumerate(SAMPLES):
        src, out = await edit(editor, s, seed=i)
        v = await judge.judge(JudgeRequest(source=src, edited=out.image, instruction=s.instruction, seed=i))
        passed += bool(v.passed)
    assert 0.40 <= passed / len(SAMPLES) <= 0.75


async def test_failures_are_seeded() -> None:
    editor = SimEditor()
    s = SAMPLES[0]
    a = [(await edit(editor, s, seed))[1].image.sha256 for seed in range(12)]
    b = [(await edit(editor, s, seed))[1].image.sha256 for seed in range(12)]
    assert a == b and len(set(a)) > 1


async def test_all_failure_modes_happen() -> None:
    editor = SimEditor({"skill": 0.2})
    events: Counter[str] = Counter()
    for i, s in enumerate(SAMPLES):
        _, out = await edit(editor, s, seed=i)
        events.update(e.split(":")[0] for e in out.info["simulated"])
    for mode in ("wrong_referent", "partial", "over_edit", "artifact", "no_change", "misplace", "wrong_attribute"):
        assert events[mode] > 0, (mode, events)
    assert {"typical", "stubborn", "beyond"} & set(events)


async def test_specific_and_careful_instructions_fail_less() -> None:
    editor = SimEditor()
    hard = [s for s in SAMPLES if s.difficulty == "hard"][:12]
    plain, careful = Counter(), Counter()
    for s in hard:
        ref = full_ref(s.scene.shapes[s.target], s.scene.shapes)
        specific = render_instruction(s.task.model_copy(update={"ref": ref, "emphasis": ["only", "completely",
                                                                                           "cleanly"]}))
        for seed in range(25):
            plain.update((await edit(editor, s, seed))[1].info["simulated"])
            careful.update((await edit(editor, s, seed, specific))[1].info["simulated"])
    for mode in ("wrong_referent", "partial", "over_edit", "artifact"):
        assert careful[mode] < plain[mode], (mode, plain, careful)


async def test_higher_skill_fails_less() -> None:
    counts = []
    for skill in (0.2, 0.5, 0.8):
        editor = SimEditor({"skill": skill})
        n = 0
        for i, s in enumerate(SAMPLES[:60]):
            n += len([e for e in (await edit(editor, s, i))[1].info["simulated"] if ":" not in e])
        counts.append(n)
    assert counts[0] > counts[1] > counts[2]


async def test_out_of_grammar_and_photos_are_clear_errors() -> None:
    editor = SimEditor()
    with pytest.raises(UnsupportedInstructionError, match="sim editor does not understand"):
        await edit(editor, SAMPLES[0], 0, "make it look like a van Gogh")
    from refine_agent.images import Image
    photo = Image(np.random.default_rng(0).integers(0, 256, (CANVAS, CANVAS, 3), dtype=np.uint8))
    with pytest.raises(UnsupportedInstructionError, match="--editor classic"):
        await editor.edit(EditRequest(image=photo, instruction="make the red circle blue", seed=0))


async def test_removing_stray_marks_cleans_them() -> None:
    editor = SimEditor({"skill": 1.0})
    s = SAMPLES[0]
    src = s.image()
    from refine_agent.tools.synthetic import ops
    from refine_agent.tools.synthetic.detect import detect
    dirty = np.array(src.array)
    ops.add_smudges(dirty, np.random.default_rng(0), count=2)
    from refine_agent.images import Image
    assert detect(dirty).artifact_pixels > 0
    out = await editor.edit(EditRequest(image=Image(dirty), instruction="remove the stray marks", seed=0, source=src))
    assert detect(out.image.array).artifact_pixels == 0
