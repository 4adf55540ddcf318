"""The chat backend seam: the VLM judge (every mode), the VLM critic and the LLM controller on a
function-backed backend, without HTTP; the backend registry; the nested transport options; and what each
VLM role receives for a RefEdit sample."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from refine_agent.tools.api.backend import (
    CHAT_BACKENDS,
    ChatBackend,
    ChatReply,
    backend_entry,
    issue_all,
    make_chat,
    register_chat_backend,
)
from refine_agent.tools.api.function_chat import ChatCall, FunctionChat
from refine_agent.tools.controllers.llm import LLMController
from refine_agent.tools.critics.vlm import VLMCritic
from refine_agent.tools.judges.prompts import format_context
from refine_agent.tools.judges.vlm import JudgeOptions, VLMJudge

from refine_agent.errors import ConfigError, MissingExtraError, PermanentToolError, TransientToolError
from refine_agent.images import Image
from refine_agent.registry import create_tool
from refine_agent.types import ControllerRequest, CritiqueRequest, JudgeRequest, Round, Verdict

SC = {"reasoning": "the circle is blue now", "success": 9, "overediting": 8}
PQ = {"reasoning": "clean", "naturalness": 10, "artifacts": 9}
CRIT = {"analysis": "too dark", "satisfied": False, "instruction": "brighten more", "base": "current"}
REFEDIT = {"masked_instruction": "make the masked object red", "rationale": "only the car may change"}


def img(v: int) -> Image:
    return Image(np.full((12, 16, 3), v, np.uint8))


def jreq(**kw: Any) -> JudgeRequest:
    return JudgeRequest(source=img(10), edited=img(200), instruction="make the car red", seed=5, **kw)


def creq(**kw: Any) -> CritiqueRequest:
    verdict = Verdict(scores={"SC": [3, 9], "PQ": [9, 9]}, passed=False, reasoning="dim")
    history = [Round(index=0, instruction="make the car red", base="source", verdict=verdict)]
    return CritiqueRequest(**{"source": img(10), "edited": img(60), "instruction": "make the car red",
                              "verdict": verdict, "seed": 1, "history": history, **kw})


def by_schema(**answers: Any):  # type: ignore[no-untyped-def]
    """A responder that answers each contract (by its schema name) and yields once, so calls overlap."""

    async def fn(call: ChatCall) -> Any:
        await asyncio.sleep(0)
        answer = answers[call.schema_name]
        return answer(call) if callable(answer) else answer

    return fn


def judge(options: dict[str, Any] | None = None, **answers: Any) -> tuple[VLMJudge, FunctionChat]:
    chat = FunctionChat(by_schema(**answers), model="served-model")
    return VLMJudge("asked-model", options or {}, chat=chat), chat


# -- the judge in every mode ----------------------------------------------------------------------------------
async def test_viescore_sc_and_pq_and_repeats_go_together_in_a_fixed_order() -> None:
    sc = lambda call: {**SC, "success": 6 + call.seed % 5}  # noqa: E731  seeds 5, 6, 7 -> 6, 7, 8
    j, chat = judge({"repeats": 3}, semanticconsistency=sc, perceptualquality=PQ)
    v = await j.judge(jreq())
    assert v.ok and v.scores == {"SC": [7.0, 8.0], "PQ": [10.0, 9.0]} and v.overall == pytest.approx(np.sqrt(7 * 9))
    assert chat.max_in_flight == 6  # three repeats of SC and PQ, all issued at once: one batch for a batcher
    assert [(c.schema_name, c.seed) for c in chat.calls] == [(n, s) for s in (5, 6, 7)
                                                             for n in ("semanticconsistency", "perceptualquality")]
    assert v.info["seeds"] == [5, 6, 7] and v.info["model"] == "served-model" and v.info["valid"] == 3
    assert v.info["requested_model"] == "asked-model" and v.judge == "function:asked-model"
    sc_call, pq_call = chat.calls[:2]
    assert [i.sha256 for i in sc_call.images] == [img(10).sha256, img(200).sha256]
    assert [i.sha256 for i in pq_call.images] == [img(200).sha256]
    assert sc_call.schema is not None and sc_call.temperature == 0.0
    again = await judge({"repeats": 3}, semanticconsistency=sc, perceptualquality=PQ)[0].judge(jreq())
    assert again.model_dump(exclude={"latency_s"}) == v.model_dump(exclude={"latency_s"})


async def test_viescore_single() -> None:
    j, chat = judge({"mode": "viescore_single"}, viescore={**SC, **PQ})
    v = await j.judge(jreq())
    assert v.scores == {"SC": [9.0, 8.0], "PQ": [10.0, 9.0]} and len(chat.calls) == 1


async def test_yesno_with_context_and_majority() -> None:
    votes = iter([True, False, True])
    j, chat = judge({"mode": "yesno", "repeats": 3, "aggregate": "majority"},
                    yesno=lambda call: {"reasoning": "r", "passed": next(votes)})
    v = await j.judge(jreq(context={"rationale": "the sky must stay blue"}))
    assert v.passed is True and v.overall is None and v.info["valid"] == 3
    assert all("rationale: the sky must stay blue" in c.text for c in chat.calls)


async def test_iecritic_reads_text_and_split_out_reasoning() -> None:
    reply = ChatReply(text="<answer>4</answer>", model="m", reasoning="the car is red and nothing else moved")
    j, chat = judge({"mode": "iecritic"}, iecriticrating=reply)
    v = await j.judge(jreq())
    assert v.overall == pytest.approx(7.5) and v.info["rating"] == 4
    assert "nothing else moved" in v.reasoning and chat.calls[0].schema is None  # iecritic asks for text


async def test_judge_plus_critic_feeds_the_from_judge_critic() -> None:
    both = {**SC, **PQ, "analysis": "nearly", "satisfied": False, "instruction": "a bit redder", "base": "best"}
    j, chat = judge({"mode": "judge+critic"}, judgecritic=both)
    v = await j.judge(jreq())
    assert v.overall == pytest.approx(np.sqrt(72)) and v.info["critique"]["instruction"] == "a bit redder"
    c = await create_tool("critic", "from-judge").critique(creq(verdict=v))
    assert (c.instruction, c.base) == ("a bit redder", "best") and len(chat.calls) == 1


async def test_text_replies_are_parsed_when_no_structured_output_is_asked() -> None:
    j, chat = judge({"structured": False}, semanticconsistency="Here:\n```json\n" + json.dumps(SC) + "\n```",
                    perceptualquality="Scores: [10, 9]")
    v = await j.judge(jreq())
    assert v.overall == pytest.approx(np.sqrt(72)) and all(c.schema is None for c in chat.calls)


async def test_invalid_structured_output_falls_back_to_the_text() -> None:
    reply = ChatReply(text=json.dumps(PQ), model="m", structured={"naturalness": 99})  # out of range
    v = await judge(semanticconsistency=SC, perceptualquality=reply)[0].judge(jreq())
    assert v.scores["PQ"] == [10.0, 9.0]


async def test_refusals_parse_errors_and_min_valid() -> None:
    refused = ChatReply(text="", model="m", refusal="I can't judge this image.")
    v = await judge(semanticconsistency=refused, perceptualquality=PQ)[0].judge(jreq())
    assert v.status == "refused" and v.overall is None
    v = await judge(semanticconsistency="no idea", perceptualquality=PQ)[0].judge(jreq())
    assert v.status == "parse_error" and v.passed is None and "no idea" in (v.raw or "")
    answers = iter(["???", '{"reasoning": "ok", "passed": true}'])
    v = await judge({"mode": "yesno", "repeats": 2, "min_valid": 2}, yesno=lambda call: next(answers))[0].judge(jreq())
    assert v.status == "parse_error" and "1 of 2" in v.reasoning


async def test_a_sequential_backend_asks_in_order_and_stops_at_the_first_bad_answer() -> None:
    chat = FunctionChat(by_schema(semanticconsistency="garbage", perceptualquality=PQ), concurrent=False)
    v = await VLMJudge("m", {"repeats": 2}, chat=chat).judge(jreq())
    assert v.status == "parse_error" and chat.max_in_flight == 1
    assert [(c.schema_name, c.seed) for c in chat.calls] == [("semanticconsistency", 5), ("semanticconsistency", 6)]


async def test_a_backend_without_seeds_records_none_and_usage_is_summed() -> None:
    chat = FunctionChat(by_schema(semanticconsistency=SC, perceptualquality=PQ), takes_seed=False, tokens=(100, 7))
    v = await VLMJudge("m", {"repeats": 2}, chat=chat).judge(jreq())
    assert v.info["seeds"] == [None, None] and all(c.seed is None for c in chat.calls)
    assert (v.usage.input_tokens, v.usage.output_tokens) == (400, 28)


async def test_issue_all_keeps_the_order_of_the_calls() -> None:
    async def slow(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    together = FunctionChat(lambda call: "", concurrent=True)
    calls = [lambda d=d, v=v: slow(d, v) for d, v in ((0.03, 1), (0.0, 2), (0.01, 3))]
    assert await issue_all(together, calls) == [1, 2, 3]
    apart = FunctionChat(lambda call: "", concurrent=False)
    assert await issue_all(apart, calls, stop=lambda v: v == 2) == [1, 2]


async def test_a_failed_call_cancels_its_neighbours_and_reaches_the_runtime() -> None:
    finished: list[str] = []

    async def fn(call: ChatCall) -> Any:
        if call.schema_name == "semanticconsistency":
            raise TransientToolError("server busy")
        await asyncio.sleep(0.5)
        finished.append(call.schema_name)
        return PQ

    chat = FunctionChat(fn)
    with pytest.raises(TransientToolError, match="busy"):
        await VLMJudge("m", {"repeats": 2}, chat=chat).judge(jreq())
    await asyncio.sleep(0)
    assert len(chat.calls) == 4 and finished == [] and chat.in_flight == 0


# -- the critic and the controller ----------------------------------------------------------------------------
async def test_the_vlm_critic_on_a_function_backend() -> None:
    chat = FunctionChat(lambda call: CRIT, model="served")
    critic = VLMCritic("asked", chat=chat)
    c = await critic.critique(creq())
    assert (c.satisfied, c.instruction, c.base) == (False, "brighten more", "current")
    assert c.info["model"] == "served" and c.info["seed"] == 1 and chat.calls[0].schema_name == "critique"
    assert "dim" in chat.calls[0].text and "make the car red" in chat.calls[0].text
    assert [i.sha256 for i in chat.calls[0].images] == [img(10).sha256, img(60).sha256]
    text_only = VLMCritic("asked", {"structured": False}, chat=FunctionChat(lambda call: json.dumps(CRIT)))
    assert (await text_only.critique(creq())).instruction == "brighten more"
    with pytest.raises(PermanentToolError, match="did not parse"):
        await VLMCritic("asked", chat=FunctionChat(lambda call: "hmm")).critique(creq())
    with pytest.raises(PermanentToolError, match="declined"):
        await VLMCritic("asked", chat=FunctionChat(lambda call: ChatReply(text="", model="m", refusal="no"))
                        ).critique(creq())
    await critic.aclose()
    assert chat.closed


def controller_request(context: dict[str, Any]) -> ControllerRequest:
    return ControllerRequest(source=img(10), instruction="make the car red", transcript=[], seed=3, context=context,
                             budget_left={"rounds": 2})


async def test_the_controller_on_a_function_backend() -> None:
    from refine_agent.tools.api.backend import ToolCall

    reply = ChatReply(text="try again", model="served", tool_calls=[ToolCall("c1", "edit", {"instruction": "x",
                                                                                            "base": "source"})])
    chat = FunctionChat(lambda call: reply)
    ctrl = LLMController("function", "asked", chat=chat)
    d = await ctrl.decide(controller_request({}))
    assert (d.name, d.arguments["base"], d.info["seed"]) == ("edit", "source", 3)
    assert [t.name for t in chat.calls[0].tools or []] == ["edit", "judge", "finish"]


# -- what each VLM role receives for a RefEdit sample ---------------------------------------------------------
async def test_refedit_masked_instruction_reaches_only_the_judges_masked_sc_call() -> None:
    """RefEdit gives the judge a masked instruction for its masked SC call. It is not context: no role sees
    it as such, and only the judge's SC call (on masked images) uses it, in place of the instruction."""
    assert format_context(REFEDIT) == "rationale: only the car may change"
    mask = Image(np.zeros((12, 16, 3), np.uint8))
    j, jchat = judge({"mask_dilation": 0}, semanticconsistency=SC, perceptualquality=PQ)
    await j.judge(jreq(mask=mask, context=REFEDIT))
    sc, pq = jchat.calls
    assert "make the masked object red" in sc.text and "make the car red" not in sc.text
    assert "masked" not in pq.text  # PQ rates the edit alone: no instruction, no context
    assert all(float(i.array.max()) == 0 for i in sc.images)  # SC sees the masked images
    assert pq.images[0].sha256 == img(200).sha256  # PQ sees the whole edit

    unmasked, uchat = judge(semanticconsistency=SC, perceptualquality=PQ)  # no mask: the plain instruction
    await unmasked.judge(jreq(context=REFEDIT))
    assert all("masked" not in c.text for c in uchat.calls) and "make the car red" in uchat.calls[0].text

    cchat = FunctionChat(lambda call: CRIT)
    await VLMCritic("m", chat=cchat).critique(creq(context=REFEDIT))
    ctext = cchat.calls[0].text
    assert "masked" not in ctext and "rationale: only the car may change" in ctext  # the leak this fixes

    reply = ChatReply(text="", model="m", tool_calls=[])
    kchat = FunctionChat(lambda call: reply)
    await LLMController("function", "m", chat=kchat).decide(controller_request(REFEDIT))
    ktext = kchat.calls[0].text
    assert "masked" not in ktext and "Context: rationale: only the car may change" in ktext


# -- the registry and the options ------------------------------------------------------------------------------
def test_function_chat_is_a_chat_backend_and_providers_are_registered_lazily() -> None:
    assert isinstance(FunctionChat(lambda call: ""), ChatBackend)
    assert {"openai", "anthropic"} <= set(CHAT_BACKENDS)
    with pytest.raises(ConfigError, match="unknown chat backend 'nope'"):
        make_chat("nope", "m")
    register_chat_backend("test-fn", "tests.test_chat_backends:_factory")
    try:
        chat = make_chat("test-fn", "m", {"answer": "hi"})
        assert isinstance(chat, FunctionChat) and chat.model == "m"
        register_chat_backend("test-missing", "no_such_sdk_xyz.backend:Chat", extra="local")
        with pytest.raises(MissingExtraError, match=r"refine-agent\[local\]"):
            make_chat("test-missing", "m")
        assert backend_entry("test-missing").extra == "local"
    finally:
        CHAT_BACKENDS.pop("test-fn", None)
        CHAT_BACKENDS.pop("test-missing", None)


def _factory(model: str, transport: dict[str, Any]) -> FunctionChat:
    return FunctionChat(lambda call: transport["answer"], model=model)


def test_transport_options_are_nested_and_the_flat_spelling_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    j = create_tool("judge", "openai:gpt-x", {"base_url": "http://127.0.0.1:9/v1", "rpm": 5, "price_in": 1.0,
                                              "max_concurrency": 3, "extra_body": {"top_k": 1}, "mode": "yesno"})
    t = j.options.transport
    assert (t.base_url, t.rpm, t.price_in, j.capacity) == (["http://127.0.0.1:9/v1"], 5, 1.0, 3)
    params = j.identity()["params"]
    assert params["mode"] == "yesno" and params["extra_body"] == {"top_k": 1}  # changes replies: in the key
    assert not {"base_url", "rpm", "price_in", "max_concurrency", "transport", "api_key"} & set(params)
    # the judge's own options know nothing of HTTP: a local backend lists no base_url
    assert "base_url" not in JudgeOptions.model_fields and "transport" not in JudgeOptions.model_fields
    with pytest.raises(ConfigError, match="base_url"):
        VLMJudge("m", {"base_url": "http://x"}, chat=FunctionChat(lambda call: ""))
    with pytest.raises(ConfigError):
        create_tool("judge", "openai:gpt-x", {"base_url": "http://127.0.0.1:9/v1", "rpm": 0})
    assert VLMJudge("m", chat=FunctionChat(lambda call: "", capacity=2)).capacity == 2


def test_an_http_backend_takes_its_transport_as_options_a_dict_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openai", reason="the api extra installs the openai SDK")
    from refine_agent.tools.api.backend import make_chat
    from refine_agent.tools.api.options import APIOptions

    given = make_chat("openai", "m", {"base_url": "http://127.0.0.1:9/v1", "api_key": "k", "max_concurrency": 3})
    assert given.endpoints.urls == ["http://127.0.0.1:9/v1"] and given.capacity == 3  # type: ignore[attr-defined]
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert make_chat("openai", "m", None).endpoints.urls == ["https://api.openai.com/v1"]  # type: ignore[attr-defined]
    typed = make_chat("openai", "m", APIOptions(base_url="http://127.0.0.1:8/v1", api_key="k"))
    assert typed.endpoints.urls == ["http://127.0.0.1:8/v1"]  # type: ignore[attr-defined]
