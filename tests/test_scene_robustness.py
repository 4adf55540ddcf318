"""Scenes that went through JPEG, WebP or resampling, as edits from other systems do, are read like the
PNGs they came from: correct edits pass, real defects still fail, and photos are still no scenes."""

import io

import numpy as np
import pytest
from PIL import Image as PILImage
from refine_agent.tools.editors.sim import SimEditor
from refine_agent.tools.judges.assessment import Unsupported
from refine_agent.tools.judges.scene_check import assess_scene
from refine_agent.tools.judges.verify import VerifyJudge
from refine_agent.tools.synthetic import ops
from refine_agent.tools.synthetic.detect import detect, is_scene
from refine_agent.tools.synthetic.generate import iter_samples
from refine_agent.tools.synthetic.palette import label_pixels
from refine_agent.tools.synthetic.snap import fit, snap, snap_labels

from refine_agent.errors import UnsupportedInstructionError
from refine_agent.images import Image
from refine_agent.types import EditRequest, JudgeRequest, Verdict

from .photos import photo_array
from .synthetic_truth import expected_image

SAMPLES = list(iter_samples(36, seed=5))


def encode(arr: np.ndarray, fmt: str, **opts: int) -> np.ndarray:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, fmt, **opts)
    return np.asarray(PILImage.open(buf).convert("RGB"))


def rescale(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(PILImage.fromarray(arr).resize((width, height), PILImage.Resampling.BICUBIC))


LOSSY = {
    "jpeg95": lambda a: encode(a, "JPEG", quality=95),
    "jpeg80": lambda a: encode(a, "JPEG", quality=80),
    "webp80": lambda a: encode(a, "WEBP", quality=80),
    "upscaled2x": lambda a: rescale(a, 2 * a.shape[1], 2 * a.shape[0]),
    "downscaled": lambda a: rescale(a, 144, 144),
    "upscaled-jpeg": lambda a: encode(rescale(a, 300, 300), "JPEG", quality=85),
}


async def judge(sample, edited: np.ndarray, source: np.ndarray | None = None) -> Verdict:  # type: ignore[no-untyped-def]
    src = Image(source) if source is not None else sample.image()
    return await VerifyJudge().judge(JudgeRequest(source=src, edited=Image(edited), instruction=sample.instruction,
                                                  seed=0))


@pytest.mark.parametrize("kind", list(LOSSY))
async def test_correct_edits_pass_after_compression_or_resampling(kind: str) -> None:
    for s in SAMPLES:
        v = await judge(s, LOSSY[kind](expected_image(s).array))
        assert v.passed and v.overall is not None and v.overall >= 9.5, (kind, s.instruction, v.reasoning)
        assert not {f.kind for f in v.findings} & {"artifacts", "canvas_changed", "neighbour_changed"}


async def test_a_compressed_source_is_read_too() -> None:
    for s in SAMPLES[:12]:
        src = encode(s.image().array, "JPEG", quality=90)
        v = await judge(s, encode(expected_image(s).array, "JPEG", quality=90), source=src)
        assert v.passed, (s.instruction, v.reasoning)


@pytest.mark.parametrize("kind", ["jpeg95", "jpeg80", "upscaled2x"])
async def test_stray_blobs_still_fail_after_compression(kind: str) -> None:
    for i, s in enumerate(SAMPLES[:12]):
        arr = np.array(expected_image(s).array)
        ops.add_smudges(arr, np.random.default_rng(i), count=1, region=(8, 8, 184, 184))
        lossless = await judge(s, arr)
        v = await judge(s, LOSSY[kind](arr))
        art = [f for f in v.findings if f.kind == "artifacts"]
        assert art and not v.passed and v.scores["PQ"][1] < 7, (kind, s.instruction, v.reasoning)
        # the blob keeps about its size: compression spreads it a little, never hides it
        before, after = lossless.info["measurements"]["artifact_pixels"], v.info["measurements"]["artifact_pixels"]
        assert 0.5 * before <= after <= 2.0 * before, (before, after)


async def test_sim_failures_read_the_same_after_compression() -> None:
    editor, checked = SimEditor({"skill": 0.2}), 0
    agree = 0
    for i, s in enumerate(SAMPLES):
        src = s.image()
        out = await editor.edit(EditRequest(image=src, instruction=s.instruction, seed=i, source=src))
        png = await judge(s, out.image.array)
        jpg = await judge(s, encode(out.image.array, "JPEG", quality=90))
        checked += 1
        agree += png.passed == jpg.passed
        if not png.passed and png.overall is not None and png.overall < 5:  # clear failures stay failures
            assert not jpg.passed, (s.instruction, out.info, jpg.reasoning)
    assert agree >= 0.9 * checked


async def test_a_different_aspect_ratio_is_still_a_changed_canvas() -> None:
    s = SAMPLES[0]
    v = await judge(s, rescale(expected_image(s).array, 192, 150))
    assert not v.passed and "canvas_changed" in {f.kind for f in v.findings}
    assert fit(np.zeros((150, 192, 3), np.uint8), (192, 192)) is None
    assert fit(np.zeros((4, 4, 3), np.uint8), (192, 192)) is None  # too small to be a scene
    assert fit(np.zeros((385, 384, 3), np.uint8), (192, 192)).shape == (192, 192, 3)  # within 1%


def test_a_clean_scene_is_read_exactly() -> None:
    for i, s in enumerate(SAMPLES[:12]):
        arr = np.array(s.image().array)
        ops.add_smudges(arr, np.random.default_rng(i), count=2)
        assert np.array_equal(snap_labels(arr), label_pixels(arr))
        assert np.array_equal(snap(arr), arr)


def test_compressed_scenes_are_scenes_and_photos_are_not() -> None:
    for s in SAMPLES[:12]:
        jpg = encode(s.image().array, "JPEG", quality=80)
        assert is_scene(jpg)
        d = detect(jpg)
        assert d.artifact_pixels == 0 and sorted((o.shape, o.colour, o.cell) for o in d.objects) == sorted(
            (x.shape, x.colour, x.cell) for x in s.scene.shapes)
    photo = photo_array(192, 192)
    assert not is_scene(photo) and not is_scene(encode(photo, "JPEG", quality=95))
    # an object on a near-white table: mostly palette-like pixels, but snapping cannot explain the object
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:192, 0:192]
    table = np.full((192, 192, 3), 250.0) + rng.normal(0, 2, (192, 192, 3))
    thing = (xx - 96) ** 2 + (yy - 96) ** 2 < 40**2
    table[thing] = (120, 90, 60) + rng.normal(0, 10, (int(thing.sum()), 3))
    assert not is_scene(np.clip(table, 0, 255).astype(np.uint8))
    # a small object (1-2% of the frame) on a pale, noisy background: its noise is not a codec's flat areas
    for bg in (250, 240):
        for side in (26, 20):
            noisy = np.clip(np.full((192, 192, 3), bg) + rng.integers(-3, 4, (192, 192, 3)), 0, 255).astype(np.uint8)
            noisy[60:60 + side, 60:60 + side] = photo_array(192, 192)[60:60 + side, 60:60 + side]
            assert not is_scene(noisy), (bg, side)


def test_the_scene_check_still_refuses_photos() -> None:
    # (verify then tries its photo check, which may read the instruction as a photo edit)
    photo = Image(encode(photo_array(192, 192), "JPEG", quality=90))
    with pytest.raises(Unsupported, match="not a synthetic scene"):
        assess_scene(photo, photo, SAMPLES[0].instruction)


async def test_sim_edits_compressed_and_rescaled_scenes() -> None:
    editor, judge_ = SimEditor({"skill": 1.0}), VerifyJudge()
    for s in SAMPLES[:12]:
        src = s.image()
        for kind in ("jpeg95", "jpeg80", "upscaled2x"):
            given = Image(LOSSY[kind](src.array))
            out = await editor.edit(EditRequest(image=given, instruction=s.instruction, seed=0, source=src))
            assert out.image.size == src.size
            v = await judge_.judge(JudgeRequest(source=src, edited=out.image, instruction=s.instruction, seed=0))
            assert v.passed, (kind, s.instruction, v.reasoning)
    photo = Image(encode(photo_array(192, 192), "JPEG", quality=95))
    with pytest.raises(UnsupportedInstructionError, match="synthetic scenes only"):
        await editor.edit(EditRequest(image=photo, instruction=s.instruction, seed=0))
    with pytest.raises(UnsupportedInstructionError, match="aspect ratio"):
        await editor.edit(EditRequest(image=Image(rescale(src.array, 192, 140)), instruction=s.instruction,
                                      seed=0, source=src))
