"""``verify``: a reference-free verifier for synthetic scenes and classic photo edits.

It sees only the source, the edited image and the instruction. Scores follow VIEScore: SC = [editing
success, overediting], PQ = [naturalness, artifacts], each 0-10, overall = sqrt(min(SC) * min(PQ)).
An instruction it cannot check gives status 'unsupported', never a score. ``noise`` adds seeded Gaussian
noise to every score, to study how a noisy loop judge inflates measured gains.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np
from pydantic import Field
from refine_agent.tools.simulation import SimOptions, SimulatedTool, rng_for

from refine_agent.types import JudgeRequest, ToolKind, Verdict

from .assessment import Assessment, Unsupported
from .scene_check import assess_scene


class VerifyJudge(SimulatedTool["VerifyJudge.Options"]):
    name: ClassVar[str] = "verify"
    kind: ClassVar[ToolKind] = "judge"
    summary: ClassVar[str] = "reference-free verifier for synthetic scenes and classic photo edits"

    class Options(SimOptions):
        noise: float = Field(default=0.0, ge=0, le=5, description="std of seeded noise added to each score")
        pass_threshold: float = Field(default=7.0, ge=0, le=10, description="every score must reach this to pass")

    async def judge(self, req: JudgeRequest) -> Verdict:
        await self.simulate("judge", req.seed, req.edited.sha256, req.instruction)
        return await asyncio.to_thread(self._judge, req)

    def _assess(self, req: JudgeRequest) -> Assessment:
        reasons = []
        try:
            return assess_scene(req.source, req.edited, req.instruction)
        except Unsupported as exc:
            reasons.append(f"scene check: {exc}")
        from refine_agent.tools.photo.check import assess_photo  # only photos need the photo measurements

        try:
            return assess_photo(req.source, req.edited, req.instruction)
        except Unsupported as exc:
            reasons.append(f"photo check: {exc}")
        raise Unsupported("; ".join(reasons))

    def _judge(self, req: JudgeRequest) -> Verdict:
        opts = self.options
        try:
            a = self._assess(req)
        except Unsupported as exc:
            return Verdict.failed("unsupported", f"verify cannot check this instruction ({exc})", judge=self.name)
        scores = np.array([a.success, a.overediting, a.naturalness, a.artifacts], dtype=float)
        if opts.noise > 0:
            scores = np.clip(scores + rng_for("judge-noise", req.seed).normal(0, opts.noise, 4), 0, 10)
        s = [round(float(x), 3) for x in scores]
        return Verdict(
            scores={"SC": s[:2], "PQ": s[2:]},
            passed=min(s) >= opts.pass_threshold,
            reasoning=a.reasoning,
            findings=a.findings,
            judge=self.name,
            info={"domain": a.domain, "measurements": a.measurements, "noise": opts.noise,
                  "score_names": {"SC": ["success", "overediting"], "PQ": ["naturalness", "artifacts"]}},
        )
