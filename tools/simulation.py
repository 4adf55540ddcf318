"""Simulation options every built-in tool accepts, for scheduling and fault studies.

``latency_ms`` holds one capacity slot asynchronously for that long; ``max_concurrency`` is the tool's
capacity; ``fail_rate`` is the seeded probability that an attempt fails transiently (the runtime retries).
None of them changes a tool's results, so they stay out of cache keys.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from refine_agent.errors import TransientToolError
from refine_agent.protocols import ToolBase
from refine_agent.runtime import current_attempt


class SimOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0, description="simulated service time per call (ms)")
    max_concurrency: int = Field(default=8, ge=1, description="calls served at once (capacity)")
    fail_rate: float = Field(default=0.0, ge=0, lt=1, description="seeded chance of a transient failure")


SIM_OPTION_NAMES = frozenset(SimOptions.model_fields)


def rng_for(*parts: object) -> np.random.Generator:
    """A numpy Generator seeded from any tuple of values, stable across processes."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


SimOptionsT = TypeVar("SimOptionsT", bound=SimOptions)
"""A built-in tool's options model (``SimulatedTool[SimOptionsT]``)."""


class SimulatedTool(ToolBase[SimOptionsT]):
    """A built-in tool: its options model extends SimOptions and its calls go through ``simulate``."""

    runtime_only_options: ClassVar[frozenset[str]] = SIM_OPTION_NAMES

    async def simulate(self, *call_key: object) -> None:
        """Hold the caller's capacity slot for ``latency_ms``, then maybe fail transiently.

        Failures are seeded by (tool, call key, attempt number), where the call key names the request (its
        seed and inputs) and the runtime supplies the attempt: a retry can succeed, a rerun fails the same
        way, and nothing depends on what else ran before or alongside.
        """
        opts = self.options
        if opts.latency_ms > 0:
            await asyncio.sleep(opts.latency_ms / 1000.0)
        attempt = current_attempt()
        if opts.fail_rate > 0 and rng_for("fail", self.name, *call_key, attempt).random() < opts.fail_rate:
            raise TransientToolError(f"simulated transient failure of {self.name} (attempt {attempt})")
