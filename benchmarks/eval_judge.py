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
                       skip: Collection[int] = (), skip_candidates: Collection[tuple[int, int]] = ()) -> None:
    """Judge each round's image with ``judge`` and store the verdict under ``key``; in a best-of-N round, judge
    every candidate (a narrower width may keep another), and the round's verdict is its kept candidate's.

    Rounds without an image, and those in ``skip`` (already judged; ``skip_candidates``: (round, candidate)),
    are left out. A judge failure is a failed verdict; an image ``load`` cannot read is a failed verdict marked
    ``UNREADABLE``, never a score.
    """
    judge_one = _Scorer(runtime, judge, run_seed, sample_id, instruction, source, mask, context, load)
    for rnd in rounds:
        if rnd.image is None:
            continue
        todo = [c for c in rnd.candidates if c.image is not None and (rnd.index, c.index) not in skip_candidates]
        verdicts = await asyncio.gather(*(judge_one(rnd.index, c.image or "") for c in todo))
        kept: Verdict | None = None
        for c, verdict in zip(todo, verdicts, strict=True):
            await asyncio.to_thread(store.put_candidate_eval, key, sample_id, rnd.index, c.index, verdict)
            kept = verdict if c.index == rnd.chosen else kept
        if rnd.index in skip:
            continue
        verdict = kept if kept is not None else await judge_one(rnd.index, rnd.image)
        await asyncio.to_thread(store.put_eval, key, sample_id, rnd.index, verdict)


class _Scorer:
    """One evaluation judgment of an image of a round. The seed is the round's, whichever candidate: a
    best-of-n run keeps one of these images as its round, and must get the same verdict for it."""

    def __init__(self, runtime: Runtime, judge: Any, run_seed: int, sample_id: str, instruction: str,
                 source: Image, mask: Image | None, context: dict[str, Any],
                 load: Callable[[str], Awaitable[Image]]) -> None:
        self.runtime, self.judge, self.load = runtime, judge, load
        self.run_seed, self.sample_id, self.instruction = run_seed, sample_id, instruction
        self.source, self.mask, self.context = source, mask, context

    async def __call__(self, round_index: int, image: str) -> Verdict:
        try:
            edited = await self.load(image)
        except (OSError, InputError) as exc:  # a lost file is a failed judgment, counted, never scored
            return Verdict.failed("error", f"stored image unreadable: {describe(exc)}", info={UNREADABLE: True})
        seed = derive_seed(self.run_seed, self.sample_id, round_index, "eval")
        req = JudgeRequest(source=self.source, edited=edited, instruction=self.instruction, seed=seed,
                           mask=self.mask, context=self.context)
        ck = judge_request_key(tool_identity(self.judge), req)
        try:
            return (await self.runtime.call("judge", self.judge, lambda: self.judge.judge(req), key=ck)).value
        except ToolCallFailed as exc:
            return Verdict.failed("error", describe(exc), judge=exc.tool)
