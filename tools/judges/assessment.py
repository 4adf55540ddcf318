"""What a built-in checker (scene or photo) returns to the ``verify`` judge: raw scores and findings.

The judge turns an Assessment into a Verdict, adding seeded noise (if asked) and the pass decision.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from refine_agent.types import Finding


class Assessment(BaseModel):
    domain: Literal["scene", "photo"]
    success: float = Field(ge=0, le=10, description="SC[0]: did the requested edit happen")
    overediting: float = Field(ge=0, le=10, description="SC[1]: 10 = nothing else changed")
    naturalness: float = Field(ge=0, le=10, description="PQ[0]: shapes/tones look plausible")
    artifacts: float = Field(ge=0, le=10, description="PQ[1]: 10 = no artifacts")
    reasoning: str
    findings: list[Finding] = Field(default_factory=list)
    measurements: dict[str, float | int | str | bool | None] = Field(default_factory=dict)


class Unsupported(Exception):
    """The checker cannot verify this instruction on these images; the judge returns status 'unsupported'."""
