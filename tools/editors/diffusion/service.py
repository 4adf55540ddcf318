"""A loaded pipeline, one replica per device, fed by the core batcher.

One service per loaded model, shared through the model pool by every editor that names the same weights
(an editor and a ``--refine-editor`` with other steps share it: their requests carry their own settings).
Each replica has one worker thread, so a pipeline (whose scheduler keeps state) never runs two calls at once;
the batcher gives each free replica the next ready batch. Every request gets its own CPU ``torch.Generator``
seeded from its seed, so an edit's noise does not depend on its batch, its replica or the GPU model.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from refine_agent.batching import Batcher
from refine_agent.errors import PermanentToolError, ToolError, describe

from .adapters import to_arrays
from .loading import Plan, load_replica
from .qwen_area import condition_area
from .settings import Generation

MAX_BATCH = 64


@dataclass(frozen=True)
class Job:
    """One edit for the pipeline."""

    gen: Generation
    image: Any  # PIL RGB
    prompt: str
    seed: int
    mask: Any = None  # PIL RGB, white = may change, at the image's size


@dataclass(frozen=True)
class Generated:
    """One edit's pixels (float32 HxWx3 in [0, 1], before 8-bit rounding) and the batch it ran in."""

    pixels: np.ndarray
    pixels8: np.ndarray  # the same, rounded to 8 bits as diffusers' numpy_to_pil does (in the worker thread)
    batch_size: int
    batch_s: float  # the pipeline call's wall time, for the whole batch
    device: str


class OutOfMemory(Exception):
    """The pipeline ran out of device memory for a batch of ``size`` edits."""

    def __init__(self, size: int, device: str, detail: str) -> None:
        super().__init__(f"out of memory on {device} for a batch of {size}: {detail}")
        self.size = size


@dataclass
class Replica:
    pipe: Any
    device: str
    thread: ThreadPoolExecutor


class PipelineService:
    """Replicas of one pipeline and the batcher in front of them."""

    def __init__(self, plan: Plan, replicas: list[Replica]) -> None:
        self.plan = plan
        self.replicas = replicas
        self._free = list(reversed(replicas))
        self.oom_cap = MAX_BATCH  # lowered when a batch runs out of memory, so later batches fit
        self.batcher: Batcher[Job, Generated] = Batcher(
            self._run, max_size=MAX_BATCH, key=lambda job: job.gen, max_batches=len(replicas), limit=self._limit,
            wait=lambda gen: gen.wait_s)

    @classmethod
    async def start(cls, plan: Plan) -> PipelineService:
        """Load a replica on every device (one after another: see ``load_replica``)."""
        replicas: list[Replica] = []
        try:
            loads = [asyncio.to_thread(load_replica, plan, device) for device in plan.devices]
            for device, pipe in zip(plan.devices, await asyncio.gather(*loads), strict=True):
                replicas.append(Replica(pipe, device, ThreadPoolExecutor(1, thread_name_prefix=f"diffusers-{device}")))
        except BaseException:
            for replica in replicas:
                replica.thread.shutdown(wait=False)
            raise
        return cls(plan, replicas)

    def _limit(self, gen: Any) -> int:
        return min(gen.max_batch, self.plan.adapter.max_batch, self.oom_cap)

    async def submit(self, job: Job) -> Generated:
        return await self.batcher.submit(job)

    async def _run(self, jobs: list[Job]) -> list[Generated]:
        replica = self._free.pop()  # the batcher runs at most one batch per replica
        try:
            loop = asyncio.get_running_loop()
            arrays, seconds = await loop.run_in_executor(replica.thread, self._call, replica, jobs)
        except OutOfMemory as exc:
            if exc.size > 1:  # the batcher splits the batch in halves; later batches start smaller
                self.oom_cap = max(1, exc.size // 2)
                raise
            raise PermanentToolError(
                f"{self.plan.folder.class_name} ran out of memory on {replica.device} for one "
                f"{jobs[0].image.width}x{jobs[0].image.height} edit; try offload=model, dtype=bfloat16, "
                "vae_tiling=true or a smaller image") from None
        except ToolError:
            raise
        except Exception as exc:
            if len(jobs) > 1:
                raise  # the batcher splits the batch to find the request that fails
            raise PermanentToolError(f"{self.plan.folder.class_name} failed on this edit: {describe(exc)}") from None
        finally:
            self._free.append(replica)
        return [Generated(a, a8, len(jobs), seconds, replica.device) for a, a8 in arrays]

    def _call(self, replica: Replica, jobs: list[Job]) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
        """One pipeline call, in the replica's own thread."""
        import torch

        gen = jobs[0].gen
        generators = [torch.Generator("cpu").manual_seed(job.seed) for job in jobs]
        kwargs = self.plan.adapter.kwargs(gen, [j.prompt for j in jobs], [j.image for j in jobs], generators,
                                          [j.mask for j in jobs])
        start = time.perf_counter()
        try:
            with torch.inference_mode(), condition_area(gen.condition_area):
                output = replica.pipe(**kwargs)
        except Exception as exc:
            if _is_oom(exc):
                _free_memory(replica.device)
                raise OutOfMemory(len(jobs), replica.device, describe(exc)) from None
            raise
        seconds = time.perf_counter() - start
        arrays = to_arrays(output.images if hasattr(output, "images") else output[0])
        if len(arrays) != len(jobs):
            raise RuntimeError(f"the pipeline returned {len(arrays)} images for {len(jobs)} edits")
        return [(a, np.round(a * 255.0).astype(np.uint8)) for a in arrays], seconds

    async def aclose(self) -> None:
        """Fail what still waits for a batch, let running batches finish, then free the replicas."""
        await self.batcher.aclose()
        self.close()

    def close(self) -> None:
        """Stop the worker threads and free the replicas' memory."""
        for replica in self.replicas:
            replica.thread.shutdown(wait=True)
        devices = {r.device for r in self.replicas}
        self.replicas.clear()
        self._free.clear()
        for device in devices:
            _free_memory(device)


def _is_oom(exc: BaseException) -> bool:
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _free_memory(device: str) -> None:
    import gc

    gc.collect()
    try:
        import torch

        if device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
