"""``sim``: a simulated instruction-based editor for synthetic scenes, for studying refinement policies.

It parses the instruction, finds the referent in the pixels and edits the pixels. Like real editors it
fails in characteristic ways, at seeded random:

- wrong referent: it overlooks a qualifier (size, position, area) and grabs a look-alike, more often when
  the scene has look-alikes and the instruction has few qualifiers;
- partial edit: only part of the object (or background) changes;
- over-edit: the nearest other object gets the same edit (or an extra copy appears);
- stray artifacts: a blotch of foreign colour;
- no change at all.

``skill`` scales every failure rate (0.5 is the default; 1.0 never fails). Each sample also has a latent
hardness drawn from its source image, so some samples stay hard across rounds, as with real editors.
Emphasis in the instruction helps: "changing nothing else" makes over-edits rarer, "completely" partial
edits, "without leaving marks" artifacts; more qualifiers make wrong referents rarer.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import Field
from refine_agent.tools.simulation import SimOptions, SimulatedTool, rng_for
from refine_agent.tools.synthetic import ops
from refine_agent.tools.synthetic.detect import DetectedObject, DetectedScene, detect, is_scene
from refine_agent.tools.synthetic.language import (
    ALL_ATTRIBUTES,
    ParseError,
    SceneInstruction,
    parse_scene_instruction,
    resolve,
)
from refine_agent.tools.synthetic.scene import EXTENT, cell_centre, cell_of
from refine_agent.tools.synthetic.snap import fit, snap

from refine_agent.errors import UnsupportedInstructionError
from refine_agent.images import Image
from refine_agent.types import EditRequest, EditResult, ToolKind

# How failure rates are set (all scaled by 2 * (1 - skill), so skill 1 never fails):
# every sample has a latent profile, drawn from its source image and task category. Most samples are
# "typical" and fail rarely; a "stubborn" sample has one failure mode the editor keeps falling into, which
# emphasis or a more specific instruction halves; for a "beyond" sample that mode is nearly certain and
# care barely helps. Resampling alone therefore fixes fewer samples than critique does, and some stay
# unfixed, as with real editors.
BASE_RATES = {"no_change": 0.03, "partial": 0.05, "over_edit": 0.05, "artifact": 0.06,
              "misplace": 0.04, "wrong_attribute": 0.04, "wrong_referent": 0.175}
PROFILES = (("typical", 0.60, 0.0, 1.0), ("stubborn", 0.25, 0.7, 0.5), ("beyond", 0.15, 0.9, 0.85))
MISS_COLOUR = 0.02
EMPHASIS_EFFECT = 0.5  # what an emphasis phrase leaves of its failure mode's rate
EMPHASIS_FOR = {"partial": "completely", "over_edit": "only", "artifact": "cleanly"}
STUBBORN_MODES = {
    "subject-add": ("misplace", "wrong_attribute", "partial", "over_edit", "artifact"),
    "background_change": ("partial", "over_edit", "artifact"),
    "cleanup": ("partial", "no_change"),
}
REFERRING_MODES = ("wrong_referent", "partial", "over_edit", "artifact", "no_change")

GRAMMAR_HINT = ("it edits synthetic scenes: recolour, add, remove, replace or resize a shape, change the "
                "background, or remove stray marks")


class Profile(NamedTuple):
    kind: str
    mode: str | None
    rate: float
    care_effect: float  # what emphasis or specificity leaves of ``rate``


def latent_profile(source_id: str, category: str, lookalikes: bool) -> Profile:
    """The sample's latent difficulty for this editor, the same in every round."""
    rng = rng_for("profile", source_id, category)
    u = rng.random()
    modes = STUBBORN_MODES.get(category, REFERRING_MODES if lookalikes else REFERRING_MODES[1:])
    mode = modes[int(rng.integers(len(modes)))]
    for kind, share, rate, care in PROFILES:
        if u < share:
            return Profile(kind, mode if rate else None, rate, care)
        u -= share
    return Profile("typical", None, 0.0, 1.0)


class SimEditor(SimulatedTool["SimEditor.Options"]):
    name: ClassVar[str] = "sim"
    kind: ClassVar[ToolKind] = "editor"
    summary: ClassVar[str] = "simulated editor for synthetic scenes, with realistic seeded failures"

    class Options(SimOptions):
        skill: float = Field(default=0.5, ge=0, le=1, description="0 fails often, 0.5 default, 1 never fails")

    async def edit(self, req: EditRequest) -> EditResult:
        await self.simulate("edit", req.seed, req.image.sha256, req.instruction)
        return await asyncio.to_thread(self._edit, req)

    def _edit(self, req: EditRequest) -> EditResult:
        try:
            task = parse_scene_instruction(req.instruction)
        except ParseError:
            raise UnsupportedInstructionError(
                f"sim editor does not understand {req.instruction!r}: {GRAMMAR_HINT}; "
                "for photos use --editor classic") from None
        arr = req.image.array
        if not is_scene(arr):
            raise UnsupportedInstructionError(
                "sim editor works on synthetic scenes only (make some with 'refine-agent datasets make "
                "synthetic'); for photos use --editor classic")
        if req.source is not None:  # an edit from another system may come back rescaled
            arr = fit(arr, req.source.size)
            if arr is None:
                raise UnsupportedInstructionError(
                    f"sim editor cannot edit a {req.image.width}x{req.image.height} image of a "
                    f"{req.source.width}x{req.source.height} scene: the aspect ratio differs")
        out = snap(arr)  # a compressed scene is redrawn in palette colours first; a clean one is unchanged
        scene = detect(out)
        source_id = (req.source or req.image).sha256
        lookalikes = task.ref is not None and len(resolve(task.ref, scene.objects, frozenset({"colour"}))) > 1
        profile = latent_profile(source_id, task.category, lookalikes)
        rng = rng_for("sim", req.seed, req.image.sha256, req.instruction)
        events = _Edit(self.options.skill, task, scene, out, rng, profile).run()
        return EditResult(image=Image(out), info={"simulated": events})


class _Edit:
    """One simulated edit: decide the failures, then apply the task to the pixels."""

    def __init__(self, skill: float, task: SceneInstruction, scene: DetectedScene, arr: np.ndarray,
                 rng: np.random.Generator, profile: Profile) -> None:
        self.task, self.scene, self.arr, self.rng, self.profile = task, scene, arr, rng, profile
        self.scale = 2.0 * (1.0 - skill)
        self.events: list[str] = [] if profile.mode is None else [f"{profile.kind}:{profile.mode}"]

    def rate(self, mode: str) -> float:
        careful = EMPHASIS_FOR.get(mode) in self.task.emphasis
        if mode == self.profile.mode:
            p = self.profile.rate * (self.profile.care_effect if careful else 1.0)
        else:
            p = BASE_RATES[mode] * (EMPHASIS_EFFECT if careful else 1.0)
        return min(0.95, p * self.scale)

    def chance(self, mode: str) -> bool:
        hit = bool(self.rng.random() < self.rate(mode))
        if hit:
            self.events.append(mode)
        return hit

    def run(self) -> list[str]:
        t = self.task
        # Draw every decision up front, in a fixed order, so runs reproduce whatever the category.
        fails = {m: self.chance(m) for m in ("no_change", "partial", "over_edit", "artifact")}
        if fails["no_change"]:
            return ["no_change"]
        if t.category == "cleanup":
            self.cleanup(fails["partial"])
        elif t.category == "background_change":
            self.background(fails)
        elif t.category == "subject-add":
            self.add(fails)
        else:
            target = self.ground()
            if target is None:
                self.events.append("referent_not_found")
                return self.events
            self.apply(target, fails)
        if fails["artifact"]:
            ops.add_smudges(self.arr, self.rng, count=int(self.rng.integers(1, 3)))
        return self.events

    # -- grounding --------------------------------------------------------------------------------------
    def ground(self) -> DetectedObject | None:
        ref = self.task.ref
        assert ref is not None
        # Each qualifier may be overlooked; a stubborn grounding problem overlooks them often, but
        # every extra qualifier is one more chance to notice the right object.
        miss_q = self.rate("wrong_referent")
        attend = set(ALL_ATTRIBUTES)
        if self.rng.random() < MISS_COLOUR * self.scale:
            attend.discard("colour")
        for q in ("size", "relative", "cell"):
            if self.rng.random() < miss_q:
                attend.discard(q)
        objects = self.scene.objects
        candidates = resolve(ref, objects, frozenset(attend)) or resolve(ref, objects, frozenset())
        if not candidates:
            return None
        exact = resolve(ref, objects)
        pick = candidates[int(self.rng.integers(len(candidates)))]
        if exact and pick not in exact:
            self.events.append("wrong_referent")
        return objects[pick]

    def nearest_other(self, obj: DetectedObject | None, cx: float | None = None,
                      cy: float | None = None) -> DetectedObject | None:
        others = [o for o in self.scene.objects if o is not obj]
        if not others:
            return None
        x, y = (obj.cx, obj.cy) if obj is not None else (cx, cy)
        return min(others, key=lambda o: (o.cx - x) ** 2 + (o.cy - y) ** 2)

    # -- categories -------------------------------------------------------------------------------------
    def apply(self, target: DetectedObject, fails: dict[str, bool]) -> None:
        t, s, arr = self.task, self.scene, self.arr
        fraction = float(self.rng.uniform(0.3, 0.7)) if fails["partial"] else 1.0
        neighbour = self.nearest_other(target) if fails["over_edit"] else None
        mask = ops.partial_mask(s.mask(target), fraction, self.rng)
        if t.category == "color_alter":
            assert t.colour is not None
            ops.recolour(arr, mask, t.colour)
            if neighbour is not None:
                ops.recolour(arr, s.mask(neighbour), t.colour)
        elif t.category == "subject-remove":
            ops.erase(arr, s, mask)
            if neighbour is not None:
                ops.erase(arr, s, s.mask(neighbour))
        elif t.category == "subject-replace":
            assert t.shape is not None
            colour = t.colour or target.colour
            if fails["partial"]:  # half-done: only the colour or only the shape changes
                if self.rng.random() < 0.5:
                    ops.recolour(arr, s.mask(target), colour)
                else:
                    ops.redraw(arr, s, target, shape=t.shape)
            else:
                ops.redraw(arr, s, target, shape=t.shape, colour=colour)
            if neighbour is not None:
                ops.recolour(arr, s.mask(neighbour), colour)
        elif t.category == "size_change":
            goal = EXTENT["large"] if t.direction == "larger" else EXTENT["small"]
            step = float(self.rng.uniform(0.3, 0.6)) if fails["partial"] else 1.0
            ops.redraw(arr, s, target, extent=target.extent + (goal - target.extent) * step)
            if neighbour is not None and neighbour.size != ("large" if t.direction == "larger" else "small"):
                ops.redraw(arr, s, neighbour, extent=goal)

    def background(self, fails: dict[str, bool]) -> None:
        assert self.task.colour is not None
        fraction = float(self.rng.uniform(0.4, 0.7)) if fails["partial"] else 1.0
        victim = None
        if fails["over_edit"] and self.scene.objects:
            victim = self.scene.objects[int(self.rng.integers(len(self.scene.objects)))]
        ops.change_background(self.arr, self.scene, self.task.colour, fraction, self.rng)
        if victim is not None:  # the new background swallows an object
            ops.recolour(self.arr, self.scene.mask(victim), self.task.colour)

    def add(self, fails: dict[str, bool]) -> None:
        t = self.task
        assert t.shape is not None and t.cell is not None
        used = {o.cell for o in self.scene.objects}
        free = [(r, c) for r in range(3) for c in range(3) if (r, c) not in used and (r, c) != t.cell]
        cell = t.cell
        if self.chance("misplace") and free:
            cell = free.pop(int(self.rng.integers(len(free))))
        colour, size = t.colour or "red", t.size or "large"
        if self.chance("wrong_attribute"):
            others = [c for c in ("red", "orange", "yellow", "green", "blue", "purple", "pink") if c != colour]
            colour = others[int(self.rng.integers(len(others)))]
        cx, cy = cell_centre(cell)
        ops.draw(self.arr, t.shape, colour, EXTENT[size], cx, cy)
        if fails["partial"]:  # only part of the new object appears
            region = np.zeros(self.arr.shape[:2], dtype=bool)
            half = EXTENT[size] // 2 + 1
            region[max(0, cy - half):cy + half, max(0, cx - half):cx + half] = True
            new = region & (np.abs(self.arr.astype(int) - self.arr[cy, cx]).sum(axis=2) == 0)
            cut = ops.partial_mask(new, float(self.rng.uniform(0.3, 0.6)), self.rng)
            self.arr[cut] = ops.local_background(self.arr, self.scene, new)
        if fails["over_edit"] and free:  # a second, unasked-for copy
            cx2, cy2 = cell_centre(free[int(self.rng.integers(len(free)))])
            ops.draw(self.arr, t.shape, colour, EXTENT[size], cx2, cy2)

    def cleanup(self, partial: bool) -> None:
        region = ops.cell_region(self.task.cell, self.scene.width, self.scene.height)
        ops.clean_smudges(self.arr, self.scene, region, keep_fraction=0.5 if partial else 0.0, rng=self.rng)


def describe_events(info: dict[str, Any]) -> str:
    return ", ".join(info.get("simulated", [])) or "clean edit"


__all__ = ["SimEditor", "cell_of", "describe_events"]
