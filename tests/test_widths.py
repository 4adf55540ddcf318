"""Width (best-of-n) in the harness: summaries and ablations replayed from one run's candidates equal fresh runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from refine_agent.benchmarks.metrics import budget_row
from typer.testing import CliRunner

from refine_agent.cli import app
from refine_agent.store import RunStore

runner = CliRunner()
N_SAMPLES = 14
NOISY_EVAL = ["--eval-judge", "verify", "-V", "noise=0.7"]  # seeded by the evaluation seed: replay must match it


def cli(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def refused(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    return " ".join(r.output.split())


def bench(run: Path, *args: str) -> dict:
    cli("bench", "synthetic", "-d", str(run), "--limit", str(N_SAMPLES), "--max-samples", "4", *args)
    return json.loads((run / "summary.json").read_text())


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "seconds_per_sample"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("widths")
    made = {}
    for n in (8, 1, 2, 4):
        made[n] = root / f"best-of-{n}"
        bench(made[n], "--candidates", str(n), "--max-rounds", "0", *NOISY_EVAL)
    return made


def test_ablate_over_widths_equals_fresh_runs(runs: dict[int, Path]) -> None:
    out = cli("ablate", str(runs[8]), "--candidates", "1,2,4,8")
    assert "Width ablation" in out
    ablation = json.loads((runs[8] / "ablation-candidates-1_2_4_8.json").read_text())
    assert (runs[8] / "plots" / "ablation-candidates-1_2_4_8.png").is_file()
    assert ablation["widths"] == [1, 2, 4, 8] and ablation["run_candidates"] == 8
    summary8 = json.loads((runs[8] / "summary.json").read_text())
    for n in (1, 2, 4, 8):
        fresh = json.loads((runs[n] / "summary.json").read_text())["by_budget"]["0"]
        assert without_timing(ablation["by_candidates"][str(n)]) == without_timing(fresh), n
        assert without_timing(summary8["by_candidates"][str(n)]) == without_timing(fresh), n
        assert fresh["tool_calls_per_sample"] == {"critic": 0.0, "editor": float(n), "judge": float(n)}
    # the synthetic editor fails at seeded random, so more candidates find more passing edits
    rates = [ablation["by_candidates"][str(n)]["pass_rate"] for n in (1, 8)]
    assert rates[1] > rates[0]
    assert sorted(summary8["by_candidates"], key=int) == [str(n) for n in range(1, 9)]
    assert summary8["candidates"] == 8


def test_every_candidate_is_judged_by_the_evaluation_judge(runs: dict[int, Path]) -> None:
    info = json.loads((runs[8] / "run.json").read_text())
    key = info["eval_judge"]["key"]
    with RunStore(runs[8], writer=False) as store:
        for rec in store.iter_samples():
            assert rec.trajectory is not None
            got = store.candidate_evals(key, rec.sample_id, 8)
            assert set(got) == {(0, k) for k in range(8)}
            r0 = rec.trajectory.rounds[0]
            assert store.evals(key, rec.sample_id)[0] == got[(0, r0.chosen)]
    summary = json.loads((runs[8] / "summary.json").read_text())
    assert summary["tool_calls"]["eval_judge"] == 8 * N_SAMPLES  # the kept image is not judged twice


def test_rejudge_scores_every_candidate_again(runs: dict[int, Path], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(runs[4], run)
    cli("rejudge", str(run), "--eval-judge", "verify", "-V", "noise=0.3")
    cli("ablate", str(run), "--candidates", "1,4")
    ablation = json.loads((run / "ablation-candidates-1_4.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert without_timing(ablation["by_candidates"]["4"]) == without_timing(summary["by_budget"]["0"])
    assert summary["tool_calls"]["eval_judge"] == 4 * N_SAMPLES


def test_ablate_refuses_widths_it_cannot_replay(runs: dict[int, Path], tmp_path: Path) -> None:
    assert "beyond the run's --candidates 4" in refused("ablate", str(runs[4]), "--candidates", "2,8")
    deep = tmp_path / "deep"
    summary = bench(deep, "--candidates", "2", "--max-rounds", "2")
    assert list(summary["by_candidates"]) == ["2"]  # a deeper run is known at its own width only
    assert summary["by_candidates"]["2"] == budget_row(summary["by_budget"], summary["budget"])
    msg = refused("ablate", str(deep), "--candidates", "1,2")
    assert "--max-rounds 2" in msg and "only at its own width 2" in msg and "Rerun with --candidates 1" in msg
    cli("ablate", str(deep), "--candidates", "2", "--budgets", "0,1,2")
    both = json.loads((deep / "ablation-budgets-0_1_2-candidates-2.json").read_text())
    assert both["by_candidates"]["2"] == budget_row(both["by_budget"], 2)
    assert (deep / "plots" / "ablation-budgets-0_1_2-candidates-2-widths.png").is_file()
    assert "give --budgets" in refused("ablate", str(deep))
    # a deeper run that a call limit stopped after round 0 is, at its own width, the run itself
    limited = bench(tmp_path / "limited", "--candidates", "2", "--max-rounds", "3", "--max-calls", "editor=4",
                    "--keep-going")
    assert limited["by_candidates"]["2"] == budget_row(limited["by_budget"], limited["budget"])


def test_a_call_budget_cuts_rounds_short_and_replays_still_match(tmp_path: Path) -> None:
    cut = bench(tmp_path / "cut", "--candidates", "4", "--max-rounds", "0", "--max-calls", "editor=3")
    with RunStore(tmp_path / "cut", writer=False) as store:
        stops = {rec.trajectory.stop_reason.value for rec in store.iter_samples() if rec.trajectory}
    assert stops <= {"max_tool_calls", "passed"}
    fresh = bench(tmp_path / "three", "--candidates", "3", "--max-rounds", "0")
    assert without_timing(cut["by_candidates"]["3"]) == without_timing(fresh["by_budget"]["0"])
    assert without_timing(cut["by_candidates"]["4"]) == without_timing(fresh["by_budget"]["0"])
    assert cut["by_candidates"]["4"]["tool_calls_per_sample"]["editor"] == 3.0


def test_export_has_a_row_per_candidate_and_the_report_shows_them(runs: dict[int, Path], tmp_path: Path) -> None:
    import csv

    cli("export", str(runs[4]), "--out", str(tmp_path / "export"))
    rows = list(csv.DictReader((tmp_path / "export" / "rounds.csv").open(encoding="utf-8")))
    assert len(rows) == 4 * N_SAMPLES
    info = json.loads((runs[4] / "run.json").read_text())
    with RunStore(runs[4], writer=False) as store:
        for rec in store.iter_samples():
            mine = [r for r in rows if r["sample_id"] == rec.sample_id]
            assert [r["candidate"] for r in mine] == ["0", "1", "2", "3"]
            r0 = rec.trajectory.rounds[0]
            assert [r["chosen"] for r in mine] == [str(k == r0.chosen) for k in range(4)]
            assert [r["is_best"] for r in mine] == [r["chosen"] for r in mine]  # depth 0: the kept one is final
            assert [int(r["seed"]) for r in mine] == [c.seed for c in r0.candidates]
            evals = store.candidate_evals(info["eval_judge"]["key"], rec.sample_id, 4)
            assert [float(r["eval_overall"]) for r in mine] == [evals[(0, k)].overall for k in range(4)]

    cli("report", str(runs[4]), "--out", str(tmp_path / "report"))
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    kept, other = html.count('class="cand chosen"'), html.count('class="cand"')
    assert 'id="widths"' in html and kept > 0 and other == 3 * kept
    assert html.count('class="cand chosen"') == html.count('<article class="sample"')


def test_edit_writes_every_candidate(tmp_path: Path) -> None:
    from refine_agent.tools.synthetic.generate import iter_samples

    s = next(iter(iter_samples(1, seed=2)))
    src = tmp_path / "src.png"
    s.image().to_pil().save(src)
    out = cli("edit", str(src), s.instruction, "--candidates", "3", "--max-rounds", "1", "--keep-going",
              "-o", str(tmp_path / "out"))
    assert "of 3" in " ".join(out.split())
    traj = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    for rnd in traj["rounds"]:
        files = [c["image_file"] for c in rnd["candidates"]]
        assert files == [f"round_{rnd['index']:02d}_candidate_{k:02d}.png" for k in range(3)]
        assert all((tmp_path / "out" / f).is_file() for f in files)
    # a second run into the same folder replaces our own files without --force
    cli("edit", str(src), s.instruction, "--candidates", "2", "--max-rounds", "0", "-o", str(tmp_path / "out"))
    assert not (tmp_path / "out" / "round_00_candidate_02.png").exists()


def test_runs_made_before_candidates_still_read_and_resume(tmp_path: Path) -> None:
    run = tmp_path / "old"
    bench(run, "--max-rounds", "1")
    info = json.loads((run / "run.json").read_text())
    del info["config"]["policy"]["candidates"]  # as every run.json written before --candidates existed
    (run / "run.json").write_text(json.dumps(info))
    cli("report", str(run))
    cli("ablate", str(run), "--budgets", "0,1", "--candidates", "1")
    cli("bench", "synthetic", "-d", str(run), "--limit", str(N_SAMPLES + 2), "--max-rounds", "1", "--resume")
    assert json.loads((run / "summary.json").read_text())["n_samples"] == N_SAMPLES + 2


def test_failed_candidates_are_counted_as_errors(tmp_path: Path) -> None:
    summary = bench(tmp_path / "flaky", "--candidates", "4", "--max-rounds", "0", "-E", "fail_rate=0.3",
                    "--max-attempts", "1")
    assert summary["errors"].get("loop_candidate_editor_failed", 0) > 0
