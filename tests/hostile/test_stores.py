"""Hostile run directories: missing, empty, damaged and read-only stores, run.json and image files. Commands that
only read must never create, change or shrink anything, and must say which file is wrong (issue 8, High 2 and
Medium 7, 8, 11)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import changed, cli, error_line, snapshot

READERS = [["report"], ["export"], ["ablate", "--budgets", "0,1"]]
ALL = [*READERS, ["rejudge", "--eval-judge", "verify", "-V", "noise=1"]]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("good") / "run"
    r = cli("bench", "synthetic", "--run-dir", run, "--limit", "6", "--budgets", "0,1,2")
    assert r.exit_code == 0, r.output
    return run


@pytest.fixture
def run(good_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(good_run, copy)
    return copy


def _samples(run: Path) -> int:
    return json.loads((run / "summary.json").read_text())["n_samples"]


def _damage(run: Path, how: str) -> str:
    """Damage the run one way; return the file the error must name."""
    db = run / "records.sqlite"
    if how == "store deleted":
        db.unlink()
    elif how == "store emptied":
        db.write_bytes(b"")
    elif how == "store garbage":
        db.write_bytes(os.urandom(4096))
    elif how == "store of another program":
        db.unlink()
        sqlite3.connect(db).execute("CREATE TABLE notes (x TEXT)").connection.commit()
    elif how == "run.json deleted":
        (run / "run.json").unlink()
        return "run.json"
    elif how == "run.json truncated":
        (run / "run.json").write_text('{"config": {', encoding="utf-8")
        return "run.json"
    elif how == "run.json a list":
        (run / "run.json").write_text("[1, 2]", encoding="utf-8")
        return "run.json"
    return "records.sqlite"


DAMAGES = ["store deleted", "store emptied", "store garbage", "store of another program", "run.json deleted",
           "run.json truncated", "run.json a list"]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("command", ALL, ids=lambda c: c[0])
def test_a_damaged_run_is_one_error_naming_the_file_and_nothing_changes(run: Path, how: str,
                                                                         command: list[str]) -> None:
    name = _damage(run, how)
    before = snapshot(run)
    r = cli(command[0], run, *command[1:])
    assert name in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(run)) == []


@pytest.mark.parametrize("command", ALL, ids=lambda c: c[0])
def test_a_missing_run_dir_is_not_created(tmp_path: Path, command: list[str]) -> None:
    r = cli(command[0], tmp_path / "nope", *command[1:])
    assert "not a run directory" in error_line(r.output, r.exit_code, 2)
    assert not (tmp_path / "nope").exists()


def test_a_store_with_no_finished_sample_is_an_error_not_zero_samples(good_run: Path, tmp_path: Path) -> None:
    from refine_agent.store import RunStore

    run = tmp_path / "run"
    RunStore(run).close()  # a bench killed before its first sample finished
    shutil.copy(good_run / "run.json", run / "run.json")
    before = snapshot(run)
    for command in READERS:
        r = cli(command[0], run, *command[1:])
        assert "holds no sample yet" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(run)) == []


def test_resume_after_the_store_was_deleted_refuses(run: Path) -> None:
    (run / "records.sqlite").unlink()
    before = snapshot(run)
    r = cli("bench", "synthetic", "--run-dir", run, "--limit", "6", "--max-rounds", "2", "--resume")
    assert "records.sqlite is missing" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(run)) == []


def test_a_damaged_image_blob_is_named(run: Path) -> None:
    from refine_agent.store import RunStore, StoreError

    with RunStore(run, writer=False) as store:
        rec = next(r for r in store.iter_samples() if r.trajectory is not None)
        blob = store.image_path(rec.trajectory.rounds[0].image)  # a round's image, shown on its card
    blob.write_bytes(b"not a png")
    with RunStore(run, writer=False) as store, pytest.raises(StoreError) as err:
        store.get_image(blob.stem)
    assert str(blob) in str(err.value) and "--resume" in str(err.value)  # which file, and what to do
    r = cli("export", run)  # export names image files, it does not read them: fine
    assert r.exit_code == 0, r.output
    r = cli("report", run, "--max-samples", "100")  # the page shows the card without the image and says why
    assert r.exit_code == 0 and "Traceback" not in r.output
    assert "image unreadable" in (run / "report.html").read_text(encoding="utf-8")


def test_report_never_shrinks_summary_json_unless_forced(run: Path) -> None:
    with sqlite3.connect(run / "records.sqlite") as db:  # records lost behind our back: 6 samples become 2
        db.execute("DELETE FROM samples WHERE idx >= 2")
    before = snapshot(run)
    for command in (["report"], ["rejudge", "--eval-judge", "verify", "-V", "noise=1"]):
        r = cli(command[0], run, *command[1:])
        assert "holds 6 samples but the records now give 2" in error_line(r.output, r.exit_code, 2)
        assert _samples(run) == 6
    assert "summary.json" not in changed(before, snapshot(run))
    r = cli("report", run, "--force")
    assert r.exit_code == 0 and _samples(run) == 2


def test_readers_write_only_to_out(run: Path, tmp_path: Path) -> None:
    before = snapshot(run)
    out = tmp_path / "elsewhere"
    for command in READERS:
        r = cli(command[0], run, *command[1:], "--out", out)
        assert r.exit_code == 0, r.output
    assert changed(before, snapshot(run)) == []
    assert {"report.html", "summary.json", "rounds.csv", "ablation-budgets-0_1.json"} <= {p.name for p in
                                                                                           out.iterdir()}


def test_ablate_keeps_the_ablation_of_bench(run: Path) -> None:
    bench_ablation = (run / "ablation.json").read_bytes()
    for args in (["--budgets", "0,2"], ["--budgets", "0,1", "--threshold", "8"], ["--budgets", "0,1", "--patience",
                                                                                   "1"]):
        assert cli("ablate", run, *args).exit_code == 0
    assert (run / "ablation.json").read_bytes() == bench_ablation
    names = {p.name for p in run.glob("ablation*.json")}
    assert names == {"ablation.json", "ablation-budgets-0_2.json", "ablation-budgets-0_1-threshold-8.0.json",
                     "ablation-budgets-0_1-patience-1.json"}


@pytest.mark.parametrize("what", ["a folder", "a missing folder", "a file in a file"])
def test_judge_eval_checks_out_before_judging(tmp_path: Path, what: str) -> None:
    target = {"a folder": tmp_path, "a missing folder": tmp_path / "no" / "r.json",
              "a file in a file": tmp_path / "f.txt" / "r.json"}[what]
    (tmp_path / "f.txt").write_text("x")
    before = snapshot(tmp_path)
    r = cli("judge-eval", "synthetic", "--judge", "verify", "--limit", "2", "--out", target)
    assert "--out" in error_line(r.output, r.exit_code, 2) and "judging" not in r.output
    assert changed(before, snapshot(tmp_path)) == []


# -- a run directory the user cannot write to ------------------------------------------------------------------
def _as_other_user() -> list[str]:
    """A command prefix that runs as a user who cannot write our files (root can write anything)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a folder unwritable")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_readers_work_on_a_read_only_run_dir(good_run: Path) -> None:
    prefix = _as_other_user()
    shared = Path(tempfile.mkdtemp(prefix="ra-readonly-"))
    try:
        shared.chmod(0o755)
        run = shared / "run"
        shutil.copytree(good_run, run)
        if not prefix:
            for p in [run, *run.rglob("*")]:
                p.chmod(0o555 if p.is_dir() else 0o444)
        probe = subprocess.run([*prefix, sys.executable, "-c", "import refine_agent"], capture_output=True)
        if probe.returncode != 0:
            pytest.skip("the other user cannot import this checkout")
        out = shared / "out"
        out.mkdir()
        out.chmod(0o777)
        before = snapshot(run)

        def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*prefix, sys.executable, "-m", "refine_agent", *args], capture_output=True,
                                  text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)

        for command in READERS:
            p = run_cli(command[0], str(run), *command[1:])
            line = error_line(p.stdout + p.stderr, p.returncode, 2)
            assert "not writable" in line or "Permission denied" in line
            assert "--out" in line
            p = run_cli(command[0], str(run), *command[1:], "--out", str(out / command[0]))
            assert p.returncode == 0, p.stderr
        assert changed(before, snapshot(run)) == []
        assert (out / "report" / "report.html").is_file() and (out / "export" / "rounds.csv").is_file()
    finally:
        for p in [shared, *shared.rglob("*")]:
            if p.is_dir():
                p.chmod(0o755)
        shutil.rmtree(shared, ignore_errors=True)


# -- readers and writers at the same time -----------------------------------------------------------------------
def _count(run: Path) -> int:
    from refine_agent.store import RunStore

    with RunStore(run, writer=False) as store:
        return sum(store.count_samples().values())


def test_a_reader_beside_a_running_writer_sees_every_commit(run: Path) -> None:
    from refine_agent.store import RunStore

    writer = RunStore(run, create=False)
    try:
        writer.fail_sample("late", 99, "boom", "load_error")
        assert _count(run) == 7  # read through the WAL while the writer holds the run
    finally:
        writer.close()


def test_a_reader_sees_what_a_killed_writer_left_in_the_wal(run: Path) -> None:
    code = ("import os, sys; from refine_agent.store import RunStore; s = RunStore(sys.argv[1], create=False); "
            "s.fail_sample('late', 99, 'boom', 'load_error'); os._exit(0)")  # no close: no checkpoint
    subprocess.run([sys.executable, "-c", code, str(run)], check=True, timeout=60)
    assert (run / "records.sqlite-wal").stat().st_size > 0
    assert _count(run) == 7


def test_a_writer_waits_for_a_reader_then_says_who_holds_the_run(run: Path, monkeypatch: pytest.MonkeyPatch
                                                                   ) -> None:
    from refine_agent import store_access
    from refine_agent.store import RunInUse, RunStore

    monkeypatch.setattr(store_access, "WRITER_WAIT_S", 0.3)
    reader = RunStore(run, writer=False)
    try:
        with pytest.raises(RunInUse, match="being read by report, export or ablate"):
            RunStore(run, create=False)
    finally:
        reader.close()
    RunStore(run, create=False).close()  # once the reader is done, the writer goes ahead


def test_a_writer_never_touches_a_foreign_file_named_like_our_store(tmp_path: Path) -> None:
    from refine_agent.store import RunStore

    (tmp_path / "records.sqlite").write_text("my notes, not a database")
    before = snapshot(tmp_path)
    with pytest.raises(Exception, match="records.sqlite is damaged"):
        RunStore(tmp_path)
    assert changed(before, snapshot(tmp_path), owned=(".lock",)) == [] and not (tmp_path / "images").exists()


def test_sqlite_errors_that_are_our_bugs_are_not_blamed_on_the_store(tmp_path: Path) -> None:
    from refine_agent.store_access import store_error

    assert store_error(sqlite3.ProgrammingError("Incorrect number of bindings"), tmp_path) is None
    assert "free disk space" in str(store_error(sqlite3.OperationalError("database or disk is full"), tmp_path))
    assert "is damaged" in str(store_error(sqlite3.DatabaseError("file is not a database"), tmp_path))


@pytest.mark.parametrize("command, name", [(["report"], "report.html"), (["export"], "rounds.csv"),
                                           (["ablate", "--budgets", "0,1"], "ablation-budgets-0_1.json")])
def test_readers_never_replace_a_file_of_the_users_in_out(run: Path, tmp_path: Path, command: list[str],
                                                          name: str) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("the user's own")
    before = snapshot(out)
    r = cli(command[0], run, *command[1:], "--out", out)
    assert name in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(out)) == []
    assert cli(command[0], run, *command[1:], "--out", out, "--force").exit_code == 0
    assert cli(command[0], run, *command[1:], "--out", out).exit_code == 0  # ours now: replaced freely


def test_rejudge_refuses_to_shrink_the_summary_before_judging(run: Path) -> None:
    with sqlite3.connect(run / "records.sqlite") as db:
        db.execute("DELETE FROM samples WHERE idx >= 2")
        evals = db.execute("SELECT COUNT(*) FROM evals").fetchone()[0]
    r = cli("rejudge", run, "--eval-judge", "verify", "-V", "noise=1")
    assert "holds 6 samples" in error_line(r.output, r.exit_code, 2) and "rejudging" not in r.output
    with sqlite3.connect(run / "records.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM evals").fetchone()[0] == evals


@pytest.mark.parametrize("how", ["config not a mapping", "budget deleted", "max_rounds markup", "dataset deleted",
                                 "tools a list"])
@pytest.mark.parametrize("command", ALL, ids=lambda c: c[0])
def test_a_damaged_field_of_run_json_is_named_before_any_work(run: Path, how: str, command: list[str]) -> None:
    info = json.loads((run / "run.json").read_text())
    if how == "config not a mapping":
        info["config"] = "x"
    elif how == "budget deleted":
        del info["config"]["budget"]
    elif how == "max_rounds markup":
        info["config"]["budget"]["max_rounds"] = "[/]"
    elif how == "dataset deleted":
        del info["dataset"]
    else:
        info["tools"] = [1]
    (run / "run.json").write_text(json.dumps(info))
    before = snapshot(run)
    r = cli(command[0], run, *command[1:])
    assert "run.json is damaged" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(run)) == []


def test_a_record_that_no_longer_parses_names_the_store_and_the_sample(run: Path) -> None:
    with sqlite3.connect(run / "records.sqlite") as db:
        sid = db.execute("SELECT sample_id FROM samples WHERE trajectory IS NOT NULL LIMIT 1").fetchone()[0]
        db.execute("UPDATE samples SET trajectory='{garbage' WHERE sample_id=?", (sid,))
    for command in ALL:
        r = cli(command[0], run, *command[1:])
        line = error_line(r.output, r.exit_code, 2)
        assert "records.sqlite is damaged" in line and repr(sid) in line


@pytest.mark.parametrize("setup", ["user files", "a file", "the current folder"])
def test_bench_never_makes_its_run_among_other_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     setup: str) -> None:
    target = tmp_path / "u"
    if setup == "a file":
        target.write_text("a file")
    else:
        target.mkdir()
        (target / "summary.json").write_text("the user's")
    if setup == "the current folder":
        monkeypatch.chdir(target)
        target = Path("")
    before = snapshot(tmp_path)
    r = cli("bench", "synthetic", "--run-dir", target, "--limit", "2")
    error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(tmp_path)) == []


def test_resume_of_a_run_that_is_not_there_says_so(tmp_path: Path) -> None:
    r = cli("bench", "synthetic", "--run-dir", tmp_path / "nope", "--limit", "2", "--resume")
    assert "holds no run to continue" in error_line(r.output, r.exit_code, 2)
    assert not (tmp_path / "nope").exists()


def test_a_dataset_folder_is_not_taken_for_a_damaged_run(tmp_path: Path) -> None:
    assert cli("datasets", "make", "synthetic", "--n", "2", "--out", tmp_path / "d").exit_code == 0
    r = cli("report", tmp_path / "d")
    assert "not a run directory" in error_line(r.output, r.exit_code, 2)


def test_rejudge_with_lost_images_fails_then_recovers_once_they_are_back(run: Path) -> None:
    shutil.move(run / "images", run.parent / "images-away")
    r = cli("rejudge", run, "--eval-judge", "verify", "-V", "noise=1")
    assert "no sample could be scored" in error_line(r.output, r.exit_code, 1)
    shutil.rmtree(run / "images")  # the empty folder the writer made again
    shutil.move(run.parent / "images-away", run / "images")
    r = cli("rejudge", run, "--eval-judge", "verify", "-V", "noise=1")
    assert r.exit_code == 0 and "calls 0" not in r.output, r.output  # judged now: the failures were not cached
    assert json.loads((run / "summary.json").read_text())["n_scored_pairs"] > 0


def test_report_leaves_out_an_ablation_of_an_earlier_evaluation_judge(run: Path) -> None:
    assert cli("rejudge", run, "--eval-judge", "verify", "-V", "noise=1").exit_code == 0
    r = cli("report", run, env={"COLUMNS": "300"})
    assert r.exit_code == 0 and "computed with another evaluation judge" in r.output
