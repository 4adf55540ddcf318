"""``transformers:PATH`` judges, critics and controllers on tiny random-weight Qwen-VL models: every mode
with constrained output on (always ``ok``, scores in range) and off (garbage becomes ``parse_error``), batched
equals unbatched at greedy decoding, one copy of the weights, and IE-Critic's ``<think>`` prefill."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from refine_agent.tools.api.backend import Msg
from refine_agent.tools.judges.prompts import MODES

from refine_agent.images import Image
from refine_agent.pool import model_pool
from refine_agent.registry import create_tool
from refine_agent.types import CritiqueRequest, JudgeRequest, Round

pytest.importorskip("xgrammar", reason="constrained decoding needs xgrammar (the local extra)")

Models = Callable[[str], Path]
JUDGE_MODES = [m for m, mode in MODES.items() if mode.kind == "judge"]


def picture(seed: int, size: tuple[int, int] = (64, 48)) -> Image:
    return Image(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def request(seed: int = 3) -> JudgeRequest:
    return JudgeRequest(source=picture(0), edited=picture(1), instruction="make the car red", seed=seed)


def judge(models: Models, name: str = "qwen25_vl", **options: Any) -> Any:
    return create_tool("judge", f"transformers:{models(name)}", {"max_tokens": 400, **options})


@pytest.mark.parametrize("mode", JUDGE_MODES)
async def test_constrained_replies_always_parse_and_stay_in_range(vlms: Models, mode: str) -> None:
    verdict = await judge(vlms, mode=mode).judge(request())
    assert verdict.status == "ok", verdict.reasoning
    assert verdict.overall is None or 0 <= verdict.overall <= 10
    for values in verdict.scores.values():
        assert all(0 <= v <= 10 for v in values)
    assert verdict.info["backend"]["path"] == str(vlms("qwen25_vl")) and verdict.info["backend"]["constrained"]
    assert verdict.info["backend"]["dtype"] == "float32" and verdict.info["backend"]["config_sha256"]


@pytest.mark.parametrize("mode", JUDGE_MODES)
async def test_unconstrained_garbage_is_a_parse_error_with_the_raw_text(vlms: Models, mode: str) -> None:
    verdict = await judge(vlms, mode=mode, structured=False).judge(request())
    assert verdict.status == "parse_error" and verdict.overall is None and verdict.raw


async def test_qwen3_vl_judges_too(vlms: Models) -> None:
    verdict = await judge(vlms, "qwen3_vl", mode="viescore_single").judge(request())
    assert verdict.status == "ok" and 0 <= verdict.overall <= 10  # type: ignore[operator]


async def test_the_iecritic_prefill_is_in_the_prompt_and_recorded(vlms: Models) -> None:
    tool = judge(vlms, mode="iecritic")
    sent: list[list[Msg]] = []
    complete = tool.chat.complete

    async def spy(messages: list[Msg], **kw: Any) -> Any:
        sent.append(messages)
        return await complete(messages, **kw)

    tool.chat.complete = spy
    verdict = await tool.judge(request())
    assert verdict.info["prefill"] == "<think>" and verdict.raw.startswith("<think>")
    vlm = await tool.chat.load()
    prompt = tool.chat.prompt_text(vlm, sent[0])
    assert prompt.endswith("<|im_start|>assistant\n<think>")


async def test_batched_replies_equal_unbatched_ones_at_greedy_decoding(vlms: Models) -> None:
    chat = judge(vlms, max_batch_size=8, batch_wait_ms=300).chat
    asks = [[Msg(role="user", parts=[f"Describe picture {i}.", picture(i)])] for i in range(4)]
    together = await asyncio.gather(*(chat.complete(m, max_tokens=24) for m in asks))
    alone = [await chat.complete(m, max_tokens=24) for m in asks]
    assert [r.text for r in together] == [r.text for r in alone]
    assert len({r.text for r in alone}) > 1  # the prompts really differ
    assert all(r.output_tokens > 0 and r.input_tokens > 0 for r in alone)


async def test_judge_critic_and_evaluation_judge_share_one_copy_of_the_weights(vlms: Models) -> None:
    loop_judge = judge(vlms)
    eval_judge = judge(vlms, mode="yesno")
    critic = create_tool("critic", f"transformers:{vlms('qwen25_vl')}", {"max_tokens": 400})
    loaded = [await tool.chat.load() for tool in (loop_judge, eval_judge, critic)]
    assert loaded[0] is loaded[1] is loaded[2]
    assert loop_judge.limiter_key() == critic.limiter_key() == eval_judge.limiter_key() is not None
    assert sum(1 for _ in [loop_judge.chat.model_key()] if loop_judge.chat.model_key() in model_pool()) == 1


async def test_the_critic_answers_with_a_parsed_critique(vlms: Models) -> None:
    critic = create_tool("critic", f"transformers:{vlms('qwen25_vl')}", {"max_tokens": 400})
    verdict = await judge(vlms, mode="viescore_single").judge(request())
    rnd = Round(index=0, instruction="make the car red", base="source", verdict=verdict)
    out = await critic.critique(CritiqueRequest(source=picture(0), edited=picture(1), instruction="make the car red",
                                                verdict=verdict, history=[rnd], seed=5))
    assert out.satisfied or out.instruction
    assert out.base in ("current", "source", "best")


def test_a_folder_that_is_not_a_model_is_one_line_at_load(tmp_path: Path) -> None:
    tool = create_tool("judge", f"transformers:{tmp_path}", {})
    from refine_agent.errors import ConfigError

    with pytest.raises(ConfigError, match=f"cannot load the model at {tmp_path}"):
        asyncio.run(tool.load())
