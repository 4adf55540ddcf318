"""Reference-free checking of synthetic-scene edits: detect objects in the source and the edited image,
read the instruction, and score whether the asked-for change happened, whether anything else changed, and
whether shapes and pixels stay clean. It never sees the generator's ground truth."""

from __future__ import annotations

import math
from typing import Any

from refine_agent.tools.synthetic.detect import DetectedObject, DetectedScene, detect, is_scene
from refine_agent.tools.synthetic.language import (
    ParseError,
    SceneInstruction,
    describe_ref,
    parse_scene_instruction,
    resolve,
)
from refine_agent.tools.synthetic.scene import EXTENT, cell_name
from refine_agent.tools.synthetic.snap import fit

from refine_agent.images import Image
from refine_agent.types import Finding

from .assessment import Assessment, Unsupported

MATCH_DISTANCE = 22.0  # px between centroids for "the same object"
CHANGE_PENALTY = 4.0  # overediting points lost per unasked-for change
IRREGULAR_PENALTY = 3.5
ARTIFACT_SCALE = 60.0  # artifact pixels that cost ~6 of 10 points
EDGE_SLACK = 1.0  # px a shape's extent may be off once its edges were compressed or resampled


def desc(o: DetectedObject | None) -> dict[str, Any] | None:
    return None if o is None else {"shape": o.shape, "colour": o.colour, "size": o.size, "cell": list(o.cell)}


def words(o: DetectedObject) -> str:
    return f"the {o.size} {o.colour} {o.shape} in the {cell_name(o.cell)}"


def assess_scene(source: Image, edited: Image, instruction: str) -> Assessment:
    if not is_scene(source.array):
        raise Unsupported("the source is not a synthetic scene")
    try:
        task = parse_scene_instruction(instruction)
    except ParseError:
        raise Unsupported("the instruction is not in the synthetic-scene grammar") from None
    if task.category == "cleanup":
        raise Unsupported("'remove the stray marks' is a repair step, not a task to verify")
    # Editors often return another resolution; the same picture rescaled is checked at the source's size.
    out = fit(edited.array, source.size)
    if out is None:
        return Assessment(domain="scene", success=0, overediting=0, naturalness=10, artifacts=10,
                          reasoning="The edited image has a different size and aspect ratio from the source.",
                          findings=[Finding(kind="canvas_changed", message="the canvas size changed")])
    return _Check(task, detect(source.array), detect(out)).run()


class _Check:
    def __init__(self, task: SceneInstruction, src: DetectedScene, out: DetectedScene) -> None:
        self.task, self.src, self.out = task, src, out
        self.findings: list[Finding] = []
        self.match = self._match()
        matched_ids = {id(m) for m in self.match.values() if m is not None}
        self.extras = [o for o in out.objects if id(o) not in matched_ids]

    def _match(self) -> dict[int, DetectedObject | None]:
        """Pair source objects with edited objects by centroid distance, nearest pairs first."""
        pairs = sorted(
            ((math.hypot(a.cx - b.cx, a.cy - b.cy), i, j)
             for i, a in enumerate(self.src.objects) for j, b in enumerate(self.out.objects)),
            key=lambda p: p[0])
        match: dict[int, DetectedObject | None] = {i: None for i in range(len(self.src.objects))}
        used: set[int] = set()
        for d, i, j in pairs:
            if d <= MATCH_DISTANCE and match[i] is None and j not in used:
                match[i] = self.out.objects[j]
                used.add(j)
        return match

    def find(self, kind: str, message: str, severity: float, **data: Any) -> None:
        self.findings.append(Finding(kind=kind, message=message, severity=max(0.0, min(1.0, severity)), data=data))

    def touches_artifacts(self, o: DetectedObject) -> bool:
        x0, y0, x1, y1 = o.bbox
        return bool(self.out.artifacts[max(0, y0 - 2):y1 + 2, max(0, x0 - 2):x1 + 2].any())

    # ------------------------------------------------------------------------------------------------
    def run(self) -> Assessment:
        t = self.task
        target: int | None = None
        if t.ref is not None:
            hits = resolve(t.ref, self.src.objects)
            if len(hits) != 1:
                raise Unsupported(f"'{describe_ref(t.ref)}' matches {len(hits)} objects in the source")
            target = hits[0]
        success = self.success(target)
        overediting = self.overediting(target)
        naturalness = self.naturalness()
        artifacts = self.artifacts()
        reasoning = " ".join(f.message[0].upper() + f.message[1:] + "." for f in self.findings) or (
            "The requested edit is complete, nothing else changed, and the image is clean.")
        return Assessment(domain="scene", success=success, overediting=overediting, naturalness=naturalness,
                          artifacts=artifacts, reasoning=reasoning, findings=self.findings,
                          measurements={"objects_source": len(self.src.objects),
                                        "objects_edited": len(self.out.objects),
                                        "artifact_pixels": self.out.artifact_pixels})

    def success(self, target: int | None) -> float:
        t = self.task
        if t.category == "background_change":
            return self.success_background()
        if t.category == "subject-add":
            return self.success_add()
        assert target is not None
        src_obj, got = self.src.objects[target], self.match[target]
        name = describe_ref(t.ref) if t.ref else words(src_obj)
        if t.category == "subject-remove":
            left = 0.0 if got is None else got.area / src_obj.area
            score = 10.0 * (1.0 - min(1.0, left))
            if left > 0.9:
                self.find("target_unchanged", f"{name} is still there", 1.0)
            elif left > 0.05:
                self.find("partial_edit", f"only part of {name} was removed", left, fraction=1.0 - left)
            return score
        if got is None:
            self.find("wrong_edit", f"{name} disappeared instead of being edited", 1.0)
            return 0.0
        if t.category == "color_alter":
            assert t.colour is not None
            frac = got.colours.get(t.colour, 0.0)
            if frac < 0.1:
                self.find("target_unchanged", f"{name} is not {t.colour}", 1.0)
            elif frac < 0.95:
                self.find("partial_edit", f"only {frac:.0%} of {name} is {t.colour}", 1.0 - frac, fraction=frac)
            score = 10.0 * frac
            if got.shape not in (src_obj.shape, "irregular"):
                score -= 3.0
            return max(0.0, score)
        if t.category == "subject-replace":
            shape_ok = got.shape == t.shape
            colour_ok = got.colour == (t.colour or src_obj.colour) and got.purity >= 0.95
            recoloured = t.colour not in (None, src_obj.colour) and colour_ok
            if shape_ok and colour_ok:
                return 10.0
            if shape_ok or recoloured:
                miss = "shape" if not shape_ok else "colour"
                self.find("partial_edit", f"{name} was replaced but the {miss} is wrong", 0.5,
                          shape_ok=shape_ok, colour_ok=colour_ok)
                return 5.0
            self.find("target_unchanged", f"{name} was not replaced by a {t.colour or ''} {t.shape}", 1.0)
            return 0.0
        # size_change
        goal = EXTENT["large"] if t.direction == "larger" else EXTENT["small"]
        progress = max(0.0, min(1.0, (got.extent - src_obj.extent) / (goal - src_obj.extent)))
        if abs(got.extent - goal) <= EDGE_SLACK:
            progress = 1.0  # compression or resampling moves a shape's edge by a pixel
        if progress < 0.1:
            self.find("target_unchanged", f"{name} did not get {t.direction}", 1.0)
        elif progress < 0.9:
            self.find("partial_edit", f"{name} got only {progress:.0%} of the way {t.direction}", 1.0 - progress,
                      fraction=progress)
        score = 10.0 * progress
        if got.shape != src_obj.shape or got.colour != src_obj.colour:
            score -= 3.0
        return max(0.0, score)

    def success_background(self) -> float:
        t = self.task
        frac = self.out.background_colours.get(t.colour or "", 0.0)
        if frac < 0.1:
            self.find("target_unchanged", f"the background is not {t.colour}", 1.0)
        elif frac < 0.97:
            self.find("partial_edit", f"only {frac:.0%} of the background is {t.colour}", 1.0 - frac, fraction=frac)
        return 10.0 * frac

    def success_add(self) -> float:
        t = self.task
        assert t.cell is not None
        if not self.extras:
            self.find("missing_object", f"no new {t.shape} appeared", 1.0, cell=list(t.cell))
            return 0.0
        here = [o for o in self.extras if o.cell == t.cell]
        added = here[0] if here else self.extras[0]
        self.extras.remove(added)
        score = 10.0
        if added.cell != t.cell:
            score -= 5.0
            self.find("wrong_location", f"the new {added.shape} is in the {cell_name(added.cell)}, not the "
                      f"{cell_name(t.cell)}", 0.5, object=desc(added), cell=list(t.cell))
        wrong = []
        if t.colour and (added.colour != t.colour or added.purity < 0.95):
            score, wrong = score - 4.0, wrong + ["colour"]
        if added.shape != t.shape:
            score, wrong = score - 4.0, wrong + ["shape"]
        if t.size and added.size != t.size:
            score, wrong = score - 2.0, wrong + ["size"]
        if wrong:
            self.find("wrong_attributes", f"the new object has the wrong {' and '.join(wrong)}", len(wrong) / 3,
                      object=desc(added), wrong=wrong)
        return max(0.0, score)

    def overediting(self, target: int | None) -> float:
        score = 10.0
        for i, o in enumerate(self.src.objects):
            if i == target:
                continue
            got = self.match[i]
            change = None
            if got is None:
                change = "removed"
            elif got.colour != o.colour or got.purity < 0.9:
                change = "recoloured"
            elif abs(got.extent - o.extent) > 4:
                change = "resized"
            elif got.shape != o.shape and not self.touches_artifacts(got):
                change = "reshaped"
            if change:
                score -= CHANGE_PENALTY
                kind = "wrong_object" if self._looks_like_the_edit(change, got) else "neighbour_changed"
                self.find(kind, f"{words(o)} was {change} but should not have changed", 0.4,
                          object=desc(o), now=desc(got), change=change)
        for extra in self.extras:
            score -= CHANGE_PENALTY
            self.find("extra_object", f"an unasked-for {extra.colour} {extra.shape} appeared in the "
                      f"{cell_name(extra.cell)}", 0.4, object=desc(extra))
        if self.task.category != "background_change":
            changed = 1.0 - self.out.background_colours.get(self.src.background, 0.0)
            if changed > 0.03:
                score -= 10.0 * changed
                self.find("background_changed", f"{changed:.0%} of the background changed colour", changed,
                          fraction=changed, original=self.src.background)
        return max(0.0, score)

    def _looks_like_the_edit(self, change: str, got: DetectedObject | None) -> bool:
        """A non-target that got exactly the requested edit while the target did not: a wrong referent."""
        t = self.task
        if not any(f.kind == "target_unchanged" for f in self.findings):
            return False
        if t.category in ("color_alter", "subject-replace") and got is not None:
            return got.colour == t.colour
        if t.category == "subject-remove":
            return change == "removed"
        if t.category == "size_change":
            return change == "resized"
        return False

    def naturalness(self) -> float:
        bad = [o for o in self.out.objects if not o.regular and not self.touches_artifacts(o)]
        for o in bad:
            kind = "two-toned" if o.purity < 0.95 else "misshapen"
            self.find("irregular_shape", f"a {kind} {o.colour} object in the {cell_name(o.cell)} looks broken",
                      0.35, object=desc(o))
        return max(0.0, 10.0 - IRREGULAR_PENALTY * len(bad))

    def artifacts(self) -> float:
        pixels = self.out.artifact_pixels
        if pixels:
            clusters = [{"cell": list(c.cell), "pixels": c.pixels} for c in self.out.clusters]
            where = ", ".join(sorted({cell_name(c.cell) for c in self.out.clusters}))
            self.find("artifacts", f"stray marks ({pixels} px) near the {where}", 1 - math.exp(-pixels / 60),
                      clusters=clusters, pixels=pixels)
        return 10.0 * math.exp(-pixels / ARTIFACT_SCALE)
