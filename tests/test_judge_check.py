"""``refine-agent judge-check``: the built-in verifier passes, a lenient judge is flagged, failed judgments are
counted (never scored as 0), and every option works end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from refine_agent.benchmarks.datasets.base import ImageRef, Sample, SampleError
from refine_agent.benchmarks.judge_check import (
    NON_EDITS,
    PROBES,
    Job,
    flag,
    jpeg_of,
    noise_like,
    summarise,
    with_other_instructions,
)
from refine_agent.benchmarks.metrics import Score
from refine_agent.tools.synthetic.generate import make_sample

from refine_agent.images import Image

from .dataset_files import write_png
from .hostile.conftest import cli, error_line, snapshot
from .synthetic_truth import expected_image

LENIENT = "tests.plugins:LenientJudge"
BRIGHTNESS = "tests.plugins:BrightnessJudge"


def _check(*args: str, out: Path | None = None) -> tuple[int, str, dict[str, Any] | None]:
    r = cli("judge-check", *args, *(["--out", str(out)] if out is not None else []), env={"COLUMNS": "160"})
    assert "Traceback" not in r.output, r.output
    data = json.loads((out / "judge_check.json").read_text()) if out is not None and r.exit_code in (0, 3) else None
    return r.exit_code, r.output, data


def _synthetic_manifest(root: Path, n: int = 6) -> Path:
    """Synthetic scenes with their ground-truth edits: edits verify passes, under distinct instructions."""
    rows = []
    for i in range(n):
        s = make_sample(i, seed=0)
        s.image().save(root / f"s{i}.png")
        expected_image(s).save(root / f"e{i}.png")
        rows.append({"id": s.id, "source": f"s{i}.png", "edited": f"e{i}.png", "instruction": s.instruction})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _grey_manifest(root: Path, n: int = 4, source: int = 200, edited: int = 30) -> Path:
    """Bright sources, dark edits: a judge of brightness scores every non-edit above the edits."""
    rows = []
    for i in range(n):
        write_png(root / f"s{i}.png", source, (16, 12))
        write_png(root / f"e{i}.png", edited, (16, 12))
        rows.append({"id": f"g{i}", "source": f"s{i}.png", "edited": f"e{i}.png", "instruction": f"edit number {i}"})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- the verdicts ----------------------------------------------------------------------------------------------
def test_verify_passes_on_synthetic(tmp_path: Path) -> None:
    code, output, data = _check("synthetic", "--judge", "verify", "--limit", "12", out=tmp_path / "o")
    assert code == 0, output
    assert data is not None and not data["flagged"] and data["reasons"] == [] and data["n_samples"] == 12
    for name in ("unchanged", "black", "noise", "jpeg"):
        p = data["probes"][name]
        assert p["n"] == 12 and p["n_ok"] == 12 and p["pass_rate"] == 0.0, (name, p)
    assert data["probes"]["mismatched"]["n"] == data["probes"]["edits"]["n"] == 0
    assert "ok:" in output and "did not run" in output


def test_a_lenient_judge_is_flagged_on_every_probe(tmp_path: Path) -> None:
    code, output, data = _check("synthetic", "--judge", LENIENT, "--limit", "12", out=tmp_path / "o")
    assert code == 3, output
    assert data is not None and data["flagged"] and data["judge"]["name"] == "lenient"
    assert [r.split(":")[0] for r in data["reasons"]] == ["unchanged", "black", "noise", "jpeg"]
    assert all(data["probes"][p]["pass_rate"] == 1.0 and data["probes"][p]["mean_overall"] == 9.0
               for p in ("unchanged", "black", "noise", "jpeg"))
    assert output.count("FLAGGED:") == 4


def test_edited_images_bring_the_mismatched_probe_and_the_edits_reference(tmp_path: Path) -> None:
    manifest = _synthetic_manifest(tmp_path)
    code, output, data = _check(f"jsonl:{manifest}", "--judge", "verify", out=tmp_path / "v")
    assert code == 0, output
    assert data is not None and data["n_edited"] == 6
    edits, mismatched = data["probes"]["edits"], data["probes"]["mismatched"]
    assert edits["n"] == 6 and edits["pass_rate"] == 1.0 and edits["mean_overall"] > 7
    assert mismatched["n"] == 6 and not mismatched["n_passed"]  # another sample's instruction: never a pass
    assert "mismatched" in output and "edits" in output

    code, output, data = _check(f"jsonl:{manifest}", "--judge", LENIENT, out=tmp_path / "l")
    assert code == 3 and data is not None
    assert any(r.startswith("mismatched: passes 100.0%") for r in data["reasons"])


def test_a_non_edit_scored_above_the_edits_is_flagged(tmp_path: Path) -> None:
    folder = tmp_path / "d [bold]x[red]"  # printed verbatim, never read as markup
    folder.mkdir()
    manifest = _grey_manifest(folder)
    with manifest.open("a") as f:  # a row whose image is missing: counted, and the others go on
        f.write(json.dumps({"id": "gone", "source": "missing.png", "instruction": "x"}) + "\n")
    code, output, data = _check(f"jsonl:{manifest}", "--judge", BRIGHTNESS, out=tmp_path / "o")
    assert code == 3 and data is not None, output
    assert data["n_samples"] == 4 and data["load_errors"] == {"load_error": 1}
    assert data["first_load_error"].startswith("gone:") and "samples not loaded: load_error 1" in output
    above = [r for r in data["reasons"] if "above the real edits'" in r]
    assert {r.split(":")[0] for r in above} == {"unchanged", "noise", "jpeg"}  # black (0) is below them
    assert "d [bold]x[red]" in output


def test_the_json_file(tmp_path: Path) -> None:
    code, _, data = _check("synthetic", "--judge", "verify", "--limit", "3", "--seed", "5", out=tmp_path / "o")
    assert code == 0 and data is not None
    assert {"judge", "dataset", "n_samples", "probes", "flagged", "reasons"} <= set(data)
    assert data["dataset"] == "synthetic" and data["seed"] == 5 and data["judge"]["name"] == "verify"
    assert list(data["probes"]) == list(PROBES)
    assert set(data["probes"]["black"]) == {"n", "n_ok", "n_passed", "pass_rate", "n_no_pass_fail", "mean_overall",
                                            "mean_overall_ci95", "failed", "n_failed"}
    ledger = json.loads((tmp_path / "o" / ".refine-agent.json").read_text())
    assert "judge_check.json" in ledger["written_by"]["files"]


@pytest.mark.parametrize("black", ["raise", "fail"])
def test_a_failed_judgment_is_counted_never_a_zero(tmp_path: Path, black: str) -> None:
    code, output, data = _check("synthetic", "--judge", LENIENT, "-J", f"black={black}", "--limit", "4",
                                out=tmp_path / "o")
    assert code == 3 and data is not None
    status = {"raise": "error", "fail": "refused"}[black]
    p = data["probes"]["black"]
    assert p["n"] == 4 and p["n_ok"] == 0 and p["failed"] == {status: 4} and p["n_failed"] == 4
    assert p["pass_rate"] is None and p["mean_overall"] is None and p["mean_overall_ci95"] is None
    assert not any(r.startswith("black") for r in data["reasons"])
    assert f"{status} 4" in output


def test_a_judge_that_judged_nothing_fails(tmp_path: Path) -> None:
    manifest = _grey_manifest(tmp_path)  # instructions verify cannot check: every judgment is 'unsupported'
    code, output, data = _check(f"jsonl:{manifest}", "--judge", "verify", out=tmp_path / "o")
    line = error_line(output, code, 1)
    assert "no non-edit judgment succeeded" in line and "unsupported" in line
    assert (tmp_path / "o" / "judge_check.json").is_file()  # what it found is still written


# -- bad input: one line, exit 2, nothing written ------------------------------------------------------------
@pytest.mark.parametrize("args", [
    ["nope:/x", "--judge", "verify"],
    ["jsonl:/does/not/exist.jsonl", "--judge", "verify"],
    ["synthetic", "--judge", "no-such-judge"],
    ["synthetic", "--judge", "verify", "-J", "nope=1"],
    ["synthetic", "--judge", "verify", "-D", "nope=1"],
    ["synthetic", "--judge", "verify", "--force"],
    ["synthetic", "--judge", "verify", "--limit", "0"],
    ["synthetic", "--judge", "verify", "--max-samples", "0"],
    ["synthetic"],
])
def test_bad_input_is_one_error_line(tmp_path: Path, args: list[str]) -> None:
    before = snapshot(tmp_path)
    r = cli("judge-check", *args)
    error_line(r.output, r.exit_code, 2)
    assert snapshot(tmp_path) == before and "judging" not in r.output


def test_out_keeps_files_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "judge_check.json").write_text("mine")
    (tmp_path / "f").write_text("x")
    r = cli("judge-check", "synthetic", "--judge", "verify", "--limit", "2", "--out", str(out))
    assert "judge_check.json" in error_line(r.output, r.exit_code, 2)
    assert (out / "judge_check.json").read_text() == "mine"
    r = cli("judge-check", "synthetic", "--judge", "verify", "--out", str(tmp_path / "f"))
    assert "--out" in error_line(r.output, r.exit_code, 2)
    code, _, data = _check("synthetic", "--judge", "verify", "--limit", "2", "--force", out=out)
    assert code == 0 and data is not None and data["n_samples"] == 2
    code, _, _ = _check("synthetic", "--judge", "verify", "--limit", "2", out=out)  # ours now: replaced freely
    assert code == 0


def test_every_option_end_to_end(tmp_path: Path) -> None:
    manifest = _grey_manifest(tmp_path, n=5)
    base = [f"jsonl:{manifest}", "-j", BRIGHTNESS, "-J", "fail_every=0", "-D", "confine=true", "--limit", "4",
            "--max-samples", "1", "--seed", "7", "--force"]
    code, output, a = _check(*base, out=tmp_path / "a")
    assert code == 3 and a is not None, output
    assert a["n_samples"] == 4 and a["seed"] == 7 and a["probes"]["mismatched"]["n"] == 4
    code, _, b = _check(*[x if x != "1" else "8" for x in base], out=tmp_path / "b")  # more at once: same numbers
    assert b == a
    code, _, c = _check(*[x if x != "7" else "8" for x in base], out=tmp_path / "c")  # another seed: other noise
    assert c is not None and c["probes"]["noise"]["mean_overall"] != a["probes"]["noise"]["mean_overall"]
    assert c["probes"]["unchanged"] == a["probes"]["unchanged"]


# -- the pieces ----------------------------------------------------------------------------------------------
def _sample(i: int, text: str, edited: bool = True) -> Sample:
    img = ImageRef(image=Image(np.zeros((2, 2, 3), np.uint8)))
    return Sample(id=f"s{i}", instruction=text, source=img, edited=img if edited else None)


def test_every_edited_sample_gets_another_samples_instruction() -> None:
    rows: list[Sample | SampleError] = [_sample(0, "a"), _sample(1, "a"), SampleError(id="x", index=2, error="bad"),
                                        _sample(3, "b", edited=False), _sample(4, "b"), _sample(5, "c")]
    jobs = [j for j in with_other_instructions(rows) if isinstance(j, Job)]
    other = {j.sample.id: j.other for j in jobs}
    assert other == {"s0": "b", "s1": "b", "s3": "a", "s4": "a", "s5": "b"}
    assert all(j.other != j.sample.instruction for j in jobs)
    assert [j.other for j in with_other_instructions([_sample(0, "a"), _sample(1, "a")])] == [None, None]


def test_probe_images_and_the_flags() -> None:
    src = Image(np.full((9, 7, 3), 120, np.uint8))
    assert noise_like(src, 1).size == jpeg_of(src).size == src.size and noise_like(src, 1) == noise_like(src, 1)
    assert noise_like(src, 1) != noise_like(src, 2)
    one_pass = summarise([Score("ok", 1.0, False)] * 19 + [Score("ok", 2.0, True), Score("error")])
    assert one_pass["pass_rate"] == 0.05 and one_pass["n"] == 21 and one_pass["failed"] == {"error": 1}
    assert flag({name: one_pass for name in NON_EDITS}) == []  # exactly 5% is allowed
    two = summarise([Score("ok", 1.0, False)] * 18 + [Score("ok", 2.0, True)] * 2)
    edits = summarise([Score("ok", 0.5, True)])
    assert [r.split(":")[0] for r in flag({"noise": two, "edits": edits})] == ["noise", "noise"]
