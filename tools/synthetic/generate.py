"""The synthetic scene dataset: scenes, instructions in six categories, easy and hard referring expressions.

Easy expressions name a target that is unique by colour and shape. Hard ones have look-alike distractors
(same colour and shape), so the expression needs a size or a relative position, as in RefEdit-Bench.
Ground truth is kept in the manifest for analysis; no judge reads it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from refine_agent.errors import InputError
from refine_agent.images import Image
from refine_agent.outputs import check_folder

from .language import TASK_CATEGORIES, RefExpr, SceneInstruction, render_instruction, unique_qualifier
from .palette import BACKGROUND_COLOURS, SHAPE_COLOURS
from .scene import CELL, MAX_JITTER, SHAPES, SIZES, Scene, Shape, render

REFERRING = ("color_alter", "subject-remove", "subject-replace", "size_change")


class SyntheticSample(BaseModel):
    id: str
    instruction: str
    category: str
    difficulty: str
    scene: Scene
    task: SceneInstruction
    target: int | None = None

    def image(self) -> Image:
        return Image(render(self.scene))

    def truth(self) -> dict[str, object]:
        return {"scene": self.scene.model_dump(), "task": self.task.model_dump(mode="json"), "target": self.target}


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, 0x5CE7E])


def _random_scene(rng: np.random.Generator, n_shapes: int) -> Scene:
    cells = rng.choice(9, size=n_shapes, replace=False)
    shapes = []
    for c in cells:
        r, col = divmod(int(c), 3)
        jx, jy = rng.integers(-MAX_JITTER, MAX_JITTER + 1, size=2)
        shapes.append(Shape(shape=str(rng.choice(SHAPES)), colour=str(rng.choice(list(SHAPE_COLOURS))),
                            size=str(rng.choice(SIZES)), cx=col * CELL + CELL // 2 + int(jx),
                            cy=r * CELL + CELL // 2 + int(jy)))
    return Scene(background=str(rng.choice(list(BACKGROUND_COLOURS))), shapes=shapes)


def _make_easy(scene: Scene, target: int, rng: np.random.Generator) -> None:
    """Recolour look-alikes so the target is unique by colour and shape."""
    t = scene.shapes[target]
    for i, s in enumerate(scene.shapes):
        if i != target and s.shape == t.shape and s.colour == t.colour:
            s.colour = str(rng.choice([c for c in SHAPE_COLOURS if c != t.colour]))


def _make_hard(scene: Scene, target: int, rng: np.random.Generator) -> None:
    """Turn one or two other objects into look-alikes (same colour and shape) of the target."""
    t = scene.shapes[target]
    others = [i for i in range(len(scene.shapes)) if i != target]
    k = min(len(others), int(rng.integers(1, 3)))
    for i in rng.choice(others, size=k, replace=False):
        scene.shapes[int(i)].shape, scene.shapes[int(i)].colour = t.shape, t.colour


def _task(category: str, scene: Scene, target: int | None, rng: np.random.Generator) -> SceneInstruction:
    if category == "background_change":
        colour = str(rng.choice([c for c in BACKGROUND_COLOURS if c != scene.background]))
        return SceneInstruction(category="background_change", colour=colour)
    if category == "subject-add":
        used = {s.cell for s in scene.shapes}
        free = [(r, c) for r in range(3) for c in range(3) if (r, c) not in used]
        cell = free[int(rng.integers(len(free)))]
        return SceneInstruction(category="subject-add", shape=str(rng.choice(SHAPES)),
                                colour=str(rng.choice(list(SHAPE_COLOURS))), size=str(rng.choice(SIZES)), cell=cell)
    assert target is not None
    t = scene.shapes[target]
    ref = unique_qualifier(target, scene.shapes)
    assert ref is not None
    if category == "color_alter":
        return SceneInstruction(category="color_alter", ref=ref,
                                colour=str(rng.choice([c for c in SHAPE_COLOURS if c != t.colour])))
    if category == "subject-remove":
        return SceneInstruction(category="subject-remove", ref=ref)
    if category == "subject-replace":
        return SceneInstruction(category="subject-replace", ref=ref,
                                shape=str(rng.choice([s for s in SHAPES if s != t.shape])),
                                colour=str(rng.choice(list(SHAPE_COLOURS))))
    return SceneInstruction(category="size_change", ref=ref, direction="smaller" if t.size == "large" else "larger")


def make_sample(index: int, seed: int = 0) -> SyntheticSample:
    """Sample ``index`` of the dataset with ``seed``: the same pair always gives the same sample."""
    rng = _rng(seed, index)
    category = TASK_CATEGORIES[index % len(TASK_CATEGORIES)]
    hard = category in REFERRING and bool(rng.random() < 0.5)
    for _ in range(100):
        n_shapes = int(rng.integers(3 if hard else 2, 7))
        if category == "subject-add":
            n_shapes = min(n_shapes, 6)
        scene = _random_scene(rng, n_shapes)
        target = int(rng.integers(n_shapes)) if category in REFERRING else None
        if target is not None:
            (_make_hard if hard else _make_easy)(scene, target, rng)
            ref = unique_qualifier(target, scene.shapes)
            if ref is None or (hard and ref.qualifiers() == 0):
                continue  # no short unambiguous expression for this layout; draw another
        task = _task(category, scene, target, rng)
        text = render_instruction(task, style=int(rng.integers(0, 4)))
        return SyntheticSample(id=sample_id(index, seed), instruction=text, category=category,
                               difficulty="hard" if hard else "easy", scene=scene, task=task, target=target)
    raise RuntimeError(f"could not generate synthetic sample {index} for seed {seed}")


def iter_samples(n: int, seed: int = 0, start: int = 0) -> Iterator[SyntheticSample]:
    for i in range(start, start + n):
        yield make_sample(i, seed)


MAX_SAMPLES = 100_000  # ids have five digits; about 150 MB of PNGs and a few minutes of work


def sample_id(index: int, seed: int) -> str:
    return f"syn-{seed}-{index:05d}"


def write_dataset(out: str | Path, n: int, seed: int = 0, *, force: bool = False) -> Path:
    """Write ``out/manifest.jsonl`` and ``out/images/*.png``; return the manifest path.

    The manifest has ``id``, ``source`` (relative to ``out``), ``instruction``, ``category``,
    ``difficulty`` and ``truth`` (for analysis only). An existing manifest or image is never overwritten
    unless ``force``. Everything is made in a hidden folder inside ``out`` first and moved into place at
    the end, manifest last: an interrupted call (Ctrl-C, a full disk) leaves ``out`` as it found it.
    """
    _check_size(n, seed)
    out = Path(out)
    manifest = out / "manifest.jsonl"
    names = [f"{sample_id(i, seed)}.png" for i in range(n)]
    _check_target(out, manifest, names, force)  # before any work, so a refusal costs nothing
    created = [d for d in (*reversed(out.parents), out, out / "images") if not d.exists()]
    placed: list[Path] = []  # images moved into out/images that did not exist before: ours to take back
    stage: Path | None = None
    done = False
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".manifest.jsonl.", suffix=".tmp", dir=out))
        _write_stage(stage, n, seed)
        _commit(stage, out, manifest, placed)
        done = True
    finally:  # on any exit, KeyboardInterrupt included
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        if not done:
            _take_back(placed, created)
    return manifest


def _check_size(n: int, seed: int) -> None:
    if n < 0:
        raise InputError(f"--n must be >= 0, got {n}")
    if n > MAX_SAMPLES:
        raise InputError(f"--n {n} is too many: at most {MAX_SAMPLES} samples per dataset; make a larger set in "
                         "parts with different --seed and --out")
    if seed < 0:
        raise InputError(f"--seed must be >= 0, got {seed}")


def _check_target(out: Path, manifest: Path, names: list[str], force: bool) -> None:
    """Refuse an output that is not a folder, and, without ``force``, any file this call would replace."""
    check_folder(out)  # a folder we can write or make: not a file, not under one
    if (out / "images").exists() and not (out / "images").is_dir():
        raise InputError(f"{out / 'images'} exists and is not a folder; choose another --out")
    if manifest.is_dir():
        raise InputError(f"{manifest} is a folder; choose another --out")
    if force:
        return
    if manifest.exists():
        raise InputError(f"{manifest} already exists; use --force to overwrite it, or another --out")
    existing = _existing_images(out / "images", names)
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise InputError(f"{out / 'images' / existing[0]} already exists{more}; use --force to overwrite, "
                         "or another --out")


def _existing_images(images: Path, names: list[str]) -> list[str]:
    if not images.is_dir():
        return []
    present = set(os.listdir(images))  # one listing, not n stat calls
    return [name for name in names if name in present]


def _write_stage(stage: Path, n: int, seed: int) -> None:
    with open(stage / "manifest.jsonl", "w", encoding="utf-8") as f:
        for sample in iter_samples(n, seed):
            rel = f"images/{sample.id}.png"
            sample.image().save(stage / rel)
            row = {"id": sample.id, "source": rel, "instruction": sample.instruction,
                   "category": sample.category, "difficulty": sample.difficulty, "truth": sample.truth()}
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _commit(stage: Path, out: Path, manifest: Path, placed: list[Path]) -> None:
    """Move the staged images into place, then the manifest, so a manifest only appears once it is whole."""
    staged = stage / "images"
    for src in sorted(staged.iterdir()) if staged.is_dir() else []:
        dest = out / "images" / src.name
        new = not dest.exists()
        os.replace(src, dest)
        if new:
            placed.append(dest)
    os.replace(stage / "manifest.jsonl", manifest)


def _take_back(placed: list[Path], created: list[Path]) -> None:
    """Undo an unfinished call: remove the images it added and the folders it made (only if empty)."""
    for p in placed:
        p.unlink(missing_ok=True)
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass  # not empty: something else lives there now


__all__ = ["MAX_SAMPLES", "RefExpr", "SyntheticSample", "iter_samples", "make_sample", "sample_id", "write_dataset"]
