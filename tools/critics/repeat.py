"""``repeat``: the resampling baseline. It asks for the original instruction again, from the source, so
each round is a fresh sample (a new seed). Comparing it with ``rule`` shows what critique adds beyond
best-of-N sampling. With ``until_pass=false`` it never declares itself satisfied, which gives runs with a
fixed number of rounds (for scheduling studies, together with ``--keep-going``)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from refine_agent.tools.simulation import SimOptions, SimulatedTool

from refine_agent.types import Critique, CritiqueRequest, ToolKind


class RepeatCritic(SimulatedTool["RepeatCritic.Options"]):
    name: ClassVar[str] = "repeat"
    kind: ClassVar[ToolKind] = "critic"
    summary: ClassVar[str] = "baseline: re-run the original instruction from the source with a new seed"

    class Options(SimOptions):
        until_pass: bool = Field(default=True, description="be satisfied once the judge passes the edit")

    async def critique(self, req: CritiqueRequest) -> Critique:
        await self.simulate("critique", req.seed, req.edited.sha256, req.instruction)
        if req.verdict.passed and self.options.until_pass:
            return Critique(satisfied=True, analysis="The judge passes the edit.")
        return Critique(satisfied=False, analysis="Sampling the edit again from the source.",
                        instruction=req.instruction, base="source")
