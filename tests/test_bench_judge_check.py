"""``bench --judge-check``: the run's judges are checked on a few samples first; the result goes into
judge_check.json, summary.json (also after ``report`` and ``rejudge``) and report.html. It informs, never blocks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from refine_agent.benchmarks.report_html import judge_check_section

from .hostile.conftest import cli, error_line

LENIENT = "tests.plugins:LenientJudge"


def _bench(run: Path, *args: str, limit: int = 2) -> str:
    r = cli("bench", "synthetic", "--run-dir", str(run), "--limit", str(limit), "--max-rounds", "1",
            "--judge-check", "--judge-check-limit", "3", *args, env={"COLUMNS": "160"})
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    return r.output


def _read(run: Path, name: str) -> dict[str, Any]:
    return json.loads((run / name).read_text())


def _roles(summary: dict[str, Any]) -> list[tuple[list[str], str]]:
    return [(j["roles"], j["status"]) for j in summary["judge_check"]["judges"]]


def _report(run: Path) -> str:
    r = cli("report", str(run))
    assert r.exit_code == 0, r.output
    return (run / "report.html").read_text()


def test_a_passing_judge(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = _bench(run, "--judge", "verify")
    assert "Judge sanity check: verify" in out and "judge check: passed" in out
    assert out.index("judge check: passed") < out.index("synthetic: 2 samples")  # before the run's samples
    checks = _read(run, "judge_check.json")["checks"]
    assert len(checks) == 1 and checks[0]["roles"] == ["eval", "loop"] and checks[0]["n_samples"] == 3
    assert not checks[0]["flagged"] and checks[0]["judge"]["name"] == "verify"
    s = _read(run, "summary.json")
    jc = s["judge_check"]
    assert jc["flagged"] is False and _roles(s) == [(["eval", "loop"], "passed")]
    j = jc["judges"][0]
    assert j["identity"] == s["eval_judge"] and j["n_samples"] == 3 and j["reasons"] == []
    assert set(j["probes"]) == {"unchanged", "black", "noise", "jpeg"}  # no edited images: no mismatched/edits
    assert set(j["probes"]["black"]) == {"n", "pass_rate", "mean_overall", "mean_overall_ci95", "n_failed", "failed"}
    assert not any("judge check" in w for w in s["warnings"])
    page = _report(run)
    assert 'id="judge-check"' in page and 'data-status="passed"' in page and "FLAGGED" not in page
    assert _read(run, "summary.json")["judge_check"] == jc  # report regenerates it from judge_check.json


def test_a_flagged_loop_judge_warns_but_the_run_completes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = _bench(run, "--judge", LENIENT)
    assert "judge check: FLAGGED:" in out and "the run goes on" in out
    s = _read(run, "summary.json")
    assert s["n_samples"] == 2 and s["judge_check"]["flagged"] is True
    assert _roles(s) == [(["eval", "loop"], "flagged")]
    warning = next(w for w in s["warnings"] if "flagged by the judge check" in w)
    assert warning.startswith("the evaluation judge (also the loop judge) lenient()")
    assert "passes 100.0% of unchanged sources" in warning and "may reward non-edits" in warning
    page = _report(run)
    assert 'data-status="flagged"' in page and "FLAGGED: unchanged: passes 100.0%" in page
    assert "was flagged by the judge check" in page


def test_an_independent_eval_judge_checks_both(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = _bench(run, "--judge", LENIENT, "--eval-judge", "verify")
    assert "Judge check of the evaluation judge," in out and "Judge check of the loop judge," in out
    checks = _read(run, "judge_check.json")["checks"]
    assert [(c["roles"], c["judge"]["name"], c["flagged"]) for c in checks] == [
        (["eval"], "verify", False), (["loop"], "lenient", True)]
    s = _read(run, "summary.json")
    assert _roles(s) == [(["eval"], "passed"), (["loop"], "flagged")]
    assert any(w.startswith("the loop judge lenient() was flagged") and "picks the rounds" in w for w in s["warnings"])


def test_resume_does_not_check_again_and_rejudge_does_not_borrow_a_check(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _bench(run, "--judge", "verify")
    path = run / "judge_check.json"
    before = path.stat().st_mtime_ns, path.read_bytes()
    out = _bench(run, "--judge", "verify", "--resume", limit=3)
    assert "from judge_check.json (checked before)" in out and "on the first" not in out
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    assert _read(run, "summary.json")["n_samples"] == 3

    r = cli("rejudge", str(run), "--eval-judge", "verify", "-V", "noise=1")
    assert r.exit_code == 0, r.output
    s = _read(run, "summary.json")
    ev, loop = s["judge_check"]["judges"]
    assert ev["roles"] == ["eval"] and ev["status"] == "not_checked" and ev["flagged"] is None
    assert ev["identity"]["params"]["noise"] == 1.0 and "probes" not in ev
    assert loop["roles"] == ["loop"] and loop["status"] == "passed"  # the old check is the loop judge's
    assert any("verify(noise=1.0" in w and "was not checked" in w for w in s["warnings"])
    assert 'data-status="not_checked"' in _report(run)

    out = _bench(run, "--judge", "verify", "--eval-judge", "verify", "-V", "noise=1", "--resume", limit=3)
    assert "Judge check of the evaluation judge, on the first 3 samples" in out
    assert "Judge check of the loop judge, from judge_check.json" in out
    assert [c["roles"] for c in _read(run, "judge_check.json")["checks"]] == [["eval"], ["loop"]]
    assert _roles(_read(run, "summary.json")) == [(["eval"], "passed"), (["loop"], "passed")]


def test_a_damaged_file_is_a_warning(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = cli("bench", "synthetic", "--run-dir", str(run), "--limit", "2", "--max-rounds", "1")
    assert r.exit_code == 0, r.output
    assert "judge_check" not in _read(run, "summary.json")  # never checked: no entry
    (run / "judge_check.json").write_text("{nope")
    _report(run)
    s = _read(run, "summary.json")
    assert "judge_check" not in s and any("judge_check.json is not valid JSON" in w for w in s["warnings"])


def test_bad_limit_is_one_error_line(tmp_path: Path) -> None:
    r = cli("bench", "synthetic", "--run-dir", str(tmp_path / "run"), "--judge-check", "--judge-check-limit", "0")
    assert "--judge-check-limit" in error_line(r.output, r.exit_code, 2)
    assert not (tmp_path / "run").exists()


def test_the_section_escapes_text() -> None:
    html = judge_check_section({"judge_check": {"judges": [{
        "roles": ["eval"], "identity": {"name": "<script>x</script>", "params": {}}, "status": "flagged",
        "flagged": True, "n_samples": 1, "reasons": ["<b>bad</b>"],
        "probes": {"unchanged": {"n": 1, "pass_rate": 1.0, "failed": {"<i>": 1}}}}]}})
    assert "<script>" not in html and "<b>bad" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html and "FLAGGED: &lt;b&gt;bad" in html
    assert judge_check_section({}) == ""
