"""``refine-agent edit`` and ``bench`` end to end with a tiny saved pipeline as the editor, or as RE-Edit's
fixed executor (``--refine-editor``); bad folders and options are one clear line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refine_agent.cli import app
from refine_agent.store import RunStore

from .test_diffusers_editor import EVERY_CLASS
from .test_diffusers_editor import FAST as FAST_OPTIONS

Pipelines = Callable[[str], Path]
FAST = ["-E", "num_inference_steps=2"]


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args))


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    return lines[0]


def class_options(name: str) -> list[str]:
    """The -E options each tiny pipeline needs (the custom class by import path, a small Qwen conditioning)."""
    out: list[str] = []
    for key, value in FAST_OPTIONS[name].items():
        out += ["-E", f"{key}={json.dumps(value) if isinstance(value, dict) else value}"]
    return out


@pytest.mark.parametrize("name", EVERY_CLASS)
def test_edit_with_every_pipeline_class(pipelines: Pipelines, scene: tuple[Path, str], tmp_path: Path,
                                        name: str) -> None:
    path, instruction = scene
    r = invoke("edit", str(path), instruction, "--editor", f"diffusers:{pipelines(name)}", *FAST,
               *class_options(name), "--max-rounds", "1", "--out", str(tmp_path / "out"))
    assert r.exit_code in (0, 1), r.output  # 1: the random-weight edit did not pass the judge
    data = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    first = data["rounds"][0]
    assert first["image"] and first["editor"].startswith("diffusers:")
    assert first["edit_info"]["batch_size"] == 1 and first["edit_info"]["device"] == "cpu"
    assert (tmp_path / "out" / "final.png").is_file()


@pytest.mark.parametrize("name", EVERY_CLASS)
def test_bench_with_every_pipeline_class(pipelines: Pipelines, tmp_path: Path, name: str) -> None:
    run = tmp_path / "run"
    r = invoke("bench", "synthetic", "--run-dir", str(run), "--limit", "2", "--max-rounds", "0",
               "--editor", f"diffusers:{pipelines(name)}", *FAST, *class_options(name))
    assert r.exit_code in (0, 1), r.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_samples"] == 2 and summary["errors"] == {}
    tools = json.loads((run / "run.json").read_text())["tools"]
    assert tools["editor"]["params"]["fingerprint"]


def test_refine_with_a_fixed_diffusers_executor_for_re_edits(pipelines: Pipelines, scene: tuple[Path, str],
                                                             tmp_path: Path) -> None:
    """RE-Edit's setup: the edit under test is given (here: an unchanged image, which fails the judge) and a
    fixed open-weight executor makes the re-edits."""
    path, instruction = scene
    r = invoke("refine", str(path), str(path), instruction, "--refine-editor", f"diffusers:{pipelines('ip2p')}",
               "-R", "num_inference_steps=2", "--max-rounds", "1", "--out", str(tmp_path / "out"))
    assert r.exit_code in (0, 1), r.output
    rounds = json.loads((tmp_path / "out" / "trajectory.json").read_text())["rounds"]
    assert rounds[0]["base"] == "given" and rounds[0]["edit_info"] == {}
    assert len(rounds) == 2 and rounds[1]["editor"].startswith("diffusers:")
    assert rounds[1]["edit_info"]["pipeline"] == "StableDiffusionInstructPix2PixPipeline"


@pytest.mark.parametrize("role", ["--editor", "--refine-editor"])
def test_bench_with_a_diffusers_editor(pipelines: Pipelines, tmp_path: Path, role: str) -> None:
    run = tmp_path / "run"
    opt = "-E" if role == "--editor" else "-R"
    r = invoke("bench", "synthetic", "--run-dir", str(run), "--limit", "3", "--max-rounds", "1", role,
               f"diffusers:{pipelines('ip2p')}", opt, "num_inference_steps=2", opt, "max_batch_size=4",
               "--max-samples", "3")
    assert r.exit_code in (0, 1), r.output
    summary = json.loads((run / "summary.json").read_text())
    assert summary["n_samples"] == 3 and summary["errors"] == {}
    with RunStore(run, writer=False, create=False) as store:
        rounds = [rnd for s in store.iter_samples() for rnd in s.trajectory.rounds]  # type: ignore[union-attr]
    made = [rnd.edit_info["batch_size"] for rnd in rounds if "batch_size" in rnd.edit_info]
    assert made and (role == "--refine-editor" or max(made) > 1)  # concurrent samples shared pipeline calls
    info = json.loads((run / "run.json").read_text())
    key = "editor" if role == "--editor" else "refine_editor"
    assert info["tools"][key]["name"] == "diffusers"
    assert info["tools"][key]["params"]["pipeline_class"] == "StableDiffusionInstructPix2PixPipeline"


def test_bad_folders_and_options_are_one_line(pipelines: Pipelines, scene: tuple[Path, str], tmp_path: Path) -> None:
    path, instruction = scene
    out = str(tmp_path / "out")
    line = one_line_error(invoke("edit", str(path), instruction, "--editor", f"diffusers:{tmp_path}", "--out", out))
    assert "no model_index.json" in line
    (tmp_path / "t2i").mkdir()
    (tmp_path / "t2i" / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    line = one_line_error(invoke("edit", str(path), instruction, "--editor", f"diffusers:{tmp_path / 't2i'}",
                                 "--out", out))
    assert "FluxPipeline is not an editing pipeline" in line
    line = one_line_error(invoke("edit", str(path), instruction, "--editor", f"diffusers:{pipelines('flux_kontext')}",
                                 "-E", "image_guidance_scale=1.5", "--out", out))
    assert "does not take image_guidance_scale" in line
    line = one_line_error(invoke("bench", "synthetic", "--run-dir", str(tmp_path / "run"), "--limit", "2",
                                 "--editor", f"diffusers:{tmp_path / 'nowhere'}"))
    assert "no such folder" in line
