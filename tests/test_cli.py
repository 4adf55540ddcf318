"""End-to-end tests of every command through typer's runner (and two through a real subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from refine_agent.tools.synthetic.generate import make_sample
from typer.testing import CliRunner

from refine_agent.cli import app
from refine_agent.errors import InputError

from .photos import photo_array
from .test_images import _png_header_only

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env=env)


def one_line_error(result, code: int = 2) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, str]:
    s = make_sample(1, seed=0)  # a colour change with seeded one-shot failures to refine
    p = tmp_path / "scene.png"
    s.image().save(p)
    return p, s.instruction


@pytest.fixture
def photo_file(tmp_path: Path) -> Path:
    p = tmp_path / "photo.png"
    PILImage.fromarray(photo_array()).save(p)
    return p


@pytest.mark.parametrize("cmd", [[], ["edit"], ["refine"], ["tools"], ["demo"], ["datasets"], ["datasets", "make"]])
def test_help_everywhere(cmd: list[str]) -> None:
    r = invoke(*cmd, "--help")
    assert r.exit_code == 0 and "Usage" in r.output


def test_version() -> None:
    r = invoke("--version")
    assert r.exit_code == 0 and "refine-agent 0.1.0" in r.output


def test_tools_lists_every_builtin_with_options() -> None:
    r = invoke("tools")
    assert r.exit_code == 0
    for word in ("sim", "classic", "verify", "rule", "repeat", "skill", "noise"):
        assert word in r.output
    r = invoke("tools", "--kind", "judge")
    assert "verify" in r.output and "sim " not in r.output
    one_line_error(invoke("tools", "--kind", "painter"))


def test_datasets_make(tmp_path: Path) -> None:
    r = invoke("datasets", "make", "synthetic", "--n", "7", "--seed", "2", "--out", str(tmp_path / "d"))
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "d" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and all((tmp_path / "d" / row["source"]).is_file() for row in rows)
    one_line_error(invoke("datasets", "make", "imagenet", "--out", str(tmp_path / "x")))


def _trajectory(out: Path) -> dict:
    data = json.loads((out / "trajectory.json").read_text())
    for r in data["rounds"]:
        assert (out / r["image_file"]).is_file()
        assert {"instruction", "image_file", "verdict", "critique", "seconds", "usage"} <= set(r)
        assert {"scores", "overall", "passed", "status", "reasoning"} <= set(r["verdict"])
    assert {"best_round", "stop_reason", "usage", "config"} <= set(data)
    assert (out / "final.png").is_file()
    return data


def test_edit_a_synthetic_scene(scene: tuple[Path, str], tmp_path: Path) -> None:
    path, instruction = scene
    out = tmp_path / "out"
    r = invoke("edit", str(path), instruction, "--out", str(out), "--seed", "1")
    assert r.exit_code == 0, r.output
    data = _trajectory(out)
    assert data["rounds"][0]["base"] == "source"
    best = data["rounds"][data["best_round"]]
    assert best["verdict"]["overall"] >= data["rounds"][0]["verdict"]["overall"]
    assert "stop:" in r.output


def test_refine_an_existing_edit(scene: tuple[Path, str], tmp_path: Path) -> None:
    path, instruction = scene
    out = tmp_path / "out"
    r = invoke("refine", str(path), str(path), instruction, "--out", str(out), "-E", "skill=0.9")
    assert r.exit_code == 0, r.output
    data = _trajectory(out)
    assert data["rounds"][0]["base"] == "given" and data["rounds"][0]["verdict"]["passed"] is False
    assert len(data["rounds"]) > 1 and data["usage"]["calls"]["editor"] == len(data["rounds"]) - 1


def test_edit_a_photo_with_the_classic_grammar(photo_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = invoke("edit", str(photo_file), "make it brighter", "--editor", "classic", "--out", str(out))
    assert r.exit_code == 0, r.output
    data = _trajectory(out)
    assert data["rounds"][data["best_round"]]["verdict"]["passed"] is True
    final = np.asarray(PILImage.open(out / "final.png"), dtype=float)
    assert final.mean() > photo_array().mean()


def test_refine_a_photo_edit(photo_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = invoke("refine", str(photo_file), str(photo_file), "make it warmer", "--editor", "classic", "--out", str(out))
    assert r.exit_code == 0, r.output
    data = _trajectory(out)
    assert data["rounds"][0]["verdict"]["passed"] is False and data["rounds"][-1]["base"] != "given"


def test_instruction_outside_the_classic_grammar(photo_file: Path, tmp_path: Path) -> None:
    r = invoke("edit", str(photo_file), "add a hat to the dog", "--editor", "classic", "--out", str(tmp_path / "o"))
    line = one_line_error(r)
    assert "classic editor does not understand" in line


def test_sim_on_a_photo_points_to_classic(photo_file: Path, tmp_path: Path) -> None:
    line = one_line_error(invoke("edit", str(photo_file), "make the red circle blue", "--out", str(tmp_path / "o")))
    assert "--editor classic" in line


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {}
    files["missing"] = tmp_path / "missing.png"
    files["empty"] = tmp_path / "empty.png"
    files["empty"].write_bytes(b"")
    files["text"] = tmp_path / "text.png"
    files["text"].write_text("not an image")
    good = tmp_path / "good.png"
    PILImage.fromarray(photo_array()).save(good)
    files["truncated"] = tmp_path / "truncated.png"
    files["truncated"].write_bytes(good.read_bytes()[:400])
    files["bomb"] = tmp_path / "bomb.png"
    files["bomb"].write_bytes(_png_header_only(30000, 30000))
    files["dir"] = tmp_path
    return files


@pytest.mark.parametrize("kind,match", [("missing", "no such file"), ("empty", "empty"), ("text", "not an image"),
                                        ("truncated", "truncated or corrupt"), ("bomb", "decompression bomb"),
                                        ("dir", "directory")])
def test_bad_image_files(tmp_path: Path, kind: str, match: str) -> None:
    bad = _bad_files(tmp_path)[kind]
    assert match in one_line_error(invoke("edit", str(bad), "make it brighter", "-e", "classic"))
    good = tmp_path / "good.png"
    assert match in one_line_error(invoke("refine", str(good), str(bad), "make it brighter", "-e", "classic"))


def _odd_images(tmp_path: Path) -> dict[str, Path]:
    arr = photo_array()
    out = {}
    out["16bit"] = tmp_path / "grey16.png"
    PILImage.fromarray(arr[..., 0].astype(np.uint16) * 257).save(out["16bit"])
    out["cmyk"] = tmp_path / "cmyk.jpg"
    PILImage.fromarray(arr).convert("CMYK").save(out["cmyk"], quality=95)
    out["palette"] = tmp_path / "palette.png"
    PILImage.fromarray(arr).convert("P", palette=PILImage.Palette.ADAPTIVE).save(out["palette"])
    out["alpha"] = tmp_path / "alpha.png"
    rgba = np.dstack([arr, np.full(arr.shape[:2], 200, np.uint8)])
    PILImage.fromarray(rgba, "RGBA").save(out["alpha"])
    out["exif"] = tmp_path / "rotated.jpg"
    img = PILImage.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 8
    img.save(out["exif"], exif=exif, quality=95)
    return out


def _expected_pixels(kind: str) -> np.ndarray:
    """What each odd format must become: 8-bit RGB, scaled, converted, composited on white, upright."""
    arr = photo_array().astype(float)
    if kind == "16bit":
        grey = arr[..., 0]
        return np.repeat(grey[..., None], 3, axis=2)
    if kind == "alpha":
        return arr * 200 / 255 + 255 * (1 - 200 / 255)
    if kind == "exif":
        return np.rot90(arr, k=1)  # orientation 8: shown turned 90 degrees counter-clockwise
    return arr


@pytest.mark.parametrize("kind,tolerance", [("16bit", 0.6), ("cmyk", 6.0), ("palette", 8.0), ("alpha", 0.6),
                                            ("exif", 7.0)])
def test_unusual_image_formats_are_handled(tmp_path: Path, kind: str, tolerance: float) -> None:
    path = _odd_images(tmp_path)[kind]
    out = tmp_path / "out"
    r = invoke("edit", str(path), "make it brighter", "-e", "classic", "--out", str(out), "--max-rounds", "1")
    assert r.exit_code == 0, r.output
    src = np.asarray(PILImage.open(out / "source.png"), dtype=float)
    expected = _expected_pixels(kind)
    assert src.shape == expected.shape
    assert np.abs(src - expected).mean() <= tolerance, (kind, np.abs(src - expected).mean())


def test_usage_errors_are_one_line(photo_file: Path) -> None:
    line = one_line_error(invoke("edit", str(photo_file), "x", "--max-rounds", "-1"))
    assert "--max-rounds" in line and "--help" in line
    one_line_error(invoke("edit"))
    one_line_error(invoke("no-such-command"))


def test_an_unwritable_output_path_is_one_line(photo_file: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("I am a file")
    line = one_line_error(invoke("edit", str(photo_file), "make it brighter", "-e", "classic", "--out",
                                 str(blocker / "out")), code=2)  # checked before any work: a usage error
    assert str(blocker) in line


def test_a_large_image_is_refused_by_our_limit_and_admitted_when_raised(tmp_path: Path) -> None:
    p = tmp_path / "big.png"
    p.write_bytes(_png_header_only(10_000, 10_000))  # 100 MP: above our 89 MP default, below Pillow's guard
    assert "--max-pixels" in one_line_error(invoke("edit", str(p), "make it brighter", "-e", "classic"))
    p.write_bytes(_png_header_only(15_000, 15_000))  # 225 MP: above Pillow's own guard too
    line = one_line_error(invoke("edit", str(p), "make it brighter", "-e", "classic", "--max-pixels", "300000000"))
    assert "truncated or corrupt" in line  # admitted past both guards; only then is the fake file found out


def test_empty_instruction(photo_file: Path) -> None:
    assert "instruction is empty" in one_line_error(invoke("edit", str(photo_file), "   "))


def test_unknown_tool_lists_known(photo_file: Path) -> None:
    line = one_line_error(invoke("edit", str(photo_file), "make it brighter", "--editor", "photoshop"))
    assert "known editors: sim, classic" in line


def test_bad_key_value(photo_file: Path) -> None:
    assert "use key=value" in one_line_error(invoke("edit", str(photo_file), "x", "-e", "classic", "-E", "fast"))
    assert "unknown field" in one_line_error(invoke("edit", str(photo_file), "x", "-e", "classic", "-E", "speed=2"))


def test_malformed_config(photo_file: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("budget: {max_rounds: [\n")
    assert "not valid YAML" in one_line_error(invoke("edit", str(photo_file), "make it brighter", "--config", str(cfg)))
    cfg.write_text("budget: {max_round: 2}\n")
    assert "max_round: unknown field" in one_line_error(
        invoke("edit", str(photo_file), "make it brighter", "--config", str(cfg)))


def test_config_env_and_flag_precedence(scene: tuple[Path, str], tmp_path: Path) -> None:
    path, instruction = scene
    cfg = tmp_path / "run.toml"
    cfg.write_text('[budget]\nmax_rounds = 0\n[editor]\nspec = "sim"\noptions = { skill = 0.0 }\n')

    def rounds(*extra: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
        out = tmp_path / f"o{len(list(tmp_path.iterdir()))}"
        r = invoke("edit", str(path), instruction, "--config", str(cfg), "--out", str(out), *extra, env=env)
        assert r.exit_code == 0, r.output
        data = json.loads((out / "trajectory.json").read_text())
        return len(data["rounds"]), data["config"]

    n, config = rounds()
    assert n == 1 and config["editor"]["options"] == {"skill": 0.0}
    n, config = rounds(env={"REFINE_AGENT_MAX_ROUNDS": "2"})
    assert config["budget"]["max_rounds"] == 2
    n, config = rounds("--max-rounds", "1", env={"REFINE_AGENT_MAX_ROUNDS": "2"})
    assert config["budget"]["max_rounds"] == 1 and n <= 2


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    r = invoke("--debug", "edit", str(tmp_path / "missing.png"), "make it brighter")
    assert r.exit_code != 0 and isinstance(r.exception, InputError)


def test_demo_small(tmp_path: Path) -> None:
    r = invoke("demo", "--n", "12", "--out", str(tmp_path / "demo"))
    assert r.exit_code == 0, r.output
    assert "Pass rate" in r.output and "resampling" in r.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["one_shot"]["n"] == 12 and summary["eval_judge_is_loop_judge"] is True
    assert len(list((tmp_path / "demo" / "rule").glob("*/trajectory.json"))) == 12


def test_module_entry_point_in_a_subprocess(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "refine_agent", "edit", str(tmp_path / "nope.png"), "x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "refine_agent", "--version"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "0.1.0" in r.stdout


def test_a_failed_edit_keeps_its_record_and_clears_old_outputs(scene: tuple[Path, str], tmp_path: Path) -> None:
    path, instruction = scene
    out = tmp_path / "out"
    assert invoke("edit", str(path), instruction, "--out", str(out)).exit_code == 0
    assert (out / "final.png").is_file()
    # the same folder again, with an editor that fails every attempt of round 0
    r = invoke("edit", str(path), instruction, "--out", str(out), "-E", "fail_rate=0.999", "--max-attempts", "2")
    line = one_line_error(r, 1)
    assert "simulated transient failure" in line and "trajectory.json" in line
    data = json.loads((out / "trajectory.json").read_text())
    assert data["stop_reason"] == "editor_failed" and data["final_image"] is None
    assert data["rounds"][0]["calls"][0]["attempts"] == 2 and data["rounds"][0]["calls"][0]["error"]
    assert not (out / "final.png").exists() and not list(out.glob("round_*.png"))


def test_an_edit_the_judge_cannot_score_exits_non_zero(photo_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = invoke("refine", str(photo_file), str(photo_file), "add a hat to the dog", "--editor", "classic",
               "--out", str(out))
    assert r.exit_code == 1 and "could not score" in r.output and "Traceback" not in r.output
    assert (out / "round_00.png").is_file() and not (out / "final.png").exists()
    assert json.loads((out / "trajectory.json").read_text())["stop_reason"] == "judge_unsupported"
