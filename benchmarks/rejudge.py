"""``refine-agent rejudge``: score every stored image of a run with a new evaluation judge, without
re-editing. Results go to the run's record store (so an interrupted rejudge resumes) and ``run.json``
then names the new judge, so ``summary.json``, ``ablate`` and ``report`` use it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from refine_agent.cache import identity_hash
from refine_agent.config import ToolSpec
from refine_agent.errors import InputError, describe
from refine_agent.images import Image
from refine_agent.protocols import close_tools, tool_identity
from refine_agent.registry import create_tool
from refine_agent.runtime import Runtime, RuntimeConfig
from refine_agent.store import RunStore, SampleRecord, StoreCache
from refine_agent.types import Verdict

from .concurrency import for_each
from .eval_judge import UNREADABLE, score_rounds


async def rejudge(store: RunStore, spec: ToolSpec, *, max_samples: int = 8, runtime: RuntimeConfig | None = None,
                  on_sample: Callable[[Any], None] | None = None,
                  info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate every round of every finished sample with ``spec``; return the updated run info. ``info`` is
    the run's checked run.json when the caller has read it already."""
    info = info if info is not None else store.require_run_info()
    judge = create_tool("judge", spec.spec, spec.options)
    identity = tool_identity(judge)
    same = identity == info["tools"]["judge"]
    key = identity_hash(identity)
    seed = int(info["config"]["seed"])
    rt = Runtime(runtime or RuntimeConfig.model_validate(info["config"]["runtime"]), cache=StoreCache(store))

    async def one(rec: SampleRecord) -> None:
        if rec.status == "done" and rec.trajectory is not None and rec.inputs is not None:
            await _judge_sample(store, rt, judge, key, seed, rec)
        if on_sample is not None:
            on_sample(rt.stats)  # the progress bar shows the calls and cost so far

    if not same:  # run.json names the new judge only once every sample has its verdicts
        try:
            await for_each(store.iter_samples(), one, max_samples)
        finally:
            await close_tools(judge)
    info["eval_judge"] = {"spec": spec.model_dump(), "identity": identity, "is_loop_judge": same, "key": key}
    info.setdefault("rejudged", []).append({"spec": spec.model_dump(), "identity": identity})
    store.write_run_info(info)
    return info


async def _judge_sample(store: RunStore, rt: Runtime, judge: Any, key: str, seed: int, rec: SampleRecord) -> None:
    assert rec.trajectory is not None and rec.inputs is not None
    # A judgment is final once made; one that could not be made because an image file was unreadable is
    # tried again on the next rejudge (the file may be back).
    have = {i: v for i, v in (await asyncio.to_thread(store.evals, key, rec.sample_id)).items()
            if not v.info.get(UNREADABLE)}
    have_candidates = {i for i, v in (await asyncio.to_thread(store.candidate_evals, key, rec.sample_id,
                                                               rec.trajectory.widest)).items()
                       if not v.info.get(UNREADABLE)}
    try:
        source = await asyncio.to_thread(store.get_image, rec.inputs.source)
        mask = await asyncio.to_thread(store.get_image, rec.inputs.mask) if rec.inputs.mask else None
    except (OSError, InputError) as exc:
        for rnd in rec.trajectory.rounds:
            if rnd.image is not None and rnd.index not in have:
                await asyncio.to_thread(store.put_eval, key, rec.sample_id, rnd.index,
                                        Verdict.failed("error", f"stored input image unreadable: {describe(exc)}",
                                                       info={UNREADABLE: True}))
        return

    async def load(sha: str) -> Image:
        return await asyncio.to_thread(store.get_image, sha)

    await score_rounds(store, rt, judge, key, run_seed=seed, sample_id=rec.sample_id,
                       instruction=rec.trajectory.instruction, rounds=rec.trajectory.rounds, source=source, mask=mask,
                       context=rec.inputs.context, load=load, skip=have,
                       skip_candidates=have_candidates)
