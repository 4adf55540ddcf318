"""refine-agent: agentic image editing. Edit, judge, critique and re-edit under a budget.

The public library surface::

    from refine_agent import refine, Budget, LoopPolicy, Runtime, Image, load_image
"""

from __future__ import annotations

__version__ = "0.1.0"

from .budget import Budget, CallLimits
from .errors import RefineAgentError
from .images import Image, load_image
from .loop import LoopPolicy, RefineResult, refine
from .runtime import RetryPolicy, Runtime, RuntimeConfig
from .types import (
    Critique,
    CritiqueRequest,
    EditRequest,
    EditResult,
    Finding,
    JudgeRequest,
    Round,
    StopReason,
    Trajectory,
    Usage,
    Verdict,
)

__all__ = [
    "__version__",
    "Budget",
    "CallLimits",
    "Critique",
    "CritiqueRequest",
    "EditRequest",
    "EditResult",
    "Finding",
    "Image",
    "JudgeRequest",
    "LoopPolicy",
    "RefineAgentError",
    "RefineResult",
    "RetryPolicy",
    "Round",
    "Runtime",
    "RuntimeConfig",
    "StopReason",
    "Trajectory",
    "Usage",
    "Verdict",
    "load_image",
    "refine",
]
