"""``repeat``: the resampling baseline. It asks for the original instruction again, from the source, so
each round is a fresh sample (a new seed). Comparing it with ``rule`` shows what critique adds beyond
best-of-N sampling."""

from __future__ import annotations

from typing import ClassVar

from refine_agent.types import Critique, CritiqueRequest
from tools.simulation import SimOptions, SimulatedTool


class RepeatCritic(SimulatedTool):
    name: ClassVar[str] = "repeat"
    kind: ClassVar[str] = "critic"
    summary: ClassVar[str] = "baseline: re-run the original instruction from the source with a new seed"
    Options = SimOptions

    async def critique(self, req: CritiqueRequest) -> Critique:
        await self.simulate(("critique", req.seed))
        if req.verdict.passed:
            return Critique(satisfied=True, analysis="The judge passes the edit.")
        return Critique(satisfied=False, analysis="Not passed yet; sampling the edit again from the source.",
                        instruction=req.instruction, base="source")
