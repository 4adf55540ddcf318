"""``vllm:PATH`` judges on managed servers, with a stand-in for ``vllm serve`` (real subprocesses on
loopback): the servers start for the run, log into the run directory, get the tag pattern and the IE-Critic
prefill as vLLM's request fields, and are gone when the command ends."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refine_agent.cli import app
from refine_agent.errors import MissingExtraError
from refine_agent.registry import create_tool

from .test_vllm_server import STANDIN, running

pytest.importorskip("openai", reason="the vllm backend talks through the openai SDK (the api extra)")

YESNO = '{"reasoning": "the car is red now", "passed": true}'


def standin(*args: str) -> str:
    """The -J value that runs the stand-in instead of vllm serve."""
    return "command=" + json.dumps([*STANDIN, *args])


def test_without_vllm_the_backend_names_the_extra() -> None:
    if __import__("importlib").util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(MissingExtraError, match=r"pip install 'refine-agent\[vllm\]'"):
        create_tool("judge", "vllm:/models/Qwen2.5-VL-7B-Instruct", {})


def test_bench_starts_the_servers_logs_them_in_the_run_and_stops_them(tmp_path: Path) -> None:
    run = tmp_path / "run"
    record = tmp_path / "requests.jsonl"
    r = CliRunner().invoke(app, [
        "bench", "synthetic", "--run-dir", str(run), "--limit", "3", "--max-rounds", "0",
        "--judge", "vllm:/models/Qwen2.5-VL-7B-Instruct", "-J", "mode=yesno", "-J", "replicas=2",
        "-J", "gpus=[0,1]", "-J", standin("--reply", YESNO, "--record", str(record), "--spawn-child")])
    assert r.exit_code == 0, r.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["by_budget"]["0"]["pass_rate"] == 1.0  # every verdict came from a server
    logs = sorted((run / "servers").glob("*.log"))
    assert [p.name for p in logs] == ["Qwen2.5-VL-7B-Instruct-0.log", "Qwen2.5-VL-7B-Instruct-1.log"]
    pids = [int(m) for p in logs for m in re.findall(r"(?:pid|child pid) (\d+)", p.read_text())]
    assert pids and not any(running(pid) for pid in pids)  # servers and their children, gone with the command
    bodies = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(bodies) == 3 and all(b["model"] == "/models/Qwen2.5-VL-7B-Instruct" for b in bodies)


async def test_iecritic_sends_the_prefill_and_the_tag_pattern(tmp_path: Path) -> None:
    from refine_agent.pool import model_pool
    from refine_agent.types import JudgeRequest

    from .conftest import solid

    record = tmp_path / "requests.jsonl"
    judge = create_tool("judge", "vllm:/models/IE-Critic-R1", {
        "mode": "iecritic", "gpus": [0], "log_dir": str(tmp_path / "servers"),
        "command": [*STANDIN, "--reply", "the colour is right</think>\n<answer>4.5</answer>", "--record",
                    str(record)]})
    try:
        verdict = await judge.judge(JudgeRequest(source=solid(1), edited=solid(2), instruction="x", seed=1))
    finally:
        await model_pool().aclose()
    assert verdict.status == "ok" and verdict.overall == pytest.approx(8.75) and verdict.info["prefill"] == "<think>"
    assert verdict.raw.startswith("<think>the colour is right</think>")
    body = json.loads(record.read_text().splitlines()[0])
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "<think>"}
    assert body["structured_outputs"]["regex"].startswith("[^<]{0,")
    assert verdict.info["backend"]["backend"] == "vllm"


def test_a_server_that_dies_at_start_is_one_line_with_its_log(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, [
        "bench", "synthetic", "--run-dir", str(tmp_path / "run"), "--limit", "1",
        "--judge", "vllm:/models/X", "-J", "gpus=[0]", "-J", standin("--fail-at-start")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "CUDA out of memory (stand-in failure at start-up)" in r.output
    assert sys.executable  # the stand-in ran as a real process
