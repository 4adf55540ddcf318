"""The API backends against a real HTTP server on loopback, through the real openai/anthropic SDKs."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from refine_agent.tools.api.backend import Msg, make_chat
from refine_agent.tools.api.errors import Refused
from refine_agent.tools.api.options import APIOptions
from refine_agent.tools.api.ratelimit import RateLimiter

from refine_agent import RuntimeConfig
from refine_agent.errors import ConfigError, PermanentToolError, ToolCallFailed, TransientToolError
from refine_agent.images import Image
from refine_agent.runtime import RetryPolicy
from refine_agent.types import EditRequest

from .fake_api import FakeAPI, Fault, Slow, anthropic_reply, chat_reply, fake_api_fixture, images_reply  # noqa: F401

KEY = "sk-test-very-secret-0123456789"
FAST = RuntimeConfig(retry=RetryPolicy(max_attempts=4, initial_wait=0, max_wait=0, jitter=0))


def picture(seed: int = 0, size: tuple[int, int] = (24, 16)) -> Image:
    return Image(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


_open: list = []


@pytest.fixture(autouse=True)
async def _close_clients():  # type: ignore[no-untyped-def]
    """Close every SDK client a test opened, before its event loop ends."""
    yield
    while _open:
        await _open.pop().aclose()


def adapter(provider: str, model: str, options: APIOptions):  # type: ignore[no-untyped-def]
    chat = make_chat(provider, model, options)
    _open.append(chat)
    return chat


def opts(api: FakeAPI, provider: str = "openai", **kw) -> APIOptions:  # type: ignore[no-untyped-def]
    url = api.openai_base_url if provider == "openai" else api.anthropic_base_url
    return APIOptions(base_url=[url], price_in=1.0, price_out=2.0, timeout_s=5, **kw)


async def test_openai_chat_sends_images_intact_and_reads_structured_replies(fake_api: FakeAPI) -> None:
    fake_api.script("chat", chat_reply('{"passed": true, "reasoning": "ok"}', model="served-model-v2",
                                       usage=(1000, 500)))
    chat = adapter("openai", "gpt-x", opts(fake_api))
    img = picture(1)
    schema = {"type": "object", "properties": {"passed": {"type": "boolean"}}, "required": ["passed"],
              "additionalProperties": False}
    reply = await chat.complete([Msg(role="user", parts=["judge this", img])], schema=schema, schema_name="yesno",
                                temperature=0.0, seed=7, max_tokens=64)
    req = fake_api.requests("chat")[0]
    assert [i.sha256 for i in req.images] == [img.sha256]
    assert req.json["response_format"]["json_schema"]["schema"] == schema and req.json["seed"] == 7
    assert req.api_key == KEY
    assert reply.structured == {"passed": True, "reasoning": "ok"} and reply.model == "served-model-v2"
    assert reply.cost_usd == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)


async def test_a_server_without_json_schema_is_asked_again_without_it(fake_api: FakeAPI) -> None:
    fake_api.script("chat", Fault.bad_request("response_format json_schema is not supported", param="response_format"),
                    chat_reply('Sure! {"passed": false}'), chat_reply("later"))
    chat = adapter("openai", "local-vlm", opts(fake_api))
    reply = await chat.complete([Msg(role="user", parts=["x"])], schema={"type": "object"}, schema_name="a")
    assert reply.text == 'Sure! {"passed": false}' and reply.structured is None
    assert "response_format" not in fake_api.requests("chat")[1].json
    await chat.complete([Msg(role="user", parts=["x"])], schema={"type": "object"}, schema_name="a")
    assert "response_format" not in fake_api.requests("chat")[2].json  # remembered per endpoint


@pytest.mark.parametrize("fault,kind,match", [
    (Fault.rate_limited(retry_after="3"), TransientToolError, "rate-limiting"),
    (Fault.server_error(503), TransientToolError, "503"),
    (Fault.unauthorized(), PermanentToolError, "OPENAI_API_KEY is not set or was rejected by http://127.0.0.1"),
    (Fault.forbidden(), PermanentToolError, "403"),
    (Fault.not_found(), PermanentToolError, "model 'gpt-x' or the endpoint was not found"),
    (Fault.bad_request("bad image"), PermanentToolError, "rejected the request \\(400\\)"),
    (Fault.content_policy(), Refused, "content-policy"),
])
async def test_errors_are_classified(fake_api: FakeAPI, fault: Fault, kind: type, match: str) -> None:
    fake_api.script("chat", fault)
    chat = adapter("openai", "gpt-x", opts(fake_api))
    with pytest.raises(kind, match=match) as info:
        await chat.complete([Msg(role="user", parts=["x"])])
    assert KEY not in str(info.value)
    if fault.status == 429:
        assert info.value.retry_after == 3.0  # type: ignore[attr-defined]


async def test_the_runtime_retries_transient_errors_then_stops(fake_api: FakeAPI) -> None:
    fake_api.script("chat", Fault.rate_limited(retry_after="0"), Fault.server_error(500), chat_reply("fine"))
    chat = adapter("openai", "gpt-x", opts(fake_api))

    class Tool:
        name = "t"

        async def judge(self):  # type: ignore[no-untyped-def]
            from refine_agent.types import Verdict

            reply = await chat.complete([Msg(role="user", parts=["x"])])
            return Verdict(passed=True, reasoning=reply.text)

    tool = Tool()
    from refine_agent.runtime import Runtime as RT

    waits = []

    async def no_sleep(s: float) -> None:
        waits.append(s)

    rt = RT(FAST, sleep=no_sleep)
    out = await rt.call("judge", tool, tool.judge)
    assert out.value.reasoning == "fine" and out.record.attempts == 3 and waits[0] == 0.0
    fake_api.script("chat", *[Fault.server_error(502)] * 4)
    with pytest.raises(ToolCallFailed, match="after 4 attempts"):
        await rt.call("judge", tool, tool.judge)
    assert len(fake_api.requests("chat")) == 7  # 3 + 4: finite


async def test_a_slow_reply_times_out_and_is_retried(fake_api: FakeAPI) -> None:
    fake_api.script("chat", Slow(3.0), chat_reply("quick"))
    chat = adapter("openai", "gpt-x", APIOptions(base_url=[fake_api.openai_base_url], timeout_s=0.3))
    with pytest.raises(TransientToolError, match="did not answer in time"):
        await chat.complete([Msg(role="user", parts=["x"])])
    assert (await chat.complete([Msg(role="user", parts=["x"])])).text == "quick"


async def test_several_base_urls_are_load_balanced() -> None:
    with FakeAPI() as a, FakeAPI() as b:
        a.on("chat", chat_reply("a"))
        b.on("chat", chat_reply("b"))
        chat = adapter("openai", "m", APIOptions(base_url=f"{a.openai_base_url},{b.openai_base_url}"))
        texts = [(await chat.complete([Msg(role="user", parts=["x"])])).text for _ in range(4)]
    assert sorted(texts) == ["a", "a", "b", "b"]


async def test_anthropic_messages_with_a_forced_tool(fake_api: FakeAPI) -> None:
    fake_api.script("messages", anthropic_reply(tool_use=("verdict", {"passed": True, "reasoning": "fine"}),
                                                model="claude-served"),
                    anthropic_reply("I can't help with that.", stop_reason="refusal"),
                    Fault.overloaded(), Fault.unauthorized())
    chat = adapter("anthropic", "claude-x", opts(fake_api, "anthropic"))
    img = picture(2)
    reply = await chat.complete([Msg(role="system", parts=["be strict"]), Msg(role="user", parts=["judge", img])],
                                schema={"type": "object", "properties": {}}, schema_name="verdict",
                                temperature=0.0)
    req = fake_api.requests("messages")[0]
    assert [i.sha256 for i in req.images] == [img.sha256] and req.json["system"] == "be strict"
    assert req.json["tool_choice"] == {"type": "tool", "name": "verdict"} and req.json["temperature"] == 0.0
    assert reply.structured == {"passed": True, "reasoning": "fine"} and reply.model == "claude-served"
    assert (await chat.complete([Msg(role="user", parts=["x"])])).refused
    with pytest.raises(TransientToolError):
        await chat.complete([Msg(role="user", parts=["x"])])
    with pytest.raises(PermanentToolError, match="ANTHROPIC_API_KEY"):
        await chat.complete([Msg(role="user", parts=["x"])])


def test_a_missing_key_for_the_real_service_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY is not set"):
        adapter("openai", "gpt-4o", APIOptions())
    adapter("openai", "local", APIOptions(base_url=["http://127.0.0.1:9/v1"]))  # local servers need none


async def test_rate_limits_space_requests() -> None:
    now = [0.0]
    limiter = RateLimiter(rpm=60, tpm=None, clock=lambda: now[0])
    slept = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    orig = asyncio.sleep
    asyncio.sleep = fake_sleep  # type: ignore[assignment]
    try:
        for _ in range(62):
            await limiter.acquire(10)
    finally:
        asyncio.sleep = orig  # type: ignore[assignment]
    assert sum(slept) == pytest.approx(2.0, abs=0.05)  # the bucket holds 60; two more need a second each
    tpm = RateLimiter(rpm=None, tpm=1000, clock=lambda: now[0])
    assert tpm._wait_needed(600) == 0
    tpm.settle(0, 900)  # the server reported 900 tokens more than estimated: 100 are left
    assert tpm._wait_needed(600) == pytest.approx(30.0)  # 500 more tokens at 1000 a minute


async def test_the_openai_image_editor(fake_api: FakeAPI) -> None:
    from refine_agent.tools.editors.openai_images import OpenAIImageEditor

    out = picture(5, (32, 32))
    fake_api.script("images", images_reply([out], usage=(100, 200, 300)))
    editor = OpenAIImageEditor.from_spec(None, {"base_url": fake_api.openai_base_url, "quality": "high",
                                                "input_fidelity": "high"})
    _open.append(editor)
    src = picture(4, (24, 16))
    mask = Image(np.where(np.arange(24)[None, :, None] < 12, 255, 0).repeat(16, 0).repeat(3, 2).astype(np.uint8))
    res = await editor.edit(EditRequest(image=src, instruction="make it blue", seed=1, mask=mask))
    req = fake_api.requests("images")[0]
    assert req.images[0].sha256 == src.sha256 and req.form["prompt"] == "make it blue"
    assert req.form["quality"] == "high" and req.form["input_fidelity"] == "high" and req.mask is not None
    assert res.image.size == src.size and res.info["returned_size"] == [32, 32]
    assert res.usage.cost_usd == pytest.approx((100 * 5 + 200 * 10 + 300 * 40) / 1e6)
    assert editor.name == "openai:gpt-image-1" and "api_key" not in editor.identity()["params"]


async def test_a_rejected_token_parameter_is_renamed_and_remembered(fake_api: FakeAPI) -> None:
    """OpenAI's reasoning models reject max_tokens; the adapter switches to max_completion_tokens for good."""
    fake_api.script("chat", Fault.bad_request("Unsupported parameter: 'max_tokens' is not supported with this model. "
                                              "Use 'max_completion_tokens' instead.", param="max_tokens",
                                              code="unsupported_parameter"),
                    chat_reply("one"), chat_reply("two"))
    chat = adapter("openai", "gpt-x", opts(fake_api))
    assert (await chat.complete([Msg(role="user", parts=["x"])], max_tokens=77)).text == "one"
    assert (await chat.complete([Msg(role="user", parts=["x"])], max_tokens=77)).text == "two"
    first, second, third = (r.json for r in fake_api.requests("chat"))
    assert first["max_tokens"] == 77 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 77 and "max_tokens" not in second
    assert third["max_completion_tokens"] == 77 and "max_tokens" not in third


async def test_a_rejected_temperature_says_how_to_fix_it(fake_api: FakeAPI) -> None:
    fake_api.script("chat", Fault.bad_request("Unsupported value: 'temperature' does not support 0.0 with this model. "
                                              "Only the default (1) value is supported.", param="temperature"),
                    chat_reply("ok"))
    chat = adapter("openai", "o4-mini", opts(fake_api))
    with pytest.raises(PermanentToolError, match="temperature=none"):
        await chat.complete([Msg(role="user", parts=["x"])], temperature=0.0)
    from refine_agent.tools.judges.vlm import JudgeOptions

    assert JudgeOptions.model_validate({"temperature": "none"}).temperature is None
    assert "temperature" not in ((await chat.complete([Msg(role="user", parts=["x"])], temperature=None)) and
                                 fake_api.requests("chat")[-1].json)


async def test_an_exhausted_quota_is_not_retried(fake_api: FakeAPI) -> None:
    fake_api.script("chat", Fault.rate_limited(retry_after=None, message="You exceeded your current quota",
                                               code="insufficient_quota"))
    chat = adapter("openai", "gpt-x", opts(fake_api))
    with pytest.raises(PermanentToolError, match="quota"):
        await chat.complete([Msg(role="user", parts=["x"])])


def test_prices_come_from_the_longest_matching_model_prefix() -> None:
    from refine_agent.tools.api.pricing import chat_cost, image_cost

    assert chat_cost("claude-opus-4-5-20251101", 1_000_000, 0) == 5.0  # not claude-opus-4's 15
    assert chat_cost("claude-opus-4-20250514", 1_000_000, 0) == 15.0
    assert chat_cost("gpt-4o-mini-2024-07-18", 0, 1_000_000) == 0.60  # not gpt-4o's 10
    assert chat_cost("served-alias", 1_000_000, 1_000_000, requested="gpt-4o") == 12.5
    assert chat_cost("gpt-4o", 1_000_000, 0, price_in=1.0) == 1.0  # an override beats the table
    assert image_cost("gpt-image-1", 1_000_000, 1_000_000, 1_000_000) == 55.0


async def test_http_backends_are_chat_backends_and_report_split_out_reasoning(fake_api: FakeAPI) -> None:
    from refine_agent.tools.api.backend import ChatBackend

    reply = chat_reply("<answer>4</answer>")
    reply.body["choices"][0]["message"]["reasoning_content"] = "the edit looks right"  # vLLM's reasoning parser
    fake_api.script("chat", reply)
    chat = adapter("openai", "local-vlm", opts(fake_api))
    assert isinstance(chat, ChatBackend) and chat.capacity == 8 and not getattr(chat, "concurrent", False)
    got = await chat.complete([Msg(role="user", parts=["rate it"])])
    assert got.text == "<answer>4</answer>" and got.reasoning == "the edit looks right"
    assert chat.sent_seed(2**31 + 3) == 3
    assert adapter("anthropic", "c", opts(fake_api, "anthropic")).sent_seed(3) is None  # the API takes no seed


async def test_a_422_rejecting_response_format_is_asked_again_without_it(fake_api: FakeAPI) -> None:
    """FastAPI servers answer 422, not 400: older ``transformers serve`` rejected response_format that way."""
    fake_api.script("chat", Fault(422, body={"detail": "Unused fields in the request: {'response_format'}"}),
                    chat_reply('{"passed": true}'), chat_reply("later"),
                    Fault(422, body={"detail": "Unexpected keys in the request: {'top_k'}"}))
    chat = adapter("openai", "local-vlm", opts(fake_api))
    reply = await chat.complete([Msg(role="user", parts=["x"])], schema={"type": "object"}, schema_name="a")
    assert reply.text == '{"passed": true}' and reply.structured is None  # parsed from text by the caller
    assert "response_format" in fake_api.requests("chat")[0].json
    assert "response_format" not in fake_api.requests("chat")[1].json
    await chat.complete([Msg(role="user", parts=["x"])], schema={"type": "object"}, schema_name="a")
    assert "response_format" not in fake_api.requests("chat")[2].json  # remembered per endpoint
    with pytest.raises(PermanentToolError, match="rejected the request \\(422\\)"):  # any other 422 stays one
        await chat.complete([Msg(role="user", parts=["x"])])


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_an_all_reasoning_reply_cut_at_max_tokens(fake_api: FakeAPI, field: str) -> None:
    """What ``transformers serve`` (and vLLM) send when a thinking model hits max_tokens inside <think>: empty
    content, the reasoning split out (vLLM >= 0.10 names it ``reasoning``), finish reason ``length``."""
    reply = chat_reply("", finish_reason="length")
    reply.body["choices"][0]["message"][field] = "first, the circle"
    fake_api.script("chat", reply)
    chat = adapter("openai", "local-vlm", opts(fake_api))
    got = await chat.complete([Msg(role="user", parts=["x"])], schema={"type": "object"}, schema_name="a")
    assert (got.text, got.reasoning, got.finish_reason, got.structured) == ("", "first, the circle", "length", None)
