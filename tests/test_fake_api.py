"""The fake OpenAI/Anthropic server, driven by the real SDK clients over loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time

import anthropic
import numpy as np
import openai
import pytest
from PIL import Image as PILImage

from refine_agent.images import Image, decode_image

from .conftest import solid
from .fake_api import (
    Disconnect,
    FakeAPI,
    Fault,
    Malformed,
    Reply,
    Slow,
    anthropic_reply,
    chat_reply,
    fake_api_fixture,  # noqa: F401 - provides the fake_api fixture
    images_reply,
    parse_multipart,
    tool_call,
)


def gradient(w: int = 12, h: int = 8) -> Image:
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 20 % 256, y * 30 % 256, (x + y) * 7 % 256], axis=-1).astype(np.uint8)
    return Image(arr)


def data_url(img: Image) -> str:
    return "data:image/png;base64," + base64.b64encode(img.png_bytes()).decode("ascii")


def b64(img: Image) -> str:
    return base64.b64encode(img.png_bytes()).decode("ascii")


def oai(api: FakeAPI, **kw: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=kw.pop("api_key", "sk-test"), base_url=api.openai_base_url,
                              max_retries=kw.pop("max_retries", 0), timeout=kw.pop("timeout", 5.0), **kw)


def ant(api: FakeAPI, **kw: object) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key=kw.pop("api_key", "ak-test"), base_url=api.anthropic_base_url,
                                    max_retries=kw.pop("max_retries", 0), timeout=kw.pop("timeout", 5.0), **kw)


USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def api():
    with FakeAPI() as server:
        yield server


# ---------------------------------------------------------------------------------------------------------------
# OpenAI chat completions


async def test_chat_with_image_data_url_and_json_schema(api: FakeAPI) -> None:
    img = gradient()
    api.script("chat", chat_reply('{"score": 7}', model="gpt-fake", usage=(123, 45)))
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"],
              "additionalProperties": False}
    async with oai(api) as client:
        resp = await client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "system", "content": "You judge images."},
                      {"role": "user", "content": [{"type": "text", "text": "Score it."},
                                                   {"type": "image_url", "image_url": {"url": data_url(img),
                                                                                       "detail": "high"}}]}],
            response_format={"type": "json_schema", "json_schema": {"name": "score", "schema": schema,
                                                                    "strict": True}},
            seed=42, temperature=0.0, max_completion_tokens=64,
        )
    assert resp.object == "chat.completion"
    assert resp.model == "gpt-fake"
    assert json.loads(resp.choices[0].message.content or "") == {"score": 7}
    assert resp.choices[0].finish_reason == "stop"
    assert resp.choices[0].message.refusal is None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (123, 45, 168)

    (rec,) = api.requests("chat")
    assert rec.method == "POST" and rec.path == "/v1/chat/completions"
    assert rec.api_key == "sk-test" and rec.headers["authorization"] == "Bearer sk-test"
    assert [i.sha256 for i in rec.images] == [img.sha256]
    assert rec.image_errors == []
    assert rec.json["model"] == "gpt-test"
    assert rec.json["seed"] == 42 and rec.json["temperature"] == 0.0 and rec.json["max_completion_tokens"] == 64
    assert rec.json["response_format"]["type"] == "json_schema"
    assert rec.json["response_format"]["json_schema"]["schema"] == schema
    assert api.pending() == 0 and api.problems == []


async def test_chat_json_object_and_max_tokens_and_refusal(api: FakeAPI) -> None:
    api.script("chat", chat_reply(None, refusal="I can't help with that."),
               chat_reply("Here you go: ```json\n{\"score\": 3}\n```"),
               chat_reply('{"scores": [1, 2]}', finish_reason="length"))
    async with oai(api) as client:
        first = await client.chat.completions.create(model="m", messages=USER, max_tokens=10,
                                                     response_format={"type": "json_object"})
        second = await client.chat.completions.create(model="m", messages=USER)
        third = await client.chat.completions.create(model="m", messages=USER)
    assert first.choices[0].message.content is None
    assert first.choices[0].message.refusal == "I can't help with that."
    assert "```json" in (second.choices[0].message.content or "")  # prose-wrapped JSON is just content
    assert third.choices[0].finish_reason == "length"
    first_req = api.requests("chat")[0].json
    assert first_req["max_tokens"] == 10 and first_req["response_format"] == {"type": "json_object"}


async def test_chat_tool_calls_round_trip(api: FakeAPI) -> None:
    tools = [{"type": "function", "function": {
        "name": "apply_edit", "description": "Apply an edit.",
        "parameters": {"type": "object", "properties": {"op": {"type": "string"}, "amount": {"type": "number"}},
                       "required": ["op"]}}}]
    api.script("chat",
               chat_reply(tool_calls=[tool_call("apply_edit", {"op": "brighten", "amount": 0.2}, id="call_1"),
                                      ("apply_edit", '{"op": "crop"}')]),
               chat_reply("done"))
    async with oai(api) as client:
        resp = await client.chat.completions.create(
            model="m", messages=USER, tools=tools,
            tool_choice={"type": "function", "function": {"name": "apply_edit"}})
        msg = resp.choices[0].message
        assert resp.choices[0].finish_reason == "tool_calls"
        assert msg.content is None and len(msg.tool_calls or []) == 2
        first, second = msg.tool_calls or []
        assert first.id == "call_1" and first.type == "function"
        assert first.function.name == "apply_edit"
        assert json.loads(first.function.arguments) == {"op": "brighten", "amount": 0.2}
        assert json.loads(second.function.arguments) == {"op": "crop"}
        assert second.id.startswith("call_")

        follow = [*USER, msg.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": first.id, "content": "ok"},
                  {"role": "tool", "tool_call_id": second.id, "content": "ok"}]
        done = await client.chat.completions.create(model="m", messages=follow, tools=tools)
    assert done.choices[0].message.content == "done"

    sent_first, sent_second = (r.json for r in api.requests("chat"))
    assert sent_first["tools"] == tools
    assert sent_first["tool_choice"] == {"type": "function", "function": {"name": "apply_edit"}}
    assert sent_second["messages"][1]["tool_calls"][0]["id"] == "call_1"
    assert [m["role"] for m in sent_second["messages"]] == ["user", "assistant", "tool", "tool"]


async def test_default_handler_answers_after_the_script(api: FakeAPI) -> None:
    api.script("chat", chat_reply("scripted"))
    api.on("chat", lambda rec: chat_reply(f"{len(rec.images)} images, model {rec.json['model']}"))
    images = [solid(10), solid(20)]
    content = [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images]
    async with oai(api) as client:
        texts = [(await client.chat.completions.create(model=f"m{k}", messages=[{"role": "user", "content": content}]))
                 .choices[0].message.content for k in range(3)]
    assert texts == ["scripted", "2 images, model m1", "2 images, model m2"]
    assert all([i.sha256 for i in r.images] == [i.sha256 for i in images] for r in api.requests("chat"))

    api.on("chat", Fault(503))  # a constant step works too
    async with oai(api) as client:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m", messages=USER)


async def test_script_ran_out_is_a_loud_500(api: FakeAPI) -> None:
    async with oai(api) as client:
        with pytest.raises(openai.InternalServerError, match="ran out") as err:
            await client.chat.completions.create(model="m", messages=USER)
    assert err.value.status_code == 500
    assert "api.script('chat'" in err.value.message
    assert len(api.problems) == 1 and "ran out" in api.problems[0]

    async with ant(api) as client:
        with pytest.raises(anthropic.InternalServerError) as aerr:
            await client.messages.create(model="c", max_tokens=10, messages=USER)
    assert "ran out" in (aerr.value.api_message or "")


async def test_a_raising_handler_is_a_500_and_a_problem(api: FakeAPI) -> None:
    def boom(rec: object) -> None:
        raise RuntimeError("kaput")

    api.on("chat", boom)
    async with oai(api) as client:
        with pytest.raises(openai.InternalServerError, match="kaput"):
            await client.chat.completions.create(model="m", messages=USER)
    assert "kaput" in api.problems[0]


# ---------------------------------------------------------------------------------------------------------------
# OpenAI image edits (multipart)


def rgba_mask(w: int, h: int) -> bytes:
    alpha = np.zeros((h, w), dtype=np.uint8)
    alpha[: h // 2] = 255
    rgba = np.dstack([np.zeros((h, w, 3), dtype=np.uint8), alpha])
    buf = io.BytesIO()
    PILImage.fromarray(rgba, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


async def test_images_edit_with_mask(api: FakeAPI) -> None:
    src, out = gradient(16, 16), solid(200, (16, 16))
    mask = rgba_mask(16, 16)
    api.script("images", images_reply([out], usage=(20, 300, 1000), size="1024x1024", quality="high"))
    async with oai(api) as client:
        resp = await client.images.edit(
            model="gpt-image-1", image=("photo.png", src.png_bytes(), "image/png"), prompt="make it red",
            mask=("mask.png", mask, "image/png"), size="1024x1024", quality="high", n=1,
            input_fidelity="high", output_format="png")
    assert resp.data and resp.data[0].b64_json
    assert decode_image(base64.b64decode(resp.data[0].b64_json)).sha256 == out.sha256
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (320, 1000, 1320)
    assert resp.usage.input_tokens_details.text_tokens == 20
    assert resp.usage.input_tokens_details.image_tokens == 300
    assert resp.size == "1024x1024" and resp.quality == "high" and resp.output_format == "png"

    (rec,) = api.requests("images")
    assert rec.path == "/v1/images/edits" and rec.headers["content-type"].startswith("multipart/form-data")
    assert rec.json is None
    assert rec.form == {"prompt": "make it red", "model": "gpt-image-1", "size": "1024x1024", "quality": "high",
                        "n": "1", "input_fidelity": "high", "output_format": "png"}
    assert [i.sha256 for i in rec.images] == [src.sha256]
    upload = rec.file("image")
    assert upload is not None and upload.field == "image" and upload.filename == "photo.png"
    assert upload.content_type == "image/png"
    assert rec.file("mask") is not None and rec.file("mask").data == mask  # byte-exact, alpha kept
    assert rec.mask is not None and rec.mask.size == (16, 16)
    assert rec.api_key == "sk-test"


async def test_images_edit_with_several_images_uses_image_brackets(api: FakeAPI) -> None:
    a, b = gradient(), solid(90, (12, 8))
    api.script("images", images_reply([a.png_bytes(), b], usage=None))
    async with oai(api) as client:
        resp = await client.images.edit(model="gpt-image-1", prompt="combine",
                                        image=[("a.png", a.png_bytes(), "image/png"),
                                               ("b.png", b.png_bytes(), "image/png")])
    assert resp.usage is None
    assert [decode_image(base64.b64decode(d.b64_json or "")).sha256 for d in resp.data or []] == [a.sha256, b.sha256]
    (rec,) = api.requests("images")
    assert [u.field for u in rec.files] == ["image[]", "image[]"]
    assert [i.sha256 for i in rec.images] == [a.sha256, b.sha256]
    assert rec.mask is None


async def test_images_content_policy_refusal(api: FakeAPI) -> None:
    api.script("images", Fault.content_policy(code="moderation_blocked"))
    async with oai(api) as client:
        with pytest.raises(openai.BadRequestError) as err:
            await client.images.edit(model="gpt-image-1", prompt="x", image=("a.png", solid(1).png_bytes()))
    assert err.value.code == "moderation_blocked"
    assert "safety system" in err.value.message


async def test_strict_server_refuses_uploads_the_real_api_refuses(api: FakeAPI) -> None:
    img = gradient(16, 16)
    api.script("images", images_reply([img]))
    async with oai(api) as client:
        with pytest.raises(openai.BadRequestError, match="unsupported mimetype") as err:
            await client.images.edit(model="gpt-image-1", prompt="x", image=img.png_bytes())  # no filename
        assert err.value.param == "image"
        with pytest.raises(openai.BadRequestError, match="size"):
            await client.images.edit(model="gpt-image-1", prompt="x", image=("a.png", img.png_bytes(), "image/png"),
                                     mask=("m.png", rgba_mask(8, 8), "image/png"))
        with pytest.raises(openai.BadRequestError, match="alpha"):
            await client.images.edit(model="gpt-image-1", prompt="x", image=("a.png", img.png_bytes(), "image/png"),
                                     mask=("m.png", img.png_bytes(), "image/png"))
        with pytest.raises(openai.BadRequestError, match="not an image"):
            await client.images.edit(model="gpt-image-1", prompt="x", image=("a.png", b"not a png", "image/png"))
        assert api.pending("images") == 1  # refused requests do not consume the script
        resp = await client.images.edit(model="gpt-image-1", prompt="x",
                                        image=("a.png", img.png_bytes(), "image/png"))
    assert resp.data and api.pending("images") == 0
    assert len(api.problems) == 4
    assert "unsupported mimetype" in api.requests("images")[0].image_errors[0]


async def test_strict_server_refuses_bad_inline_images(api: FakeAPI) -> None:
    img = gradient()
    async with oai(api) as client:
        with pytest.raises(openai.BadRequestError, match="image_url part"):
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    async with ant(api) as client:
        with pytest.raises(anthropic.BadRequestError, match="does not match the provided media type"):
            await client.messages.create(model="c", max_tokens=10, messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": b64(img)}}]}])

    api.strict = False  # let the request through to the script, still recording what was wrong
    api.script("messages", anthropic_reply("fine"))
    async with ant(api) as client:
        resp = await client.messages.create(model="c", max_tokens=10, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": b64(img)}}]}])
    assert resp.content[0].text == "fine"
    assert api.requests("messages")[-1].image_errors and api.requests("messages")[-1].images == [img]


# ---------------------------------------------------------------------------------------------------------------
# Anthropic messages


async def test_anthropic_image_block_and_forced_tool(api: FakeAPI) -> None:
    img = gradient()
    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    api.script("messages", anthropic_reply(tool_use=("report", {"score": 8}), model="claude-fake", usage=(321, 9)))
    async with ant(api) as client:
        resp = await client.messages.create(
            model="claude-test", max_tokens=256, system="You judge images.",
            messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(img)}},
                {"type": "text", "text": "Score it."}]}],
            tools=[{"name": "report", "description": "Report the score.", "input_schema": schema}],
            tool_choice={"type": "tool", "name": "report"},
            extra_body={"temperature": 0.0},
        )
    assert resp.type == "message" and resp.role == "assistant" and resp.model == "claude-fake"
    assert resp.stop_reason == "tool_use" and resp.stop_sequence is None
    (block,) = resp.content
    assert block.type == "tool_use" and block.name == "report" and block.input == {"score": 8}
    assert block.id.startswith("toolu_")
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (321, 9)

    (rec,) = api.requests("messages")
    assert rec.path == "/v1/messages"
    assert rec.api_key == "ak-test"  # anthropic 2.x sends it as "authorization: Bearer", not x-api-key
    assert "anthropic-version" in rec.headers
    assert [i.sha256 for i in rec.images] == [img.sha256]
    assert rec.json["system"] == "You judge images."
    assert rec.json["tool_choice"] == {"type": "tool", "name": "report"}
    assert rec.json["tools"][0]["input_schema"] == schema
    assert rec.json["temperature"] == 0.0 and rec.json["max_tokens"] == 256


async def test_anthropic_text_refusal_and_max_tokens(api: FakeAPI) -> None:
    api.script("messages", anthropic_reply("plain text"), anthropic_reply(stop_reason="refusal"),
               anthropic_reply('{"score": ', stop_reason="max_tokens"),
               anthropic_reply("thinking aloud", tool_use=[("a", {"x": 1}), ("b", {})]))
    async with ant(api) as client:
        replies = [await client.messages.create(model="c", max_tokens=16, messages=USER) for _ in range(4)]
    assert replies[0].content[0].type == "text" and replies[0].content[0].text == "plain text"
    assert replies[0].stop_reason == "end_turn"
    assert replies[1].stop_reason == "refusal" and replies[1].content == []
    assert replies[2].stop_reason == "max_tokens"
    assert [b.type for b in replies[3].content] == ["text", "tool_use", "tool_use"]
    assert [b.name for b in replies[3].content[1:]] == ["a", "b"]


# ---------------------------------------------------------------------------------------------------------------
# Faults


@pytest.mark.parametrize(("fault", "exc_type", "code"), [
    (Fault.rate_limited(retry_after="7"), openai.RateLimitError, "rate_limit_exceeded"),
    (Fault.unauthorized(), openai.AuthenticationError, "invalid_api_key"),
    (Fault.content_policy(), openai.BadRequestError, "content_policy_violation"),
    (Fault(400, code="content_policy_violation"), openai.BadRequestError, "content_policy_violation"),
    (Fault.not_found(), openai.NotFoundError, "model_not_found"),
    (Fault(500), openai.InternalServerError, None),
    (Fault.overloaded(), openai.InternalServerError, None),
])
async def test_openai_faults(api: FakeAPI, fault: Fault, exc_type: type, code: str | None) -> None:
    api.script("chat", fault)
    async with oai(api) as client:
        with pytest.raises(exc_type) as err:
            await client.chat.completions.create(model="m", messages=USER)
    exc = err.value
    assert exc.status_code == fault.status and exc.code == code
    assert isinstance(exc.body, dict) and exc.body["message"]  # the SDK unwraps {"error": {...}}
    assert exc.response.headers["x-request-id"].startswith("req_")
    if fault.status == 429:
        assert exc.response.headers["retry-after"] == "7"
    assert len(api.requests("chat")) == 1  # max_retries=0: no retry


@pytest.mark.parametrize(("fault", "exc_type", "err_type"), [
    (Fault.rate_limited(retry_after="3"), anthropic.RateLimitError, "rate_limit_error"),
    (Fault.overloaded(), anthropic.OverloadedError, "overloaded_error"),
    (Fault.unauthorized(), anthropic.AuthenticationError, "authentication_error"),
    (Fault(500), anthropic.InternalServerError, "api_error"),
    (Fault.bad_request("messages: text content blocks must be non-empty"), anthropic.BadRequestError,
     "invalid_request_error"),
])
async def test_anthropic_faults(api: FakeAPI, fault: Fault, exc_type: type, err_type: str) -> None:
    api.script("messages", fault)
    async with ant(api) as client:
        with pytest.raises(exc_type) as err:
            await client.messages.create(model="c", max_tokens=10, messages=USER)
    exc = err.value
    assert exc.status_code == fault.status
    assert exc.type == err_type and exc.api_message
    assert exc.body["type"] == "error" and exc.body["error"]["type"] == err_type  # whole body, not unwrapped
    assert exc.request_id and exc.request_id.startswith("req_")
    if fault.status == 429:
        assert exc.response.headers["retry-after"] == "3"
    if fault.status == 529:
        assert isinstance(exc, anthropic.InternalServerError)


async def test_fault_with_custom_body_and_headers(api: FakeAPI) -> None:
    api.script("chat", Fault(429, body={"error": {"message": "slow down", "type": "tokens", "param": None,
                                                  "code": "rate_limit_exceeded"}},
                             headers={"retry-after-ms": "1500", "x-ratelimit-remaining-requests": "0"}))
    async with oai(api) as client:
        with pytest.raises(openai.RateLimitError, match="slow down") as err:
            await client.chat.completions.create(model="m", messages=USER)
    assert err.value.response.headers["retry-after-ms"] == "1500"
    assert err.value.response.headers["x-ratelimit-remaining-requests"] == "0"


async def test_sdk_retry_honours_retry_after_ms(api: FakeAPI) -> None:
    api.script("chat", Fault.rate_limited(retry_after=None, retry_after_ms="20"), chat_reply("after retry"))
    async with oai(api, max_retries=1) as client:
        resp = await client.chat.completions.create(model="m", messages=USER)
    assert resp.choices[0].message.content == "after retry"
    assert [r.headers["x-stainless-retry-count"] for r in api.requests("chat")] == ["0", "1"]


async def test_slow_reply_times_out(api: FakeAPI) -> None:
    api.script("chat", Slow(5))
    api.script("messages", Slow(5, then=anthropic_reply("late")))
    start = time.monotonic()
    async with oai(api, timeout=0.2) as client:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="m", messages=USER)
    async with ant(api, timeout=0.2) as client:
        with pytest.raises(anthropic.APITimeoutError):
            await client.messages.create(model="c", max_tokens=10, messages=USER)
    assert time.monotonic() - start < 3


async def test_slow_reply_within_the_timeout(api: FakeAPI) -> None:
    api.script("chat", Slow(0.05, then=chat_reply("eventually")))
    async with oai(api, timeout=5.0) as client:
        resp = await client.chat.completions.create(model="m", messages=USER)
    assert resp.choices[0].message.content == "eventually"


async def test_malformed_and_disconnect(api: FakeAPI) -> None:
    api.script("chat", Malformed(), Malformed("<html>Bad gateway</html>", content_type="text/html"), Disconnect())
    async with oai(api) as client:
        with pytest.raises(ValueError):  # json.JSONDecodeError, not an openai error
            await client.chat.completions.create(model="m", messages=USER)
        text = await client.chat.completions.create(model="m", messages=USER)
        assert text == "<html>Bad gateway</html>"  # a non-JSON content type comes back as a plain str
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="m", messages=USER)


async def test_raw_reply_step_and_dict_step(api: FakeAPI) -> None:
    body = chat_reply("raw").body
    api.script("chat", Reply(body, headers={"x-extra": "1"}), body)
    async with oai(api) as client:
        raw = await client.chat.completions.with_raw_response.create(model="m", messages=USER)
        assert raw.headers["x-extra"] == "1" and raw.parse().choices[0].message.content == "raw"
        again = await client.chat.completions.create(model="m", messages=USER)
    assert again.choices[0].message.content == "raw"


# ---------------------------------------------------------------------------------------------------------------
# Several servers, concurrency, records


async def test_two_servers_at_once() -> None:
    with FakeAPI() as one, FakeAPI() as two:
        assert one.port != two.port and one.openai_base_url != two.openai_base_url
        one.on("chat", chat_reply("from one"))
        two.on("chat", chat_reply("from two"))
        async with oai(one, api_key="k1") as c1, oai(two, api_key="k2") as c2:
            r1, r2, r3 = await asyncio.gather(c1.chat.completions.create(model="m", messages=USER),
                                              c2.chat.completions.create(model="m", messages=USER),
                                              c2.chat.completions.create(model="m", messages=USER))
        assert [r.choices[0].message.content for r in (r1, r2, r3)] == ["from one", "from two", "from two"]
        assert one.received_keys() == ["k1"] and two.received_keys() == ["k2", "k2"]


async def test_concurrent_requests_consume_each_step_once(api: FakeAPI) -> None:
    api.script("chat", *(chat_reply(str(i)) for i in range(12)))
    async with oai(api) as client:
        replies = await asyncio.gather(*(client.chat.completions.create(model="m", messages=USER)
                                         for _ in range(12)))
    assert sorted(int(r.choices[0].message.content or "") for r in replies) == list(range(12))
    assert len(api.received) == 12 and api.pending() == 0 and api.problems == []


def test_script_rejects_unknown_endpoints_and_reset(fake_api: FakeAPI) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        fake_api.script("completions", chat_reply("x"))
    fake_api.script("chat", chat_reply("x"))
    fake_api.on("messages", anthropic_reply("y"))
    assert fake_api.pending("chat") == 1 and fake_api.pending("images") == 0
    fake_api.reset()
    assert fake_api.pending() == 0 and fake_api.received == []


async def test_unknown_path_is_404(api: FakeAPI) -> None:
    async with oai(api) as client:
        with pytest.raises(openai.NotFoundError, match="no route"):
            await client.embeddings.create(model="e", input="x")
    assert api.received[0].endpoint == "unknown"


def test_parse_multipart_handles_quoting_and_binary() -> None:
    payload = bytes(range(256)) + b"\r\n--not-the-boundary\r\n"
    body = (b"--XyZ\r\n"
            b'Content-Disposition: form-data; name="prompt"\r\n\r\n'
            b"a \xc3\xa9 prompt\r\n"
            b"--XyZ\r\n"
            b'Content-Disposition: form-data; name="image[]"; filename="my \\"pic\\".png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + payload + b"\r\n"
            b"--XyZ--\r\n")
    fields, files = parse_multipart(body, 'multipart/form-data; boundary="XyZ"')
    assert fields == {"prompt": "a \u00e9 prompt"}
    (up,) = files
    assert up.field == "image[]" and up.content_type == "image/png" and up.data == payload
    assert up.filename is not None and "pic" in up.filename
