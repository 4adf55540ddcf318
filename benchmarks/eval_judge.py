"""The evaluation judge: scoring every round of a trajectory, shared by ``bench`` and ``rejudge``.

Every round is scored, not only round 0 and the last, because an ablation may pick any round as final.
Each judgment uses the loop's judge-request key (``refine_agent.cache.judge_request_key``) and a seed
derived from (run seed, sample, round, "eval"), so a resumed bench or an interrupted rejudge finds the
judgments already made in the run's cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from refine_agent.cache import judge_request_key
from refine_agent.errors import InputError, ToolCallFailed, describe
from refine_agent.images import Image
from refine_agent.loop import derive_seed
from refine_agent.protocols import tool_identity
from refine_agent.runtime import Runtime
from refine_agent.store import RunStore
from refine_agent.types import JudgeRequest, Round, Verdict

UNREADABLE = "image_unreadable"  # in a failed verdict's info: no judgment was made, so try again next time

__all__ = ["UNREADABLE", "score_rounds"]


async def score_rounds(store: RunStore, runtime: Runtime, judge: Any, key: str, *, run_seed: int, sample_id: str,
                       instruction: str, rounds: list[Round], source: Image, mask: Image | None,
                       context: dict[str, Any], load: Callable[[str], Awaitable[Image]],
                       skip: Collection[int] = ()) -> None:
    """Judge each round's image with ``judge`` and store the verdict under ``key``.

    Rounds without an image, and those in ``skip`` (already judged), are left out. A judge failure is a
    failed verdict; an image ``load`` cannot read is a failed verdict marked ``UNREADABLE``, never a score.
    """
    for rnd in rounds:
        if rnd.image is None or rnd.index in skip:
            continue
        try:
            edited = await load(rnd.image)
        except (OSError, InputError) as exc:  # a lost file is a failed judgment, counted, never scored
            await asyncio.to_thread(store.put_eval, key, sample_id, rnd.index,
                                    Verdict.failed("error", f"stored image unreadable: {describe(exc)}",
                                                   info={UNREADABLE: True}))
            continue
        seed = derive_seed(run_seed, sample_id, rnd.index, "eval")
        req = JudgeRequest(source=source, edited=edited, instruction=instruction, seed=seed, mask=mask,
                           context=context)
        ck = judge_request_key(tool_identity(judge), req)
        try:
            verdict = (await runtime.call("judge", judge, lambda r=req: judge.judge(r), key=ck)).value
        except ToolCallFailed as exc:
            verdict = Verdict.failed("error", describe(exc), judge=exc.tool)
        await asyncio.to_thread(store.put_eval, key, sample_id, rnd.index, verdict)
