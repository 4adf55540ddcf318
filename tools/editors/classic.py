"""``classic``: an offline, deterministic photo editor for global and colour edits (no model).

It understands the grammar in ``tools.photo.grammar`` (brighter/darker, contrast, saturation, black and white,
sepia, warmer/cooler, blur/sharpen, rotate, flip, "make the <colour> ... <colour2>") and refuses anything else
with ``UnsupportedInstructionError``, never a silent no-op.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from pydantic import Field
from refine_agent.tools.photo.grammar import parse_photo_instruction, render_plan
from refine_agent.tools.photo.ops import apply_plan
from refine_agent.tools.simulation import SimOptions, SimulatedTool

from refine_agent.images import Image
from refine_agent.types import EditRequest, EditResult


class ClassicEditor(SimulatedTool["ClassicEditor.Options"]):
    name: ClassVar[str] = "classic"
    kind = "editor"
    summary: ClassVar[str] = ("offline photo editor: brightness, contrast, saturation, black and white, sepia, "
                              "warmth, blur/sharpen, rotate, flip and hue-based colour replacement")

    class Options(SimOptions):
        strength_scale: float = Field(
            default=1.0, gt=0, le=4,
            description="multiplies every requested strength; below 1 simulates an editor that under-edits, "
                        "above 1 one that overshoots")

    async def edit(self, req: EditRequest) -> EditResult:
        await self.simulate("edit", req.seed, req.image.sha256, req.instruction)
        plan = parse_photo_instruction(req.instruction)
        scale = float(self.options.strength_scale)
        # Pixel work runs in a worker thread so the event loop keeps serving other samples.
        array = await asyncio.to_thread(apply_plan, req.image.array, plan, scale)
        info = {"ops": [op.model_dump(mode="json") for op in plan.ops], "plan": render_plan(plan),
                "strength_scale": scale}
        return EditResult(image=Image(array), info=info)
