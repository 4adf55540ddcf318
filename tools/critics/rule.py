"""``rule``: a deterministic critic that reads the ``verify`` judge's findings and writes one re-edit
instruction and a base (current, source or best). Scene findings go to the scene rules, photo findings
to the photo rules. With a judge that gives no findings it falls back to restating the instruction from
the source, which is the resampling baseline."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from refine_agent.types import Critique, CritiqueRequest
from tools.simulation import SimOptions, SimulatedTool


class RuleCritic(SimulatedTool):
    name: ClassVar[str] = "rule"
    kind: ClassVar[str] = "critic"
    summary: ClassVar[str] = "turns the verifier's findings into a re-edit instruction and base"
    Options = SimOptions

    async def critique(self, req: CritiqueRequest) -> Critique:
        await self.simulate("critique", req.seed, req.edited.sha256, req.instruction)
        return await asyncio.to_thread(self._critique, req)

    def _critique(self, req: CritiqueRequest) -> Critique:
        domain = req.verdict.info.get("domain")
        if domain == "scene":
            from .scene_rules import critique_scene

            return critique_scene(req)
        if domain == "photo":
            from .photo_rules import critique_photo

            return critique_photo(req)
        if req.verdict.passed:
            return Critique(satisfied=True, analysis="The judge passes the edit.")
        return Critique(satisfied=False, instruction=req.instruction, base="source",
                        analysis="The judge gave no findings to act on; sampling the edit again from the source.")
