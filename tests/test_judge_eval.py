import json
from pathlib import Path

import numpy as np
import pytest
from refine_agent.benchmarks.judge_eval import correlations, logistic4
from typer.testing import CliRunner

from refine_agent.cli import app
from refine_agent.images import Image

runner = CliRunner()


def _iebench(tmp_path: Path, n: int = 12, instruction: str = "make it brighter") -> Path:
    rows = []
    (tmp_path / "img").mkdir()
    src = Image(np.full((8, 8, 3), 128, np.uint8))
    src.save(tmp_path / "img" / "src.png")
    rng = np.random.default_rng(0)
    for i in range(n):
        level = int(20 + 200 * i / (n - 1))
        Image(np.full((8, 8, 3), level, np.uint8)).save(tmp_path / "img" / f"e{i}.png")
        mos = 1 + 4 * i / (n - 1) + float(rng.normal(0, 0.2))  # humans like brighter edits, with noise
        rows.append({"images": ["img/src.png", f"img/e{i}.png"], "edit_inst": instruction,
                     "answer": str(round(mos, 3))})
    rows.append({"images": ["img/src.png", "img/missing.png"], "edit_inst": "x", "answer": 3})
    path = tmp_path / "ie.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_correlations_and_the_logistic_fit() -> None:
    x = np.linspace(0, 10, 40)
    y = logistic4(x, 5.0, 1.0, 5.0, 1.2)
    r = correlations(list(x), list(y))
    assert r["n"] == 40 and r["srcc"] == pytest.approx(1.0) and r["krcc"] == pytest.approx(1.0)
    assert r["plcc_logistic"] > 0.999 and r["plcc"] < r["plcc_logistic"]
    assert correlations([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["plcc"] is None


def test_judge_eval_command(tmp_path: Path) -> None:
    data = _iebench(tmp_path)
    out = tmp_path / "result.json"
    r = runner.invoke(app, ["judge-eval", f"iebench:{data}", "--judge", "tests.plugins:BrightnessJudge",
                            "-J", "fail_every=5", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["n"] == 10 and res["failures"] == {"parse_error": 2, "load_error": 1} and res["n_failed"] == 3
    assert res["srcc"] > 0.9 and res["plcc"] > 0.8 and res["plcc_logistic"] >= res["plcc"] - 1e-9
    assert "PLCC" in r.output and "parse_error 2" in r.output


def test_judge_eval_needs_scores(tmp_path: Path) -> None:
    data = _iebench(tmp_path, instruction="add a hat to the dog")
    r = runner.invoke(app, ["judge-eval", f"iebench:{data}", "--judge", "verify"])
    assert r.exit_code == 1 and "no sample could be scored" in r.output and "unsupported" in r.output
