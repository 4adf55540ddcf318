"""The classic photo world: grammar, pixel ops, the classic editor, the photo checker and the photo critic rules.

Images are built procedurally (gradients, lighting, texture noise, coloured shapes); nothing is downloaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest
from refine_agent.tools.critics.photo_rules import critique_photo
from refine_agent.tools.editors.classic import ClassicEditor
from refine_agent.tools.judges.assessment import Assessment, Unsupported
from refine_agent.tools.photo.check import assess_photo
from refine_agent.tools.photo.grammar import STRENGTH_LEVELS, PhotoOp, parse_photo_instruction, render_op, render_plan
from refine_agent.tools.photo.ops import apply_plan, luma, to_float
from scipy.ndimage import gaussian_filter, laplace

from refine_agent.errors import UnsupportedInstructionError
from refine_agent.images import Image
from refine_agent.types import CritiqueRequest, EditRequest, Round, Verdict


def photo(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """A photo-like RGB image: sky and ground gradients, soft lighting, texture, a red car, sun and bush."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= max(h - 1, 1)
    xx /= max(w - 1, 1)
    sky = np.stack([0.45 + 0.2 * yy, 0.6 + 0.15 * yy, 0.85 - 0.1 * yy], -1)
    ground = np.stack([0.35 - 0.1 * yy, 0.45 - 0.1 * yy, 0.2 + 0 * yy], -1)
    img = np.where((yy < 0.45 + 0.05 * np.sin(xx * 6 + seed))[..., None], sky, ground)
    light = gaussian_filter(rng.normal(size=(h, w)), sigma=max(h, w) / 8)
    img = img * (1 + 0.45 * light / (np.abs(light).max() + 1e-6))[..., None]

    def ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1

    img[ellipse(0.7, 0.3, 0.12, 0.18)] = [0.75, 0.1, 0.1]
    img[ellipse(0.2, 0.8, 0.1, 0.08)] = [0.95, 0.85, 0.2]
    img[ellipse(0.75, 0.75, 0.15, 0.12)] = [0.15, 0.55, 0.15]
    img = img * (1 - 0.25 * yy)[..., None] + 0.1
    img = img + gaussian_filter(rng.normal(size=(h, w)), 0.7)[..., None] * 0.06 + rng.normal(size=(h, w, 3)) * 0.008
    return (np.clip(img, 0.02, 0.97) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def src() -> Image:
    return Image(photo())


def edit(img: Image, text: str, scale: float = 1.0) -> Image:
    return Image(apply_plan(img.array, parse_photo_instruction(text), scale))


def verdict(a: Assessment) -> Verdict:
    return Verdict(scores={"SC": [a.success, a.overediting], "PQ": [a.naturalness, a.artifacts]},
                   findings=a.findings, reasoning=a.reasoning)


def kinds(a: Assessment) -> list[str]:
    return [f.kind for f in a.findings]


def scores(a: Assessment) -> list[float]:
    return [a.success, a.overediting, a.naturalness, a.artifacts]


# -- grammar --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("make it brighter", [("brightness", 1, 1.0)]),
    ("Make the image brighter.", [("brightness", 1, 1.0)]),
    ("brighten it", [("brightness", 1, 1.0)]),
    ("increase the brightness", [("brightness", 1, 1.0)]),
    ("make the photo a bit darker", [("brightness", -1, 0.5)]),
    ("turn the brightness down a little", [("brightness", -1, 0.5)]),
    ("make it very slightly brighter", [("brightness", 1, 0.25)]),
    ("make it a tiny bit warmer", [("warmth", 1, 0.25)]),
    ("make it somewhat cooler", [("warmth", -1, 0.5)]),
    ("cool it down", [("warmth", -1, 1.0)]),
    ("warm it up a lot", [("warmth", 1, 2.0)]),
    ("give it much more contrast", [("contrast", 1, 2.0)]),
    ("reduce the contrast significantly", [("contrast", -1, 2.0)]),
    ("make it dramatically darker", [("brightness", -1, 3.0)]),
    ("make it very much more saturated", [("saturation", 1, 3.0)]),
    ("desaturate", [("saturation", -1, 1.0)]),
    ("make the colours more vivid", [("saturation", 1, 1.0)]),
    ("tone down the colors", [("saturation", -1, 1.0)]),
    ("make it less colourful", [("saturation", -1, 1.0)]),
    ("blur it slightly", [("sharpness", -1, 0.5)]),
    ("make it less blurry", [("sharpness", 1, 1.0)]),
    ("sharpen the photo", [("sharpness", 1, 1.0)]),
    ("make it brighter and warmer", [("brightness", 1, 1.0), ("warmth", 1, 1.0)]),
    ("increase the brightness and contrast", [("brightness", 1, 1.0), ("contrast", 1, 1.0)]),
    ("brighter, cooler; then slightly sharper", [("brightness", 1, 1.0), ("warmth", -1, 1.0),
                                                  ("sharpness", 1, 0.5)]),
    ("make it black and white", [("grayscale", 0, 1.0)]),
    ("convert to greyscale", [("grayscale", 0, 1.0)]),
    ("remove the colour", [("grayscale", 0, 1.0)]),
    ("monochrome please", [("grayscale", 0, 1.0)]),
    ("give it a sepia tone", [("sepia", 0, 1.0)]),
])
def test_parse_phrasings(text: str, expected: list[tuple[str, int, float]]) -> None:
    plan = parse_photo_instruction(text)
    assert [(op.op, op.direction, op.strength) for op in plan.ops] == expected


@pytest.mark.parametrize("text, op, params", [
    ("rotate it 90 degrees clockwise", "rotate", {"angle": 90, "explicit": True}),
    ("rotate the image 90° counter-clockwise", "rotate", {"angle": 270, "explicit": True}),
    ("rotate left", "rotate", {"angle": 270, "explicit": True}),
    ("rotate 90 degrees", "rotate", {"angle": 90, "explicit": False}),
    ("turn it upside down", "rotate", {"angle": 180, "explicit": True}),
    ("mirror the image", "flip", {"axis": "horizontal"}),
    ("flip it vertically", "flip", {"axis": "vertical"}),
    ("flip it upside down", "flip", {"axis": "vertical"}),
    ("make the red car blue", "recolor", {"source": "red", "target": "blue"}),
    ("turn the green leaves yellow", "recolor", {"source": "green", "target": "yellow"}),
    ("change the teal wall to violet", "recolor", {"source": "cyan", "target": "purple"}),
    ("replace red with green", "recolor", {"source": "red", "target": "green"}),
])
def test_parse_geometry_and_recolour(text: str, op: str, params: dict) -> None:
    (got,) = parse_photo_instruction(text).ops
    assert got.op == op and got.params == params


def _all_ops() -> list[PhotoOp]:
    ops = [PhotoOp(op=name, direction=d, strength=s)  # type: ignore[arg-type]
           for name in ("brightness", "contrast", "saturation", "warmth", "sharpness")
           for d in (1, -1) for s in STRENGTH_LEVELS]
    ops += [PhotoOp(op="grayscale"), PhotoOp(op="sepia"), PhotoOp(op="flip", params={"axis": "vertical"}),
            PhotoOp(op="flip", params={"axis": "horizontal"}),
            PhotoOp(op="recolor", params={"source": "red", "target": "blue"})]
    ops += [PhotoOp(op="rotate", params={"angle": a, "explicit": e}) for a in (90, 270) for e in (True, False)]
    return ops + [PhotoOp(op="rotate", params={"angle": 180, "explicit": True})]


def test_render_round_trip() -> None:
    for op in _all_ops():
        assert parse_photo_instruction(render_op(op)).ops == [op], render_op(op)
    plan = parse_photo_instruction("make it slightly brighter, much cooler and flip it horizontally")
    assert parse_photo_instruction(render_plan(plan)).ops == plan.ops


def test_render_snaps_strength_to_a_level() -> None:
    assert render_op(PhotoOp(op="brightness", direction=1, strength=0.6)) == "make it slightly brighter"
    assert render_op(PhotoOp(op="brightness", direction=-1, strength=1.1)) == "make it darker"
    assert render_op(PhotoOp(op="contrast", direction=1, strength=2.4)) == "give it much more contrast"


@pytest.mark.parametrize("text, needle", [
    ("add a hat", '"add a hat"'),
    ("make it brighter and add a hat", '"add a hat"'),
    ("make the sky brighter", '"make the sky brighter"'),
    ("contrast", "which way"),
    ("rotate it 45 degrees", "90, 180 or 270"),
    ("make the white car red", '"white"'),
    ("", "empty"),
])
def test_unsupported_instruction_message(text: str, needle: str) -> None:
    with pytest.raises(UnsupportedInstructionError) as err:
        parse_photo_instruction(text)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and msg.startswith("classic editor")


def test_unsupported_message_lists_the_grammar() -> None:
    with pytest.raises(UnsupportedInstructionError) as err:
        parse_photo_instruction("add a hat")
    assert str(err.value) == (
        'classic editor does not understand "add a hat": it supports brighter/darker, contrast, saturation, '
        'black and white, sepia, warmer/cooler, blur/sharpen, rotate, flip, and "make the <colour> ... <colour2>"')


# -- pixel ops ------------------------------------------------------------------------------------------------

def _chroma(a: np.ndarray) -> float:
    return float(np.ptp(to_float(a), axis=-1).mean())


def _sharpness(a: np.ndarray) -> float:
    return float(laplace(luma(to_float(a)).astype(np.float64)).var())


@pytest.mark.parametrize("text, metric, sign", [
    ("make it brighter", lambda a: luma(to_float(a)).mean(), 1),
    ("make it darker", lambda a: luma(to_float(a)).mean(), -1),
    ("give it more contrast", lambda a: luma(to_float(a)).std(), 1),
    ("give it less contrast", lambda a: luma(to_float(a)).std(), -1),
    ("make it more saturated", _chroma, 1),
    ("make it less saturated", _chroma, -1),
    ("make it warmer", lambda a: float(a[..., 0].mean()) - float(a[..., 2].mean()), 1),
    ("make it cooler", lambda a: float(a[..., 0].mean()) - float(a[..., 2].mean()), -1),
    ("blur it", _sharpness, -1),
    ("sharpen it", _sharpness, 1),
])
def test_graded_ops_move_the_right_way(src: Image, text: str, metric: Callable[[np.ndarray], float],
                                       sign: int) -> None:
    out = edit(src, text)
    assert out.array.dtype == np.uint8 and out.array.shape == src.array.shape
    assert sign * (metric(out.array) - metric(src.array)) > 0


def test_absolute_ops(src: Image) -> None:
    gray = edit(src, "make it black and white").array
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])
    sep = to_float(edit(src, "make it sepia").array).mean(axis=(0, 1))
    assert sep[0] > sep[1] > sep[2]
    assert np.array_equal(edit(src, "rotate it 90 degrees clockwise").array, np.rot90(src.array, -1))
    assert np.array_equal(edit(src, "rotate left").array, np.rot90(src.array, 1))
    assert np.array_equal(edit(src, "turn it upside down").array, np.rot90(src.array, 2))
    assert np.array_equal(edit(src, "mirror it").array, src.array[:, ::-1])
    assert np.array_equal(edit(src, "flip it vertically").array, src.array[::-1])


def test_recolour_moves_only_the_red_hue(src: Image) -> None:
    out = edit(src, "make the red car blue").array.astype(int)
    a = src.array.astype(int)
    car = (a[..., 0] > 120) & (a[..., 1] < 80) & (a[..., 2] < 80)
    assert car.sum() > 200
    assert (out[car][:, 2] > out[car][:, 0] + 60).mean() > 0.95          # the car is blue now
    assert np.abs(out[car].max(-1) - a[car].max(-1)).max() <= 1          # with its lightness/texture kept
    far = ~gaussian_filter(car.astype(float), 3).astype(bool)
    assert np.abs(out[far] - a[far]).max() <= 1                           # and nothing else changed


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (3, 5), (33, 17)])
def test_ops_handle_any_size(shape: tuple[int, int]) -> None:
    img = Image(photo(*shape, seed=3))
    for text in ("make it brighter", "give it less contrast", "make it more saturated", "make it black and white",
                 "make it sepia", "make it warmer", "blur it", "sharpen it", "rotate it 90 degrees", "mirror it"):
        out = edit(img, text)
        assert out.array.dtype == np.uint8
        assert sorted(out.array.shape[:2]) == sorted(shape)
        assert edit(img, text) == out  # deterministic


@pytest.mark.parametrize("half, full", [
    ("make it slightly brighter", "make it brighter"), ("make it slightly warmer", "make it warmer"),
    ("blur it slightly", "blur it"), ("give it slightly less contrast", "give it less contrast"),
])
def test_strengths_compose(src: Image, half: str, full: str) -> None:
    twice = edit(edit(src, half), half).array.astype(int)
    once = edit(src, full).array.astype(int)
    assert np.abs(twice - once).mean() < 1.5


# -- the editor -----------------------------------------------------------------------------------------------

async def test_editor_edits_through_its_async_method(src: Image) -> None:
    editor = ClassicEditor()
    assert editor.name == "classic" and editor.kind == "editor" and editor.summary
    res = await editor.edit(EditRequest(image=src, instruction="make it brighter and warmer", seed=1))
    assert res.image == edit(src, "make it brighter and warmer")
    assert res.info["plan"] == "make it brighter and make it warmer"
    with pytest.raises(UnsupportedInstructionError):
        await editor.edit(EditRequest(image=src, instruction="add a hat", seed=1))
    grey = Image(np.full((8, 8, 3), 128, np.uint8))
    with pytest.raises(UnsupportedInstructionError, match="no red pixels"):
        await editor.edit(EditRequest(image=grey, instruction="make the red car blue", seed=1))


async def test_editor_options_and_concurrency(src: Image) -> None:
    weak = ClassicEditor(strength_scale=0.5)
    res = await weak.edit(EditRequest(image=src, instruction="make it brighter", seed=0))
    assert res.image == edit(src, "make it slightly brighter")
    assert weak.identity()["params"] == {"strength_scale": 0.5}
    slow = ClassicEditor(latency_ms=50)
    reqs = [EditRequest(image=src, instruction=t, seed=i) for i, t in enumerate(["blur it", "sharpen it"] * 2)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    outs = await asyncio.gather(*(slow.edit(r) for r in reqs))
    assert loop.time() - start < 0.5 and len({o.image for o in outs}) == 2


# -- the checker ----------------------------------------------------------------------------------------------

OWN_EDITS = [
    "make it brighter", "make it darker", "give it more contrast", "give it less contrast",
    "make it more saturated", "make it less saturated", "make it black and white", "make it sepia",
    "make it warmer", "make it cooler", "blur it", "sharpen it", "rotate it 90 degrees clockwise",
    "rotate it 180 degrees", "rotate left", "flip it horizontally", "flip it vertically", "make the red car blue",
    "turn the green bush yellow", "make it slightly brighter", "make it dramatically darker",
    "make it very slightly warmer", "make it much more saturated", "give it much more contrast", "blur it a lot",
    "sharpen it dramatically", "make it brighter and warmer", "rotate 90 degrees and make it brighter",
    "make the red car blue and make it darker",
]


def tone_variant(kind: str, seed: int) -> Image:
    """Other photo families: bright (high-key), dark (low-key) and soft (smooth, little texture)."""
    a = photo(seed=seed).astype(np.float32) / 255
    a = {"plain": a, "highkey": 1 - (1 - a) ** 2 * 0.9, "lowkey": a ** 2, "smooth": gaussian_filter(a, (2, 2, 0))}[kind]
    return Image((a * 255).round().astype(np.uint8))


@pytest.mark.parametrize("kind, seed", [("plain", 0), ("plain", 1), ("highkey", 2), ("lowkey", 3), ("smooth", 4)])
def test_checker_passes_the_editors_own_output(kind: str, seed: int) -> None:
    src = tone_variant(kind, seed)
    for text in OWN_EDITS:
        a = assess_photo(src, edit(src, text), text)
        assert min(scores(a)) >= 8, (text, scores(a), a.reasoning)
        assert a.domain == "photo" and a.reasoning and a.measurements


@pytest.mark.parametrize("text", ["make it brighter", "give it less contrast", "make it more saturated",
                                  "make it black and white", "make it sepia", "make it cooler", "blur it",
                                  "sharpen it", "rotate it 90 degrees", "flip it horizontally",
                                  "make the red car blue"])
def test_checker_scores_an_unchanged_image_low(src: Image, text: str) -> None:
    a = assess_photo(src, src, text)
    assert a.success <= 1
    assert {"not_applied", "geometry"} & set(kinds(a))


@pytest.mark.parametrize("asked, done", [("make it brighter", "make it darker"),
                                         ("make it warmer", "make it cooler"),
                                         ("give it more contrast", "give it less contrast"),
                                         ("blur it", "sharpen it")])
def test_checker_catches_the_wrong_direction(src: Image, asked: str, done: str) -> None:
    a = assess_photo(src, edit(src, done), asked)
    assert a.success == 0 and "wrong_direction" in kinds(a)
    f = a.findings[0]
    assert f.data["fix_base"] == "source" and parse_photo_instruction(f.data["restart"])


def test_checker_flags_too_weak_and_too_strong(src: Image) -> None:
    weak = assess_photo(src, edit(src, "make it brighter", 0.5), "make it brighter")
    assert weak.success < 8 and kinds(weak) == ["too_weak"]
    data = weak.findings[0].data
    assert data["suggest"] == "make it slightly brighter" and data["target"][0] < 1 < data["target"][1]
    assert 0.4 < data["measured"] < 0.6
    strong = assess_photo(src, edit(src, "give it more contrast", 2.5), "give it more contrast")
    assert strong.success < 8 and "too_strong" in kinds(strong)
    assert "less contrast" in strong.findings[0].data["suggest"]
    assert assess_photo(src, edit(src, "make it slightly warmer"), "make it much warmer").success < 5


def test_checker_refuses_what_it_cannot_verify(src: Image) -> None:
    with pytest.raises(Unsupported, match="add a hat"):
        assess_photo(src, src, "add a hat")
    grey = Image(np.repeat(photo()[..., :1], 3, axis=-1))
    with pytest.raises(Unsupported, match="colour"):
        assess_photo(grey, grey, "make it more saturated")
    with pytest.raises(Unsupported, match="no clearly purple"):
        assess_photo(src, src, "make the purple car blue")


def test_checker_geometry(src: Image) -> None:
    ccw = edit(src, "rotate left")
    wrong = assess_photo(src, ccw, "rotate it 90 degrees clockwise")
    assert wrong.success == 0 and "geometry" in kinds(wrong) and wrong.overediting <= 2
    assert assess_photo(src, ccw, "rotate it 90 degrees").success == 10  # no direction given: either way
    mirrored = assess_photo(src, edit(src, "mirror it and make it brighter"), "make it brighter")
    assert "geometry" in kinds(mirrored) and mirrored.success >= 8  # measured in the image's own frame


def test_checker_side_effects_and_clipping(src: Image) -> None:
    a = assess_photo(src, edit(src, "make it brighter and much warmer"), "make it brighter")
    side = {f.data["what"]: f for f in a.findings if f.kind == "side_effect"}
    assert a.overediting < 8 and "cooler" in side["warmth"].data["suggest"]
    blown = Image((np.clip(to_float(src.array) * 1.9, 0, 1) * 255).round().astype(np.uint8))
    b = assess_photo(src, blown, "make it brighter")
    assert b.naturalness < 8 and "clipping" in kinds(b)


def test_checker_partial_recolour_and_resized_output(src: Image) -> None:
    out = edit(src, "make the red car blue").array.copy()
    out[:, : out.shape[1] // 3] = src.array[:, : out.shape[1] // 3]
    a = assess_photo(src, Image(out), "make the red car blue")
    assert a.success < 8 and "too_weak" in kinds(a)
    big = edit(src, "make it darker").to_pil().resize((256, 192))
    assert min(scores(assess_photo(src, Image.from_pil(big), "make it darker"))) >= 8


# -- the critic rules -----------------------------------------------------------------------------------------

def _critique(src: Image, instruction: str, rounds: list[tuple[str, str, int | None, Image]]):
    """Judge each (instruction, base, base_round, image) round and critique the last."""
    history = []
    for i, (text, base, base_round, img) in enumerate(rounds):
        history.append(Round(index=i, instruction=text, base=base, base_round=base_round, image=img.sha256,
                             verdict=verdict(assess_photo(src, img, instruction))))
    return critique_photo(CritiqueRequest(source=src, edited=rounds[-1][3], instruction=instruction,
                                          verdict=history[-1].verdict, history=history, seed=0))


def test_critic_satisfied_and_incremental(src: Image) -> None:
    ok = _critique(src, "make it brighter", [("make it brighter", "source", None, edit(src, "make it brighter"))])
    assert ok.satisfied and ok.instruction is None
    weak = _critique(src, "make it brighter",
                     [("make it brighter", "source", None, edit(src, "make it brighter", 0.4))])
    assert not weak.satisfied and weak.base == "current" and weak.instruction == "make it slightly brighter"
    both = _critique(src, "make it brighter and warmer",
                     [("make it brighter and warmer", "source", None, edit(src, "make it brighter and warmer", 0.4))])
    ops = parse_photo_instruction(both.instruction).ops
    assert PhotoOp(op="brightness", direction=1, strength=0.5) in ops
    assert PhotoOp(op="warmth", direction=1, strength=0.5) in ops


def test_critic_restarts_on_damage(src: Image) -> None:
    wrong = _critique(src, "make it brighter", [("make it brighter", "source", None, edit(src, "make it darker"))])
    assert wrong.base == "source" and "brighter" in wrong.instruction  # restated, varied as round 0 used it
    blurred = _critique(src, "blur it", [("blur it", "source", None, edit(src, "blur it", 3.0))])
    assert blurred.base == "source" and blurred.instruction == "make it very slightly blurrier"
    blown = Image((np.clip(to_float(src.array) * 1.9, 0, 1) * 255).round().astype(np.uint8))
    clipped = _critique(src, "make it much brighter", [("make it much brighter", "source", None, blown)])
    assert clipped.base == "source" and parse_photo_instruction(clipped.instruction)


def test_critic_goes_back_to_the_best_round(src: Image) -> None:
    r0 = edit(src, "make it brighter", 0.4)
    r1 = edit(r0, "make it darker")
    c = _critique(src, "make it brighter", [("make it brighter", "source", None, r0),
                                            ("make it darker", "current", 0, r1)])
    assert c.base == "best" and c.instruction == "make it slightly brighter"
    r2 = edit(r0, "make it slightly darker")  # the best round's own advice was tried and did worse
    c2 = _critique(src, "make it brighter", [("make it brighter", "source", None, r0),
                                             ("make it slightly brighter", "best", 0, r2)])
    assert c2.base == "best" and c2.instruction == "make it very slightly brighter"


def test_critic_escalates_then_restarts_when_adjustments_stall(src: Image) -> None:
    stuck = edit(src, "make it brighter", 0.4)  # an editor that ignores the re-edits
    c1 = _critique(src, "make it brighter", [("make it brighter", "source", None, stuck),
                                             ("make it slightly brighter", "current", 0, stuck)])
    assert c1.base == "current" and c1.instruction == "make it brighter"
    c2 = _critique(src, "make it brighter", [("make it brighter", "source", None, stuck),
                                             ("make it slightly brighter", "current", 0, stuck),
                                             ("make it brighter", "current", 1, stuck)])
    assert c2.base == "source" and "brighter" in c2.instruction


def test_closed_loop_improves_a_weak_edit(src: Image) -> None:
    text = "make it much warmer"
    img = edit(src, text, 0.5)  # the editor under-applies
    first = assess_photo(src, img, text)
    assert "too_weak" in kinds(first) and first.success < 8
    history = [Round(index=0, instruction=text, base="source", image=img.sha256, verdict=verdict(first))]
    for i in range(1, 4):
        c = critique_photo(CritiqueRequest(source=src, edited=img, instruction=text, verdict=history[-1].verdict,
                                           history=history, seed=0))
        if c.satisfied:
            break
        assert c.base == "current"
        img = edit(img, c.instruction)  # the critic's re-edit, applied to the current image
        history.append(Round(index=i, instruction=c.instruction, base="current", base_round=i - 1,
                             image=img.sha256, verdict=verdict(assess_photo(src, img, text))))
    last = assess_photo(src, img, text)
    assert last.success > first.success and min(scores(last)) >= 8
