"""``refine-agent edit --judge openai:MODEL`` against a real OpenAI-compatible server: ``transformers serve``,
the server that ships with transformers, on loopback, serving tiny random-weight Qwen-VL models.

What the real server does with the judge's requests, and what these tests show the adapter copes with:

- ``response_format`` (json_schema) is ignored with a warning, not rejected: the reply is text, parsed as text;
- a thinking model (a Qwen3-VL copy whose chat template opens ``<think>`` after the generation prompt, as
  Qwen3-VL-Thinking's does) gets its reply split: ``reasoning_content`` holds the thinking and ``content`` the
  rest, which is ``""`` when ``max_tokens`` ends the reply inside ``<think>``;
- a reply cut by ``max_tokens`` ends with finish reason ``length``.

Random weights answer gibberish, so every verdict is a ``parse_error`` (with the server's text as ``raw``) or,
by chance, ``ok``; never a crash. The assertions hold whatever the server returns; what it did return is
recorded per test (``record_property("server_replies", ...)``, and printed).

Without torchvision the stock server cannot load a Qwen-VL processor (its video processor needs
torchvision), so the server runs through ``tests/serve_tiny.py``: the transformers CLI's own ``serve`` command,
with only the processor loading switched to the image-only loader. The routes, validation, chat template,
generation and reply parsing are the real server's, serving a real model. The server is skipped, with the
reason, only where it cannot start (no fastapi/uvicorn, or it does not come up within two minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from refine_agent.cli import app

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0
# The thinking copy's chat template opens <think> after the generation prompt, as Qwen3-VL-Thinking's does.
GENERATION_PROMPT = "'<|im_start|>assistant\\n'"
THINKING_PROMPT = "'<|im_start|>assistant\\n<think>\\n'"
# max_tokens per judge mode: short, so that replies hit finish reason `length` (and end inside <think>).
MODES = {"viescore": 16, "viescore_single": 48, "yesno": 16, "iecritic": 32, "judge+critic": 24}
FREE = ["-J", "price_in=0", "-J", "price_out=0", "-C", "price_in=0", "-C", "price_out=0"]  # no unknown-price warning


@dataclass
class Server:
    url: str  # the OpenAI base URL, .../v1
    log: Path
    models: dict[str, str] = field(default_factory=dict)  # name -> the model id the server expects

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- transformers serve log ({self.log}) ---\n{text[-chars:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except (OSError, urllib.error.URLError):
        return 0


def _load(root: str, model: str) -> dict[str, Any]:
    """POST /load_model: the server's progress stream, until the model is ready (or failed)."""
    req = urllib.request.Request(f"{root}/load_model", json.dumps({"model": model}).encode(),
                                 {"Content-Type": "application/json"})
    last: dict[str, Any] = {}
    with urllib.request.urlopen(req, timeout=START_TIMEOUT_S) as resp:
        for line in resp:
            if line.startswith(b"data: "):
                last = json.loads(line[6:])
                if last.get("status") in ("ready", "error"):
                    break
    return last


def _thinking_copy(folder: Path) -> Path:
    """A copy of a tiny Qwen3-VL folder whose chat template opens <think> for the reply."""
    out = folder.with_name(f"{folder.name}_thinking")
    if not out.exists():
        shutil.copytree(folder, out)
        template = out / "chat_template.jinja"
        text = template.read_text(encoding="utf-8")
        assert GENERATION_PROMPT in text, f"{template}: no generation prompt to open <think> after"
        template.write_text(text.replace(GENERATION_PROMPT, THINKING_PROMPT), encoding="utf-8")
    return out


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``transformers serve`` on a free loopback port, in its own process group, with two tiny models loaded."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip("transformers serve needs fastapi, uvicorn, pydantic and openai (pip install fastapi uvicorn)")
    from tests.tiny_vlms import build

    root = tmp_path_factory.mktemp("served")
    folders = {"qwen25_vl": build("qwen25_vl", root / "vlms"),
               "qwen3_vl_thinking": _thinking_copy(build("qwen3_vl", root / "vlms"))}
    port = _free_port()
    log = root / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(root / "hf_home"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "tests.serve_tiny", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
           "--model-timeout", "3600", "--log-level", "info"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    srv = Server(url=f"http://127.0.0.1:{port}/v1", log=log)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while _get(f"http://127.0.0.1:{port}/health") != 200:
            if proc.poll() is not None:
                pytest.skip(f"transformers serve exited ({proc.returncode}) before it came up:\n{srv.log_tail(1500)}")
            if time.monotonic() > deadline:
                pytest.skip(f"transformers serve did not come up in {START_TIMEOUT_S:.0f} s:\n{srv.log_tail(1500)}")
            time.sleep(0.25)
        for name, folder in folders.items():  # it started: from here on a failure is a failure, not a skip
            status = _load(f"http://127.0.0.1:{port}", str(folder))
            assert status.get("status") == "ready", f"loading {folder}: {status}\n{srv.log_tail()}"
            srv.models[name] = str(folder)
        yield srv
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (uvicorn shuts down), SIGKILL if it is still there after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass


@pytest.fixture
def replies(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every chat completion the adapter reads, next to the ChatReply it made of it (the adapter's own code)."""
    from refine_agent.tools.api import openai_chat

    seen: list[dict[str, Any]] = []
    read = openai_chat._reply

    def spy(resp: Any, model: str, *, structured: bool) -> Any:
        reply = read(resp, model, structured=structured)
        choice = resp.choices[0]
        seen.append({"message": choice.message.model_dump(), "finish_reason": choice.finish_reason,
                     "completion_tokens": resp.usage.completion_tokens if resp.usage else None,
                     "asked_json_schema": structured, "reply": reply})
        return reply

    monkeypatch.setattr(openai_chat, "_reply", spy)
    return seen


def _summary(seen: dict[str, Any]) -> dict[str, Any]:
    message, reply = seen["message"], seen["reply"]
    try:
        json.loads(reply.text)
        is_json = True
    except ValueError:
        is_json = False
    return {"finish_reason": seen["finish_reason"], "content": message.get("content"),
            "reasoning_content": message.get("reasoning_content") or message.get("reasoning"),
            "asked_json_schema": seen["asked_json_schema"], "json_reply": is_json}


@pytest.mark.parametrize("model", ["qwen25_vl", "qwen3_vl_thinking"])
@pytest.mark.parametrize("mode", list(MODES))
def test_a_judge_on_transformers_serve_gives_clean_verdicts(server: Server, scene: tuple[Path, str], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            replies: list[dict[str, Any]],
                                                            record_property: Any, mode: str, model: str) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    path, instruction = scene
    spec = f"openai:{server.models[model]}"
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["edit", str(path), instruction, "--judge", spec, "--critic", spec,
                                 "-J", f"mode={mode}", "-J", f"max_tokens={MODES[mode]}", *FREE, "--max-rounds", "1",
                                 "--out", str(out)])
    context = f"{r.output}\n{server.log_tail()}"
    # 1: no round passed the judge (random weights); anything else, or an exception that escaped, is a crash
    assert r.exit_code in (0, 1) and isinstance(r.exception, (SystemExit, type(None))), context
    assert "Traceback" not in r.output, context

    observed = [_summary(s) for s in replies]
    record_property("server_replies", observed)
    print(f"\n{model} {mode}: " + json.dumps(observed, ensure_ascii=True)[:2000])
    assert replies, f"the judge never reached the server\n{context}"
    for seen in replies:  # the ChatReply says what the server sent, whatever that was
        message, reply = seen["message"], seen["reply"]
        assert reply.text == (message.get("content") or ""), seen
        assert reply.reasoning == (message.get("reasoning_content") or message.get("reasoning") or None), seen
        assert reply.finish_reason == seen["finish_reason"] and reply.refusal is None, seen
        assert reply.output_tokens == seen["completion_tokens"] and reply.model == server.models[model], seen
        assert reply.structured is None or reply.structured == json.loads(reply.text), seen

    rounds = json.loads((out / "trajectory.json").read_text())["rounds"]
    verdicts = [rd["verdict"] for rd in rounds if rd.get("verdict")]
    assert verdicts, context
    # the raw reply as verdicts keep it: split-out reasoning in <think> tags, then the text
    texts = "\n---\n".join((f"<think>{s['reply'].reasoning}</think>" if s["reply"].reasoning else "")
                            + s["reply"].text for s in replies)
    for v in verdicts:
        assert v["status"] in ("ok", "parse_error"), (v, context)
        assert v["info"]["mode"] == mode and v["info"]["model"] == server.models[model], v
        if v["status"] == "parse_error":  # the reason, and the server's own text as the raw reply
            assert "parse_error" in v["reasoning"] and v["raw"] in texts, (v, texts)
