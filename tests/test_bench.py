"""The benchmark harness end to end: bench, resume after kill -9, ablate == fresh runs, rejudge, export."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from refine_agent.benchmarks.metrics import budget_row
from typer.testing import CliRunner

from refine_agent.cli import app
from refine_agent.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def cli(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def without_timing(by_budget: dict) -> dict:
    return {b: {k: v for k, v in row.items() if k != "seconds_per_sample"} for b, row in by_budget.items()}


def test_bench_writes_a_run_directory_and_the_summary_contract(tmp_path: Path) -> None:
    run = tmp_path / "run"
    out = cli("bench", "synthetic", "--run-dir", str(run), "--limit", "18", "--max-rounds", "2", "--seed", "3")
    assert "improvement rate" in out and "optimistic" in out
    info = json.loads((run / "run.json").read_text())
    assert info["schema_version"] == 1 and info["refine_agent_version"] and info["tools"]["editor"]["name"] == "sim"
    assert info["config"]["budget"]["max_rounds"] == 2 and info["dataset"]["spec"] == "synthetic"
    s = summary(run)
    for key in ("n_samples", "by_budget", "improvement_rate", "maintained_rate", "regression_rate", "unchanged_rate",
                "mean_delta", "mean_delta_ci95", "p_value", "eval_judge_is_loop_judge", "by_category", "tool_calls",
                "cost_usd", "errors"):
        assert key in s, key
    assert s["n_samples"] == 18 and set(s["by_budget"]) == {"0", "1", "2"}
    assert s["eval_judge_is_loop_judge"] is True and s["warnings"]
    for b in s["by_budget"].values():
        if "same_as" in b:  # a budget past every sample's last round names the row it repeats (issue 8, #5)
            assert set(b) == {"same_as"} and str(b["same_as"]) in s["by_budget"]
            continue
        assert {"mean_overall", "mean_sc", "mean_pq", "pass_rate", "mean_rounds", "tool_calls_per_sample",
                "cost_per_sample", "seconds_per_sample"} <= set(b)
    assert set(s["tool_calls"]) >= {"editor", "judge", "critic"}
    rates = [s[k] for k in ("improvement_rate", "maintained_rate", "regression_rate", "unchanged_rate")]
    assert sum(rates) == pytest.approx(1.0)
    store = RunStore(run, writer=False)
    assert len(store.finished()) == 18
    assert list((run / "images").glob("*/*.png"))


@pytest.mark.parametrize("policy", [[], ["--patience", "1", "--max-calls", "critic=2"]])
def test_ablation_equals_fresh_runs(tmp_path: Path, policy: list[str]) -> None:
    big = tmp_path / "big"
    cli("bench", "synthetic", "--run-dir", str(big), "--limit", "24", "--budgets", "0,1,2,3", *policy)
    ablation = json.loads((big / "ablation.json").read_text())
    assert (big / "plots" / "ablation.png").is_file()
    for b in (0, 1, 2):
        fresh = tmp_path / f"fresh{b}"
        cli("bench", "synthetic", "--run-dir", str(fresh), "--limit", "24", "--max-rounds", str(b), *policy)
        assert without_timing(ablation["by_budget"])[str(b)] == without_timing(summary(fresh)["by_budget"])[str(b)]
    assert without_timing(ablation["by_budget"])["3"] == without_timing(summary(big)["by_budget"])["3"]


def test_ablate_command_and_its_refusals(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "12", "--max-rounds", "2")
    out = cli("ablate", str(run), "--budgets", "0,2", "--patience", "1")
    assert "Budget ablation" in out
    assert not (run / "ablation.json").exists()  # that name is bench --budgets'; a replay is named after itself
    a = json.loads((run / "ablation-budgets-0_2-patience-1.json").read_text())
    assert a["budgets"] == [0, 2] and a["policy"]["patience"] == 1
    r = runner.invoke(app, ["ablate", str(run), "--budgets", "0,5"])
    assert r.exit_code == 2 and "beyond the run's --max-rounds 2" in r.output
    r = runner.invoke(app, ["ablate", str(run), "--budgets", "2", "--keep-going"])
    assert r.exit_code == 2 and "cannot replay stop_on_pass=False" in r.output and "eplayable" in r.output
    patient = tmp_path / "patient"
    cli("bench", "synthetic", "--run-dir", str(patient), "--limit", "24", "--max-rounds", "3", "--patience", "1")
    assert "patience" in {json.loads(t)["stop_reason"] for (t,) in sqlite3.connect(
        patient / "records.sqlite").execute("SELECT trajectory FROM samples")}
    cli("ablate", str(patient), "--budgets", "3", "--threshold", "7")  # only stops earlier: replayable
    r = runner.invoke(app, ["ablate", str(patient), "--budgets", "3", "--patience", "2"])
    assert r.exit_code == 2 and "cannot replay patience=2" in r.output


def test_report_on_a_damaged_ablation_json_warns_and_leaves_the_section_out(tmp_path: Path) -> None:
    """A damaged ablation.json (issue 8: name the file and say what to do) is a warning, not an internal error:
    the report is written without the ablation section, and summary.json stays about the records."""
    run = tmp_path / "run"
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "4", "--budgets", "0,1,2")
    path = run / "ablation.json"
    good = path.read_text()
    for damage, why in ((good[: len(good) // 2], "is not valid JSON"), ("[1, 2]", "is not an ablation file"),
                        ('{"by_budget": {"x": 1}}', "is not an ablation file")):
        path.write_text(damage)
        out = " ".join(cli("report", str(run)).split())
        assert f"warning: {path} {why}" in out and "leaves out the budget ablation" in out, out
        assert "refine-agent ablate RUN_DIR --budgets" in out
        page = (run / "report.html").read_text()
        assert "leaves out the budget ablation" in page and "<h2>Budget ablation</h2>" not in page
        assert not any("ablation" in w for w in summary(run)["warnings"])
    path.write_text(good)
    assert "ablation" not in cli("report", str(run))


def test_resume_refuses_settings_that_change_results(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "6", "--max-rounds", "1")
    r = runner.invoke(app, ["bench", "synthetic", "--run-dir", str(run), "--limit", "6", "--max-rounds", "1"])
    assert r.exit_code == 2 and "--resume" in r.output
    r = runner.invoke(app, ["bench", "synthetic", "--run-dir", str(run), "--limit", "6", "--max-rounds", "2",
                            "--resume"])
    assert r.exit_code == 2 and "budget" in r.output and "new --run-dir" in r.output
    r = runner.invoke(app, ["bench", "synthetic", "--run-dir", str(run), "--limit", "6", "--max-rounds", "1",
                            "-E", "skill=0.9", "--resume"])
    assert r.exit_code == 2 and "tools.editor" in r.output
    r = runner.invoke(app, ["bench", "synthetic", "--run-dir", str(run), "--limit", "3", "--max-rounds", "1",
                            "--resume"])
    assert r.exit_code == 2 and "--limit 3 is below the run's --limit 6" in r.output
    cli("rejudge", str(run), "--eval-judge", "verify", "-V", "noise=1")
    r = runner.invoke(app, ["bench", "synthetic", "--run-dir", str(run), "--limit", "6", "--max-rounds", "1",
                            "--resume"])
    assert r.exit_code == 2 and "resume with --eval-judge verify -V noise=1" in r.output
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "7", "--max-rounds", "1", "--resume",
        "--eval-judge", "verify", "-V", "noise=1")
    assert summary(run)["n_samples"] == 7 and summary(run)["eval_judge_is_loop_judge"] is False
    cli("rejudge", str(run), "--eval-judge", "verify")
    # other timeouts or attempts decide which calls fail for good: refused
    r = runner.invoke(app, ["bench", "synthetic", "--run-dir", str(run), "--limit", "9", "--max-rounds", "1",
                            "--timeout", "30", "--resume"])
    assert r.exit_code == 2 and "runtime.timeout_s" in r.output
    r = runner.invoke(app, ["bench", "synthetic", "--run-dir", str(run), "--limit", "9", "--max-rounds", "1",
                            "--max-attempts", "1", "--resume"])
    assert r.exit_code == 2 and "runtime.max_attempts" in r.output
    # more samples, fewer at once: fine, and each session is on record
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "9", "--max-rounds", "1", "--max-samples", "2",
        "--resume")
    assert summary(run)["n_samples"] == 9
    resumes = json.loads((run / "run.json").read_text())["resumes"]
    assert resumes[-1]["limit"] == 9 and resumes[-1]["max_samples"] == 2 and len(resumes) == 2


def _bench_cmd(run: Path, limit: int = 30) -> list[str]:
    return [sys.executable, "-m", "refine_agent", "bench", "synthetic", "--run-dir", str(run), "--limit", str(limit),
            "--max-rounds", "3", "--editor", "tests.plugins:LoggingSimEditor", "-E", "latency_ms=40",
            "--max-samples", "4", "--eval-judge", "verify", "-V", "noise=0.5"]


def _committed_edits(run: Path) -> set[str]:
    """The edit calls whose results the store committed (the tool stamps each result with its request)."""
    with sqlite3.connect(run / "records.sqlite") as con:
        rows = con.execute("SELECT payload FROM results WHERE kind='editor'").fetchall()
    return {json.loads(p)["info"]["request"] for (p,) in rows}


def _done(run: Path) -> int:
    db = run / "records.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM samples WHERE status='done'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _run_until(cmd: list[str], env: dict[str, str], run: Path, done: int, sig: int) -> int:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _done(run) < done and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    return proc.returncode


def _log(path: Path) -> tuple[list[str], list[str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [x[6:] for x in lines if x.startswith("start ")], [x[4:] for x in lines if x.startswith("end ")]


def test_kill_9_then_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    clean, broken = tmp_path / "clean", tmp_path / "broken"
    subprocess.run(_bench_cmd(clean), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)

    env["REFINE_AGENT_TEST_LOG"] = str(tmp_path / "first.log")
    assert _run_until(_bench_cmd(broken), env, broken, 5, signal.SIGKILL) == -signal.SIGKILL
    assert 5 <= _done(broken) < 30
    committed = _committed_edits(broken)
    env["REFINE_AGENT_TEST_LOG"] = str(tmp_path / "second.log")
    assert _run_until(_bench_cmd(broken), {**env}, broken, 10_000, 0) != 0  # without --resume: refused
    subprocess.run(_bench_cmd(broken) + ["--resume"], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=300)

    _, finished_before = _log(tmp_path / "first.log")
    started_after, _ = _log(tmp_path / "second.log")
    assert committed and committed <= set(finished_before)
    assert not committed & set(started_after)  # no completed (committed) call was made again
    with sqlite3.connect(broken / "records.sqlite") as con:
        assert con.execute("SELECT COUNT(*) FROM samples WHERE status='done'").fetchone()[0] == 30
        dup = con.execute("SELECT COUNT(*) FROM (SELECT sample_id, round FROM rounds GROUP BY 1, 2 "
                          "HAVING COUNT(*) > 1)")
        assert dup.fetchone()[0] == 0
    a, b = summary(clean), summary(broken)
    assert without_timing(a["by_budget"]) == without_timing(b["by_budget"])
    for key in ("improvement_rate", "mean_delta", "mean_delta_ci95", "p_value", "tool_calls", "errors", "by_category"):
        assert a[key] == b[key], key


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    run = tmp_path / "run"
    # A shell that starts a job in the background ignores SIGINT for it, and the child would inherit that
    # (then Python never raises KeyboardInterrupt): give it the default, as an interactive terminal does.
    proc = subprocess.Popen(_bench_cmd(run, 20), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while _done(run) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the bench ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" in err and "Traceback" not in err
    subprocess.run(_bench_cmd(run, 20) + ["--resume"], cwd=ROOT, env=env, check=True, capture_output=True,
                   timeout=300)
    assert summary(run)["n_samples"] == 20


def test_bad_rows_become_error_records_and_the_rest_go_on(tmp_path: Path) -> None:
    from refine_agent.tools.synthetic.generate import make_sample

    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    rows = []
    for i in range(4):
        s = make_sample(i, 0)
        s.image().save(data / "img" / f"{i}.png")
        rows.append({"id": s.id, "source": f"img/{i}.png", "instruction": s.instruction, "category": s.category})
    rows.append({"id": "missing", "source": "img/nope.png", "instruction": "make it blue", "category": "x"})
    (data / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    rows.append({"id": "broken", "source": "img/broken.png", "instruction": "make it blue", "category": "x"})
    rows.append({"id": "typed", "source": "img/0.png", "instruction": 5})
    (data / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    run = tmp_path / "run"
    cli("bench", f"jsonl:{data}", "--run-dir", str(run), "--max-rounds", "1")
    s = summary(run)
    assert s["n_samples"] == 7 and sum(s["errors"].values()) >= 3
    assert s["by_budget"]["1"]["n"] == 4


def test_rejudge_and_export(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "10", "--max-rounds", "2")
    before = summary(run)
    out = cli("rejudge", str(run), "--eval-judge", "verify", "-V", "noise=1.5")
    after = summary(run)
    assert "optimistic" not in out and after["eval_judge_is_loop_judge"] is False
    assert after["eval_judge"]["params"]["noise"] == 1.5
    assert after["tool_calls"]["eval_judge"] > 0
    assert after["by_budget"]["2"]["mean_overall"] != before["by_budget"]["2"]["mean_overall"]
    cli("rejudge", str(run), "--eval-judge", "verify", "-V", "noise=1.5")  # again: all cached, same numbers
    assert summary(run)["by_budget"] == after["by_budget"]
    cli("rejudge", str(run), "--eval-judge", "verify")  # back to the loop judge
    assert summary(run)["eval_judge_is_loop_judge"] is True

    import csv

    import pyarrow.parquet as pq

    n_rounds = sum(len(r.trajectory.rounds) for r in RunStore(run, writer=False).iter_samples())
    for fmt in ("csv", "jsonl", "parquet"):
        out = cli("export", str(run), "--format", fmt)
        path = run / "export" / f"rounds.{fmt}"
        assert str(path) in out.replace("\n", "")
        if fmt == "csv":
            rows = list(csv.DictReader(path.open()))
        elif fmt == "jsonl":
            rows = [json.loads(x) for x in path.read_text().splitlines()]
        else:
            rows = pq.read_table(path).to_pylist()
        assert len(rows) == n_rounds
        for col in ("sample_id", "round", "category", "instruction", "image", "overall", "passed", "status"):
            assert col in rows[0]
        assert (run / rows[0]["image"]).is_file()
    r = runner.invoke(app, ["export", str(run), "--format", "xlsx"])
    assert r.exit_code == 2 and "csv, parquet, jsonl" in r.output
    r = runner.invoke(app, ["export", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "not a run directory" in r.output


def test_a_separate_evaluation_judge_scores_every_round(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "8", "--max-rounds", "2", "--eval-judge", "verify",
        "-V", "noise=0.5")
    s = summary(run)
    assert s["eval_judge_is_loop_judge"] is False and not s["warnings"]
    store = RunStore(run, writer=False)
    key = json.loads((run / "run.json").read_text())["eval_judge"]["key"]
    for rec in store.iter_samples():
        assert set(store.evals(key, rec.sample_id)) == {r.index for r in rec.trajectory.rounds}


async def test_a_sample_that_fails_unexpectedly_is_recorded_and_the_run_goes_on(tmp_path: Path) -> None:
    from refine_agent.benchmarks.datasets.base import Dataset, ImageRef, Sample
    from refine_agent.benchmarks.runner import Bench, BenchSettings
    from refine_agent.tools.synthetic.generate import iter_samples

    from refine_agent.config import RunConfig

    class Exploding(ImageRef):
        def load(self, max_pixels: int = 0):  # type: ignore[no-untyped-def,override]
            raise RuntimeError("a bug in a loader")

    def rows():  # type: ignore[no-untyped-def]
        for i, s in enumerate(iter_samples(5, seed=0)):
            ref = Exploding(name="x") if i == 2 else ImageRef(image=s.image())
            yield Sample(id=s.id, instruction=s.instruction, category=s.category, source=ref)

    store = RunStore(tmp_path / "run")
    bench = Bench(RunConfig(budget={"max_rounds": 1}), BenchSettings(dataset="synthetic", max_samples=1), store)
    bench.prepare(resume=False)
    await asyncio.wait_for(bench.run(Dataset(spec="synthetic", rows=rows(), size=5)), 60)
    recs = list(store.iter_samples())
    assert [r.status for r in recs] == ["done", "done", "error", "done", "done"]
    assert recs[2].error_kind == "internal_error" and "a bug in a loader" in (recs[2].error or "")


async def test_a_broken_store_stops_the_run_instead_of_hanging(tmp_path: Path) -> None:
    from refine_agent.benchmarks.datasets.base import Dataset, ImageRef, Sample
    from refine_agent.benchmarks.runner import Bench, BenchSettings
    from refine_agent.tools.synthetic.generate import iter_samples

    from refine_agent.config import RunConfig

    store = RunStore(tmp_path / "run")
    bench = Bench(RunConfig(budget={"max_rounds": 0}), BenchSettings(dataset="synthetic", max_samples=1), store)
    bench.prepare(resume=False)

    def broken(*a, **k):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    store.finish_sample = broken  # type: ignore[method-assign]
    store.fail_sample = broken  # type: ignore[method-assign]
    rows = (Sample(id=s.id, instruction=s.instruction, source=ImageRef(image=s.image()))
            for s in iter_samples(6, seed=0))
    with pytest.raises(OSError, match="No space left"):
        await asyncio.wait_for(bench.run(Dataset(spec="synthetic", rows=rows, size=6)), 60)


def test_rejudge_survives_a_lost_image(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "6", "--max-rounds", "1")
    rec = next(r for r in RunStore(run, writer=False).iter_samples() if r.trajectory)
    RunStore(run, writer=False).image_path(rec.trajectory.rounds[0].image).unlink()
    cli("rejudge", str(run), "--eval-judge", "verify", "-V", "noise=1", "--max-samples", "2")
    s = summary(run)
    assert s["eval_judge_is_loop_judge"] is False and s["errors"].get("eval_one_shot_error") == 1


def test_report_command(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "6", "--max-rounds", "1")
    out = cli("report", str(run), "--max-samples", "3")
    assert "report.html" in out and "improvement rate" in out
    html = (run / "report.html").read_text()
    assert "Showing 3 of 6 samples" in html and (run / "plots" / "deltas.png").is_file()
    r = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "not a run directory" in r.output


def test_failures_after_round_0_are_counted(tmp_path: Path) -> None:
    """Failed loop judgments and re-edits at any round are counted, not silently dropped."""
    run = tmp_path / "run"
    cli("bench", "synthetic", "--run-dir", str(run), "--limit", "40", "--max-rounds", "3", "-E", "fail_rate=0.3",
        "-J", "fail_rate=0.3", "--max-attempts", "1")
    s = summary(run)
    first_judge_fail = late_judge_fail = late_edit_fail = 0
    with sqlite3.connect(run / "records.sqlite") as con:
        trajs = [json.loads(t) for (t,) in con.execute("SELECT trajectory FROM samples WHERE trajectory IS NOT NULL")]
    for t in trajs:
        if t["rounds"] and t["rounds"][0]["image"] is not None:
            bad = [r["index"] for r in t["rounds"] if r["verdict"] is not None and r["verdict"]["status"] != "ok"]
            first_judge_fail += 0 in bad
            late_judge_fail += sum(1 for i in bad if i > 0)
            late_edit_fail += sum(1 for r in t["rounds"][1:] if r["image"] is None)
    assert first_judge_fail > 0 and late_judge_fail > 0 and late_edit_fail > 0  # failures reach every round
    # round 0's failed judgment is the failed evaluation of the one-shot edit here (one judge): counted once
    assert s["errors"]["eval_one_shot_error"] == first_judge_fail
    assert s["errors"]["loop_judge_error"] == late_judge_fail
    assert s["errors"]["loop_editor_failed"] == late_edit_fail
    # no sample may reach round 3 here: then budget 3 is {"same_as": k} and row k holds its numbers (issue 8, #5)
    assert "errors" in s["by_budget"]["0"] and "errors" in budget_row(s["by_budget"], 3)
