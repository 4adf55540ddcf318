"""``rule``: a deterministic critic that reads the ``verify`` judge's findings and writes one re-edit
instruction and a base (current, source or best). Scene findings go to the scene rules, photo findings
to the photo rules. With a judge that gives no findings it falls back to asking again from the source, in
other words each time, within the instruction's grammar: it never repeats an instruction that already failed
unchanged, and gives up (``critic_gave_up``) when it has nothing new to ask (``novelty``)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from refine_agent.tools.simulation import SimOptions, SimulatedTool

from refine_agent.types import Critique, CritiqueRequest, ToolKind

from .novelty import retry_from_source


class RuleCritic(SimulatedTool[SimOptions]):
    name: ClassVar[str] = "rule"
    kind: ClassVar[ToolKind] = "critic"
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
        return retry_from_source(req, "The judge gave no findings to act on")
