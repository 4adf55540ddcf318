"""Ground-truth edits of synthetic scenes, applied to the scene model (never through the tools), so tests
can check the verifier and the editor independently of each other."""

from __future__ import annotations

from refine_agent.tools.synthetic.generate import SyntheticSample
from refine_agent.tools.synthetic.scene import Scene, Shape, cell_centre, render

from refine_agent.images import Image


def expected_scene(sample: SyntheticSample) -> Scene:
    scene = sample.scene.model_copy(deep=True)
    t, i = sample.task, sample.target
    if t.category == "background_change":
        scene.background = t.colour  # type: ignore[assignment]
    elif t.category == "subject-add":
        cx, cy = cell_centre(t.cell)  # type: ignore[arg-type]
        scene.shapes.append(Shape(shape=t.shape, colour=t.colour, size=t.size, cx=cx, cy=cy))  # type: ignore[arg-type]
    elif t.category == "subject-remove":
        scene.shapes.pop(i)  # type: ignore[arg-type]
    elif t.category == "color_alter":
        scene.shapes[i].colour = t.colour  # type: ignore[index,assignment]
    elif t.category == "subject-replace":
        scene.shapes[i].shape, scene.shapes[i].colour = t.shape, t.colour  # type: ignore[index,assignment]
    elif t.category == "size_change":
        s = scene.shapes[i]  # type: ignore[index]
        s.size = "large" if s.size == "small" else "small"
    return scene


def expected_image(sample: SyntheticSample) -> Image:
    return Image(render(expected_scene(sample)))
