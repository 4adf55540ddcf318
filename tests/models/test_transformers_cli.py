"""``refine-agent edit`` and ``bench`` end to end with ``--judge transformers:DIR --critic transformers:DIR``
built from a tiny random-weight Qwen2.5-VL, in every judge mode, with constrained output on and off."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from refine_agent.tools.judges.prompts import MODES
from typer.testing import CliRunner

from refine_agent.cli import app

pytest.importorskip("xgrammar", reason="constrained decoding needs xgrammar (the local extra)")

Models = Callable[[str], Path]
JUDGE_MODES = [m for m, mode in MODES.items() if mode.kind == "judge"]


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def local_tools(model: Path, mode: str, structured: bool) -> list[str]:
    flag = "true" if structured else "false"
    critic = "from-judge" if mode == "judge+critic" else f"transformers:{model}"
    return ["--judge", f"transformers:{model}", "-J", f"mode={mode}", "-J", f"structured={flag}", "-J",
            "max_tokens=400", "--critic", critic,
            *(["-C", "max_tokens=400", "-C", f"structured={flag}"] if critic != "from-judge" else [])]


@pytest.mark.parametrize("structured", [True, False], ids=["constrained", "free"])
@pytest.mark.parametrize("mode", JUDGE_MODES)
def test_edit_with_a_local_judge_and_critic(vlms: Models, scene: tuple[Path, str], tmp_path: Path, mode: str,
                                            structured: bool) -> None:
    path, instruction = scene
    out = tmp_path / "out"
    r = invoke("edit", str(path), instruction, "--max-rounds", "1", "--keep-going", "--out", str(out),
               *local_tools(vlms("qwen25_vl"), mode, structured))
    assert "Traceback" not in r.output
    data = json.loads((out / "trajectory.json").read_text())
    statuses = {rnd["verdict"]["status"] for rnd in data["rounds"] if rnd["verdict"]}
    if structured:
        assert statuses == {"ok"}, r.output
        assert r.exit_code in (0, 1)
    else:  # random weights write garbage: every judgment is a parse_error with the raw text, never a crash
        assert statuses == {"parse_error"}
        assert all(rnd["verdict"]["raw"] for rnd in data["rounds"] if rnd["verdict"])


@pytest.mark.parametrize("mode", JUDGE_MODES)
def test_bench_with_a_local_judge_critic_and_evaluation_judge(vlms: Models, tmp_path: Path, mode: str) -> None:
    run = tmp_path / "run"
    model = vlms("qwen25_vl")
    r = invoke("bench", "synthetic", "--run-dir", str(run), "--limit", "2", "--max-rounds", "1",
               *local_tools(model, mode, True), "--eval-judge", f"transformers:{model}", "-V", "mode=yesno",
               "-V", "max_tokens=400")
    assert r.exit_code in (0, 1) and "Traceback" not in r.output, r.output
    summary = json.loads((run / "summary.json").read_text())
    # the sim editor may refuse a random model's re-edit instruction; nothing else may fail
    assert summary["n_samples"] == 2 and set(summary["errors"]) <= {"loop_editor_failed"}
    info = json.loads((run / "run.json").read_text())
    assert info["tools"]["judge"]["name"] == f"transformers:{model}"
    assert info["tools"]["judge"]["params"]["dtype"] == "auto"


def test_a_local_controller_drives_the_rounds_without_crashing(vlms: Models, scene: tuple[Path, str],
                                                               tmp_path: Path) -> None:
    path, instruction = scene
    model = vlms("qwen25_vl")
    r = invoke("edit", str(path), instruction, "--max-rounds", "2", "--out", str(tmp_path / "out"),
               "--controller", f"llm:transformers:{model}", "-K", "max_tokens=300",
               "--judge", f"transformers:{model}", "-J", "max_tokens=400")
    assert r.exit_code in (0, 1) and "Traceback" not in r.output, r.output
    data = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    assert data["stop_reason"] in ("controller_finished", "controller_failed", "max_rounds", "passed", "budget")
