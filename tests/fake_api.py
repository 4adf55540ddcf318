"""A scriptable fake of the OpenAI and Anthropic HTTP APIs on 127.0.0.1, for tests that use the real SDK clients.

The official ``openai`` and ``anthropic`` clients talk to it over real sockets, so tests exercise exactly what
the SDKs send and parse. It implements the subset refine-agent uses:

* OpenAI Chat Completions  ``POST /v1/chat/completions``  (endpoint ``"chat"``)
* OpenAI Images edits      ``POST /v1/images/edits``      (endpoint ``"images"``, multipart/form-data)
* Anthropic Messages       ``POST /v1/messages``          (endpoint ``"messages"``)

Usage::

    with FakeAPI() as api:
        api.script("chat", chat_reply('{"score": 7}'), Fault.rate_limited(retry_after="0"))
        client = openai.AsyncOpenAI(api_key="sk-test", base_url=api.openai_base_url, max_retries=0)
        ...
        assert api.requests("chat")[0].images[0].sha256 == image.sha256

Each endpoint has a queue of scripted steps consumed in order (``script``); when it is empty a default handler
answers (``on``); when neither exists the server answers 500 saying the script ran out, so a test that makes
one call too many fails loudly. Faults answer in each provider's real error body format, so ``Fault(429)`` on
``"chat"`` gives an OpenAI error and on ``"messages"`` an Anthropic one.
"""

from __future__ import annotations

import base64
import binascii
import email.message
import email.utils
import http.server
import io
import itertools
import json
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import pytest
from PIL import Image as PILImage

from refine_agent.images import Image, decode_image

ENDPOINTS = ("chat", "images", "messages")
_ROUTES = {
    "/v1/chat/completions": "chat",
    "/v1/images/edits": "images",
    "/v1/messages": "messages",
}
_MAX_BODY = 256 * 1024 * 1024


# --------------------------------------------------------------------------------------------------------------
# Steps: what the server answers with.


@dataclass
class Reply:
    """A complete HTTP answer. ``body`` may be a dict/list (sent as JSON), ``str`` or ``bytes`` (sent as is)."""

    body: Any
    status: int = 200
    headers: dict[str, str] | None = None
    content_type: str = "application/json"


@dataclass
class Fault:
    """An error answer in the provider's real error format (chosen by endpoint when ``body`` is None).

    OpenAI: ``{"error": {"message", "type", "param", "code"}}``; Anthropic:
    ``{"type": "error", "error": {"type", "message"[, "details": {"error_code": code}]}, "request_id"}``.
    ``message``, ``type`` and ``code`` override the defaults for ``status``; ``body`` replaces the whole body
    (dict → JSON, str/bytes → sent as is).
    """

    status: int
    body: Any = None
    headers: dict[str, str] | None = None
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None

    @classmethod
    def rate_limited(cls, retry_after: float | str | None = "0", *, retry_after_ms: float | str | None = None,
                     message: str | None = None, code: str | None = None) -> Fault:
        """429 with ``retry-after`` (seconds) and/or ``retry-after-ms`` headers."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if retry_after_ms is not None:
            headers["retry-after-ms"] = str(retry_after_ms)
        return cls(429, headers=headers, message=message, code=code)

    @classmethod
    def unauthorized(cls, message: str | None = None) -> Fault:
        return cls(401, message=message)

    @classmethod
    def forbidden(cls, message: str | None = None) -> Fault:
        return cls(403, message=message)

    @classmethod
    def not_found(cls, message: str | None = None) -> Fault:
        return cls(404, message=message)

    @classmethod
    def content_policy(cls, message: str | None = None, *, code: str = "content_policy_violation") -> Fault:
        """400 refusal on content-policy grounds (OpenAI images use code ``moderation_blocked`` nowadays)."""
        return cls(400, code=code, message=message or
                   "Your request was rejected as a result of our safety system. Your prompt may contain text "
                   "that is not allowed by our safety system.")

    @classmethod
    def bad_request(cls, message: str | None = None, *, param: str | None = None, code: str | None = None) -> Fault:
        return cls(400, message=message, param=param, code=code)

    @classmethod
    def server_error(cls, status: int = 500, message: str | None = None) -> Fault:
        return cls(status, message=message)

    @classmethod
    def overloaded(cls, message: str | None = None) -> Fault:
        """529 ``overloaded_error`` (Anthropic's; the anthropic SDK raises ``OverloadedError``)."""
        return cls(529, message=message)


@dataclass
class Slow:
    """Sleep ``seconds`` before answering ``then`` (a minimal success reply for the endpoint when None).

    The sleep ends early when the server closes, so a timed-out client never holds up teardown.
    """

    seconds: float
    then: Any = None


@dataclass
class Malformed:
    """A broken answer: ``text`` sent as is with ``status`` and ``content_type`` (default: 200 "JSON")."""

    text: str | bytes = '{"id": "chatcmpl-broken", "choices": [{'
    status: int = 200
    content_type: str = "application/json"


@dataclass
class Disconnect:
    """Close the connection without answering (the SDKs raise APIConnectionError)."""


Step = Union[Reply, Fault, Slow, Malformed, Disconnect, dict]


# --------------------------------------------------------------------------------------------------------------
# Reply builders.


def _ids(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def tool_call(name: str, arguments: dict[str, Any] | str, *, id: str | None = None) -> dict[str, Any]:
    """One OpenAI ``tool_calls`` entry; ``arguments`` is JSON-encoded when it is not already a string."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id or _ids("call_"), "type": "function", "function": {"name": name, "arguments": args}}


def chat_reply(content: str | None = None, *, model: str = "fake-model",
               tool_calls: Sequence[dict[str, Any] | tuple[str, dict[str, Any] | str]] | None = None,
               finish_reason: str | None = None, refusal: str | None = None,
               usage: tuple[int, int] | None = (10, 5), n: int = 1) -> Reply:
    """An OpenAI ``chat.completion``. ``tool_calls`` items are ``tool_call(...)`` dicts or ``(name, arguments)``.

    ``finish_reason`` defaults to "tool_calls" when there are tool calls, else "stop"; ``usage`` is
    ``(prompt_tokens, completion_tokens)`` or None to leave it out; ``n`` repeats the choice.
    """
    calls = [c if isinstance(c, dict) else tool_call(c[0], c[1]) for c in tool_calls or []]
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal, "annotations": []}
    if calls:
        message["tool_calls"] = calls
    reason = finish_reason or ("tool_calls" if calls else "stop")
    body: dict[str, Any] = {
        "id": _ids("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": i, "message": message, "logprobs": None, "finish_reason": reason} for i in range(n)],
        "service_tier": "default",
        "system_fingerprint": "fp_fake",
    }
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                         "total_tokens": usage[0] + usage[1]}
    return Reply(body)


def anthropic_reply(text: str | None = None, *,
                    tool_use: tuple[str, dict[str, Any]] | Sequence[tuple[str, dict[str, Any]]] | None = None,
                    stop_reason: str | None = None, model: str = "fake-claude",
                    usage: tuple[int, int] | None = (10, 5)) -> Reply:
    """An Anthropic ``message``: an optional text block then ``tool_use`` blocks (one ``(name, input)`` or a list).

    ``stop_reason`` defaults to "tool_use" when there is a tool call, else "end_turn" (use "max_tokens" or
    "refusal" to test those paths).
    """
    uses: list[tuple[str, dict[str, Any]]] = []
    if tool_use is not None:
        uses = [tool_use] if isinstance(tool_use, tuple) and isinstance(tool_use[0], str) else list(tool_use)
    content: list[dict[str, Any]] = []
    if text is not None:
        content.append({"type": "text", "text": text})
    for name, inp in uses:
        content.append({"type": "tool_use", "id": _ids("toolu_"), "name": name, "input": inp})
    input_tokens, output_tokens = usage or (0, 0)
    return Reply({
        "id": _ids("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if uses else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    })


def _png(image: Image | bytes) -> bytes:
    return image.png_bytes() if isinstance(image, Image) else bytes(image)


def images_reply(images: Image | bytes | Sequence[Image | bytes], *,
                 usage: tuple[int, int] | tuple[int, int, int] | None = (50, 100),
                 output_format: str = "png", size: str | None = None, quality: str | None = None) -> Reply:
    """An OpenAI ``ImagesResponse`` with each image as ``b64_json`` (Images are PNG-encoded; bytes go as is).

    ``usage`` is ``(input_tokens, output_tokens)`` (all input counted as text) or
    ``(text_tokens, image_tokens, output_tokens)``, or None to leave it out.
    """
    items = [images] if isinstance(images, (Image, bytes, bytearray)) else list(images)
    body: dict[str, Any] = {
        "created": int(time.time()),
        "data": [{"b64_json": base64.b64encode(_png(i)).decode("ascii")} for i in items],
        "output_format": output_format,
    }
    if size is not None:
        body["size"] = size
    if quality is not None:
        body["quality"] = quality
    if usage is not None:
        text_tokens, image_tokens, out = (usage[0], 0, usage[1]) if len(usage) == 2 else usage  # type: ignore[misc]
        body["usage"] = {
            "input_tokens": text_tokens + image_tokens,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_tokens},
            "output_tokens": out,
            "output_tokens_details": {"text_tokens": 0, "image_tokens": out},
            "total_tokens": text_tokens + image_tokens + out,
        }
    return Reply(body)


_ONE_PIXEL: bytes | None = None


def _default_success(endpoint: str) -> Reply:
    global _ONE_PIXEL
    if endpoint == "messages":
        return anthropic_reply("ok")
    if endpoint == "images":
        if _ONE_PIXEL is None:
            import numpy as np

            _ONE_PIXEL = Image(np.zeros((1, 1, 3), dtype=np.uint8)).png_bytes()
        return images_reply([_ONE_PIXEL])
    return chat_reply("ok")


# --------------------------------------------------------------------------------------------------------------
# Error bodies.

_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided. You can find your API key at "
          "https://platform.openai.com/account/api-keys."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country, region, or territory not "
          "supported."),
    404: ("invalid_request_error", "model_not_found", "The model `fake-model` does not exist or you do not have "
          "access to it."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_ERRORS = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "model: fake-claude"),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}


def error_body(endpoint: str, status: int, *, message: str | None = None, type: str | None = None,
               code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The provider's real error body for ``status`` (Anthropic for ``"messages"``, OpenAI otherwise)."""
    if endpoint == "messages":
        d_type, d_msg = _ANTHROPIC_ERRORS.get(status, ("api_error" if status >= 500 else "invalid_request_error",
                                                       f"Error {status}"))
        err: dict[str, Any] = {"type": type or d_type, "message": message or d_msg}
        if code is not None:
            err["details"] = {"error_code": code}
        return {"type": "error", "error": err, "request_id": _ids("req_")}
    o_type, o_code, o_msg = _OPENAI_ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error",
                                                        None, f"Error {status}"))
    return {"error": {"message": message or o_msg, "type": type or o_type, "param": param,
                      "code": code if code is not None else o_code}}


# --------------------------------------------------------------------------------------------------------------
# What the server received.


@dataclass
class Upload:
    """One uploaded multipart file."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class Received:
    """One request as the server saw it. ``headers`` keys are lower-case (auth headers are kept)."""

    endpoint: str  # "chat" | "images" | "messages" | "unknown"
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    image_urls: list[str] = field(default_factory=list)  # non-data image URLs (not fetched)
    image_errors: list[str] = field(default_factory=list)  # what the real API would refuse about the images
    parse_error: str | None = None  # the body could not be parsed (bad JSON or multipart)
    mask: Image | None = None  # images endpoint: the decoded mask upload (alpha composited on white)

    @property
    def api_key(self) -> str | None:
        """The key sent as ``Authorization: Bearer …`` (OpenAI) or ``x-api-key`` (Anthropic)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else (auth or None)

    def file(self, name: str) -> Upload | None:
        """The first upload in field ``name`` (``name[]`` also matches)."""
        return next((f for f in self.files if f.field in (name, f"{name}[]")), None)

    def uploads(self, name: str) -> list[Upload]:
        return [f for f in self.files if f.field in (name, f"{name}[]")]


def parse_multipart(body: bytes, content_type: str) -> tuple[dict[str, str], list[Upload]]:
    """Split a multipart/form-data body into text fields and file uploads (no ``cgi`` module)."""
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise ValueError(f"multipart body without a boundary (content-type {content_type!r})")
    delim = b"--" + boundary.encode("latin-1")
    fields: dict[str, str] = {}
    files: list[Upload] = []
    chunks = (b"\r\n" + body).split(b"\r\n" + delim)
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        if chunk.startswith(b"\r\n"):
            chunk = chunk[2:]
        raw_head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("multipart part without a header/body separator")
        part = email.message.Message()
        for line in raw_head.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                part[name.strip()] = value.strip()
        fname = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
        fname = email.utils.collapse_rfc2231_value(fname) if fname is not None else ""
        if filename is not None or part.get("content-type"):
            ctype = part.get_content_type() if part.get("content-type") else None
            files.append(Upload(str(fname), filename, ctype, data))
        else:
            fields[str(fname)] = data.decode("utf-8", "replace")
    return fields, files


def _decode_data_url(url: str) -> bytes:
    head, comma, payload = url.partition(",")
    if not comma or ";base64" not in head:
        raise ValueError(f"not a base64 data URL: {url[:40]!r}")
    return base64.b64decode(payload, validate=True)


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_UPLOAD_TYPES = ("image/png", "image/jpeg", "image/webp")


def _sniff(data: bytes) -> tuple[str | None, bool, tuple[int, int] | None]:
    """(media type, has an alpha channel, size) of encoded image bytes; (None, False, None) when unreadable."""
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            return _FORMATS.get(im.format or ""), alpha, im.size
    except Exception:  # noqa: BLE001
        return None, False, None


def _collect_images(rec: Received) -> None:
    """Decode every image in the request into ``rec.images``; what the real API would reject goes to
    ``rec.image_errors`` (answered with a 400 when the server is strict)."""

    def add(data: bytes, name: str) -> Image | None:
        try:
            img = decode_image(data, name=name)
        except Exception as exc:  # noqa: BLE001 - recorded for the test to inspect
            rec.image_errors.append(f"{name}: {exc}")
            return None
        rec.images.append(img)
        return img

    if rec.endpoint == "images":
        uploads = rec.uploads("image")
        if not uploads:
            rec.image_errors.append("no 'image' or 'image[]' file in the upload")
        for up in uploads:
            name = f"upload {up.filename or up.field}"
            if up.content_type not in _UPLOAD_TYPES:
                rec.image_errors.append(f"Invalid file '{up.field}': unsupported mimetype ('{up.content_type}'). "
                                        "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.")
            add(up.data, name)
        mask = rec.file("mask")
        if mask is not None:
            kind, alpha, size = _sniff(mask.data)
            try:
                rec.mask = decode_image(mask.data, name="mask")
            except Exception as exc:  # noqa: BLE001
                rec.image_errors.append(f"mask: {exc}")
            else:
                if kind != "image/png" or not alpha:
                    rec.image_errors.append("Invalid mask image format - mask must be a PNG with an alpha channel "
                                            f"(got {kind or 'unknown'}{'' if alpha else ' without alpha'})")
                if rec.images and size != rec.images[0].size:
                    rec.image_errors.append(f"Invalid mask image format - mask size {size} does not match "
                                            f"image size {rec.images[0].size}")
        return
    if not isinstance(rec.json, dict):
        return
    for i, node in enumerate(_walk(rec.json.get("messages", []))):
        kind = node.get("type")
        if kind == "image_url" and "image_url" in node:  # OpenAI content part
            ref = node["image_url"]
            url = ref.get("url") if isinstance(ref, dict) else ref
            if isinstance(url, str) and url.startswith("data:"):
                try:
                    data = _decode_data_url(url)
                except (ValueError, binascii.Error) as exc:
                    rec.image_errors.append(f"image_url part {i}: {exc}")
                else:
                    add(data, f"image_url part {i}")
            elif isinstance(url, str):
                rec.image_urls.append(url)
        elif kind == "image" and isinstance(node.get("source"), dict):  # Anthropic image block
            src = node["source"]
            if src.get("type") == "base64":
                try:
                    data = base64.b64decode(src.get("data", ""), validate=True)
                except (ValueError, binascii.Error) as exc:
                    rec.image_errors.append(f"image block {i}: invalid base64 data ({exc})")
                    continue
                if add(data, f"image block {i}") is not None:
                    actual = _sniff(data)[0]
                    if actual != src.get("media_type"):
                        rec.image_errors.append(f"messages: image block {i}: Image does not match the provided "
                                                f"media type {src.get('media_type')} (it is {actual})")
            elif src.get("type") == "url":
                rec.image_urls.append(str(src.get("url")))


# --------------------------------------------------------------------------------------------------------------
# The server.


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many concurrent clients connect at once
    fake: FakeAPI


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30  # idle keep-alive connections give up eventually

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            out = bytearray()
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(1024)
                if len(out) > _MAX_BODY:
                    raise ValueError("request body too large")
        length = int(self.headers.get("content-length") or 0)
        if length > _MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:  # noqa: N802
        self._handle()

    def do_POST(self) -> None:  # noqa: N802
        self._handle()

    def _handle(self) -> None:
        fake = self.server.fake
        path = self.path.split("?", 1)[0]
        endpoint = _ROUTES.get(path.rstrip("/"), "unknown")
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._read_body()
        rec = Received(endpoint=endpoint, method=self.command, path=self.path, headers=headers, body=body)
        try:
            ctype = headers.get("content-type", "")
            if ctype.startswith("multipart/form-data"):
                rec.form, rec.files = parse_multipart(body, ctype)
            elif body and "json" in ctype:
                rec.json = json.loads(body)
            _collect_images(rec)
        except Exception as exc:  # noqa: BLE001 - a request the fake cannot parse is a test failure
            rec.parse_error = f"cannot parse the request body: {exc!r}"
            fake._problem(f"{self.command} {self.path}: {rec.parse_error}")
        fake._record(rec)
        refusal = rec.parse_error or (rec.image_errors[0] if rec.image_errors else None)
        if fake.strict and refusal and endpoint != "unknown":
            # what the real API refuses before doing any work: 400, and the script is not consumed
            if not rec.parse_error:
                fake._problem(f"{endpoint}: refused like the real API would: {refusal}")
            self._send_json(400, error_body(endpoint, 400, message=refusal,
                                            param="image" if endpoint == "images" and not rec.parse_error else None),
                            {})
            return
        if endpoint == "unknown":
            self._send_json(404, error_body("chat", 404, message=f"FakeAPI: no route for {self.command} {path}; "
                                            f"known: {', '.join(sorted(_ROUTES))}", code="unknown_url"), {})
            return
        step = fake._next_step(rec)
        self._answer(endpoint, step)

    def _answer(self, endpoint: str, step: Any) -> None:
        fake = self.server.fake
        if isinstance(step, Slow):
            if fake._closing.wait(step.seconds):
                self.close_connection = True
                return
            step = step.then if step.then is not None else _default_success(endpoint)
            if isinstance(step, Slow):
                self._answer(endpoint, step)
                return
        try:
            if isinstance(step, Disconnect):
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            elif isinstance(step, Fault):
                body = step.body if step.body is not None else error_body(
                    endpoint, step.status, message=step.message, type=step.type, code=step.code, param=step.param)
                self._send_raw(step.status, body, "application/json", step.headers or {})
            elif isinstance(step, Malformed):
                self._send_raw(step.status, step.text, step.content_type, {})
            elif isinstance(step, Reply):
                self._send_raw(step.status, step.body, step.content_type, step.headers or {})
            elif isinstance(step, dict):
                self._send_json(200, step, {})
            else:
                fake._problem(f"{endpoint}: the script gave {step!r}, which is not a step")
                self._send_json(500, error_body(endpoint, 500, message=f"FakeAPI: not a step: {step!r}"), {})
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client gave up (timeout) before the answer

    def _send_json(self, status: int, body: Any, headers: dict[str, str]) -> None:
        self._send_raw(status, body, "application/json", headers)

    def _send_raw(self, status: int, body: Any, content_type: str, headers: dict[str, str]) -> None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode("utf-8")
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = bytes(body)
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        rid = _ids("req_")
        self.send_header("x-request-id", rid)  # OpenAI's request id header
        self.send_header("request-id", rid)  # Anthropic's
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


Handler = Callable[[Received], Any]
_NOTHING = object()


class FakeAPI:
    """A fake OpenAI + Anthropic server on ``127.0.0.1:<free port>``, started on construction.

    Use as a context manager or call ``close()``. Several instances can run at once (one per base URL).

    With ``strict`` (the default) requests the real API would refuse for their images get its 400 without
    consuming a scripted step: image uploads that are not image/png, image/jpeg or image/webp (raw bytes
    without a filename go as application/octet-stream), undecodable images, a mask that is not a PNG with
    alpha of the image's size, and Anthropic image blocks whose ``media_type`` does not match the data.
    """

    def __init__(self, host: str = "127.0.0.1", *, strict: bool = True) -> None:
        self.strict = strict
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Any]] = {e: deque() for e in ENDPOINTS}
        self._handlers: dict[str, Handler] = {}
        self._received: list[Received] = []
        self._problems: list[str] = []
        self._counts = itertools.count(1)
        self._closing = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server = _Server((host, 0), _Handler)
        self._server.fake = self
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name=f"FakeAPI:{self.port}", daemon=True)
        self._thread.start()

    # -- addresses ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    # -- scripting ---------------------------------------------------------------------------------------------

    def script(self, endpoint: str, *steps: Any) -> FakeAPI:
        """Queue ``steps`` for ``endpoint``; each request consumes one, in order."""
        self._check(endpoint)
        with self._lock:
            self._scripts[endpoint].extend(steps)
        return self

    def on(self, endpoint: str, handler: Handler | Any | None) -> FakeAPI:
        """Answer ``endpoint`` with ``handler(received) -> step`` once its script is empty (a non-callable step
        is answered every time; None removes the handler)."""
        self._check(endpoint)
        with self._lock:
            if handler is None:
                self._handlers.pop(endpoint, None)
            else:
                self._handlers[endpoint] = handler if callable(handler) else (lambda _rec, _s=handler: _s)
        return self

    def pending(self, endpoint: str | None = None) -> int:
        """How many scripted steps are not consumed yet (for one endpoint or all)."""
        with self._lock:
            return sum(len(q) for e, q in self._scripts.items() if endpoint in (None, e))

    def reset(self) -> None:
        """Forget scripts, handlers, records and problems."""
        with self._lock:
            for q in self._scripts.values():
                q.clear()
            self._handlers.clear()
            self._received.clear()
            self._problems.clear()

    # -- records -----------------------------------------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        """A snapshot of every request so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def requests(self, endpoint: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if endpoint in (None, r.endpoint)]

    def received_keys(self) -> list[str | None]:
        """The API key each request carried (``Authorization: Bearer`` or ``x-api-key``), in order."""
        return [r.api_key for r in self.received]

    @property
    def problems(self) -> list[str]:
        """Server-side trouble: script ran out, handler raised, unparseable request, unknown step."""
        with self._lock:
            return list(self._problems)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FakeAPI({self.url}, {len(self._received)} requests)"

    # -- internals (called from the server threads) ------------------------------------------------------------

    @staticmethod
    def _check(endpoint: str) -> None:
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; use one of {', '.join(ENDPOINTS)}")

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _record(self, rec: Received) -> None:
        with self._lock:
            self._received.append(rec)

    def _problem(self, text: str) -> None:
        with self._lock:
            self._problems.append(text)

    def _next_step(self, rec: Received) -> Any:
        with self._lock:
            queue = self._scripts[rec.endpoint]
            step = queue.popleft() if queue else _NOTHING
            handler = self._handlers.get(rec.endpoint) if step is _NOTHING else None
            n = sum(1 for r in self._received if r.endpoint == rec.endpoint)
        if step is not _NOTHING:
            return step
        if handler is not None:
            try:
                return handler(rec)
            except Exception as exc:  # noqa: BLE001 - surfaced as a 500 and in problems
                text = f"FakeAPI: the {rec.endpoint!r} handler raised {exc!r}"
                self._problem(text)
                return Fault(500, message=text)
        text = (f"FakeAPI: the script for {rec.endpoint!r} ran out at request #{n} ({rec.method} {rec.path}); "
                f"queue more with api.script({rec.endpoint!r}, ...) or set a default with api.on({rec.endpoint!r}, fn)")
        self._problem(text)
        return Fault(500, message=text, type="fake_script_exhausted")


@pytest.fixture(name="fake_api")
def fake_api_fixture() -> Iterator[FakeAPI]:
    """The ``fake_api`` fixture: a running FakeAPI, closed after the test.

    Import ``fake_api_fixture`` into a test module or conftest (``# noqa: F401``) and take ``fake_api``.
    """
    with FakeAPI() as api:
        yield api
