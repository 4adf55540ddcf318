import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from refine_agent.tools.synthetic.detect import detect, is_scene
from refine_agent.tools.synthetic.generate import iter_samples, make_sample, write_dataset
from refine_agent.tools.synthetic.language import (
    ParseError,
    RefExpr,
    describe_ref,
    parse_scene_instruction,
    render_instruction,
    resolve,
)
from refine_agent.tools.synthetic.palette import SHAPE_COLOURS
from refine_agent.tools.synthetic.scene import CANVAS

from refine_agent.images import load_image

SAMPLES = list(iter_samples(120, seed=3))


def test_samples_are_deterministic_and_seeded() -> None:
    assert make_sample(5, 3) == SAMPLES[5]
    assert make_sample(5, 4).instruction != SAMPLES[5].instruction or make_sample(5, 4).scene != SAMPLES[5].scene


def test_scenes_have_two_to_six_flat_shapes_in_two_sizes() -> None:
    counts = Counter()
    for s in SAMPLES:
        assert 2 <= len(s.scene.shapes) <= 6
        for sh in s.scene.shapes:
            counts[sh.shape] += 1
            counts[sh.size] += 1
            assert sh.colour in SHAPE_COLOURS
    assert {"circle", "square", "triangle", "small", "large"} <= set(counts)


def test_all_categories_and_both_difficulties_appear() -> None:
    cats = Counter(s.category for s in SAMPLES)
    assert set(cats) == {"color_alter", "subject-add", "subject-remove", "subject-replace", "size_change",
                         "background_change"}
    hard = [s for s in SAMPLES if s.difficulty == "hard"]
    assert len(hard) > 15
    for s in hard:  # look-alikes exist and a qualifier is needed
        t = s.scene.shapes[s.target]
        alike = [o for o in s.scene.shapes if o.shape == t.shape and o.colour == t.colour]
        assert len(alike) >= 2 and s.task.ref is not None and s.task.ref.qualifiers() >= 1
    for s in SAMPLES:
        if s.difficulty == "easy" and s.task.ref is not None:
            assert s.task.ref.qualifiers() == 0


def test_every_instruction_parses_back_to_its_task_and_names_one_object() -> None:
    for s in SAMPLES:
        assert parse_scene_instruction(s.instruction) == s.task
        if s.task.ref is not None:
            assert resolve(s.task.ref, s.scene.shapes) == [s.target]


def test_detection_recovers_the_scene_from_pixels() -> None:
    for s in SAMPLES[:60]:
        arr = s.image().array
        assert is_scene(arr)
        d = detect(arr)
        assert d.background == s.scene.background and d.artifact_pixels == 0
        assert sorted((o.shape, o.colour, o.size, o.cell) for o in d.objects) == sorted(
            (x.shape, x.colour, x.size, x.cell) for x in s.scene.shapes)


def test_photos_are_not_scenes() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS]
    photo = np.stack([xx, yy, (xx + yy) // 2], axis=2).astype(np.uint8) + rng.integers(0, 8, (CANVAS, CANVAS, 3),
                                                                                        dtype=np.uint8)
    assert not is_scene(photo)


@pytest.mark.parametrize("text", ["make it pop", "remove the red", "add a purple hexagon in the top-left area",
                                  "make the red circle teal", ""])
def test_text_outside_the_grammar(text: str) -> None:
    with pytest.raises(ParseError):
        parse_scene_instruction(text)


def test_tolerant_phrasing_and_emphasis() -> None:
    t = parse_scene_instruction("Change ONLY the colour of the whole big red circle in the top left corner to blue.")
    assert t.ref == RefExpr(shape="circle", colour="red", size="large", cell=(0, 0))
    assert set(t.emphasis) == {"only", "completely"}
    text = render_instruction(t)
    assert parse_scene_instruction(text) == t
    assert describe_ref(t.ref) == "the large red circle in the top-left area"


def test_write_dataset(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path / "ds", n=8, seed=1)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8
    for r in rows:
        assert {"id", "source", "instruction", "category"} <= set(r)
        img = load_image(tmp_path / "ds" / r["source"])
        assert img.size == (CANVAS, CANVAS)
        assert "truth" in r  # for analysis; no judge reads it
