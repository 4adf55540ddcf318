"""Hostile output folders for edit, refine and demo: we never delete or overwrite a file this program did not
write, and we check the folder before the first tool call (issue 8, High 3 and Medium 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from refine_agent.tools.synthetic.generate import make_sample

from .conftest import changed, cli, error_line, snapshot


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, str]:
    s = make_sample(1, seed=0)  # a shape to add, with seeded one-shot failures to refine
    path = tmp_path / "in" / "scene.png"
    path.parent.mkdir()
    s.image().save(path)
    return path, s.instruction


def _edit(scene: tuple[Path, str], out: Path, *args: str):  # type: ignore[no-untyped-def]
    return cli("edit", scene[0], scene[1], "--out", out, "--seed", "1", *args)


def _our_files(out: Path) -> set[str]:
    data = json.loads((out / "trajectory.json").read_text())
    return set(data["written_by"]["files"]) | {"trajectory.json"}


def test_a_folder_of_someone_else_is_refused_before_any_work(scene: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "round_01.png").write_bytes(b"my own picture")
    (out / "notes.txt").write_text("keep me")
    before = snapshot(out)
    r = _edit(scene, out)
    assert "not written by refine-agent" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(out)) == []


def test_force_writes_into_it_but_deletes_nothing_of_the_user(scene: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "round_77.png").write_bytes(b"my own picture")
    assert _edit(scene, out, "--force").exit_code == 0
    assert (out / "notes.txt").read_text() == "keep me" and (out / "round_77.png").read_bytes() == b"my own picture"
    assert (out / "final.png").is_file()


def test_our_own_folder_is_reused_and_only_our_stale_rounds_go(scene: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    for seed in range(20):  # a seed whose one-shot edit needs a re-edit: the second run has a stale round to drop
        assert cli("edit", scene[0], scene[1], "--out", out, "--seed", str(seed), "--max-rounds", "3").exit_code == 0
        first = _our_files(out)
        if "round_01.png" in first:
            break
    assert "round_01.png" in first
    (out / "notes.txt").write_text("added by the user later")
    r = cli("edit", scene[0], scene[1], "--out", out, "--seed", str(seed), "--max-rounds", "0")
    assert r.exit_code == 0, r.output
    now = _our_files(out)
    assert {p.name for p in out.iterdir()} == now | {"notes.txt"}  # our stale rounds are gone, the note stays
    assert now <= first and "round_01.png" not in now


def test_a_file_of_ours_the_user_changed_is_theirs(scene: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _edit(scene, out).exit_code == 0
    (out / "final.png").write_bytes(b"retouched by hand")
    before = snapshot(out)
    r = _edit(scene, out)
    assert "final.png" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(out)) == []


@pytest.mark.parametrize("name", ["final.png", "source.png", "round_00.png"])
def test_an_input_among_the_outputs_is_refused(scene: tuple[Path, str], tmp_path: Path, name: str) -> None:
    out = tmp_path / "inplace"
    assert _edit(scene, out).exit_code == 0
    before = snapshot(out)
    r = cli("edit", out / name, scene[1], "--out", out)
    assert "inside the output folder" in error_line(r.output, r.exit_code, 2)
    r = cli("refine", scene[0], out / name, scene[1], "--out", out)
    assert "inside the output folder" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(out)) == []


def test_an_output_that_is_a_file_is_refused_before_any_work(scene: tuple[Path, str], tmp_path: Path) -> None:
    target = tmp_path / "afile.txt"
    target.write_text("hi")
    for out in (target, target / "sub"):
        before = snapshot(tmp_path)
        r = _edit(scene, out)
        line = error_line(r.output, r.exit_code, 2)
        assert "afile.txt" in line and "trajectory" not in r.output
        assert changed(before, snapshot(tmp_path)) == []


def test_the_default_output_folder_is_protected_too(scene: tuple[Path, str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    default = tmp_path / "refine-agent-out" / "scene"
    default.mkdir(parents=True)
    (default / "final.png").write_bytes(b"someone's")
    r = cli("edit", scene[0], scene[1])
    assert "not written by refine-agent" in error_line(r.output, r.exit_code, 2)
    assert (default / "final.png").read_bytes() == b"someone's"


def test_demo_out_refuses_a_foreign_folder_and_reuses_its_own(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "thesis.tex").write_text("keep")
    before = snapshot(out)
    r = cli("demo", "--n", "2", "--no-baseline", "--out", out)
    assert "thesis.tex" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(out)) == []
    mine = tmp_path / "mine"
    for _ in range(2):
        r = cli("demo", "--n", "2", "--no-baseline", "--out", mine)
        assert r.exit_code == 0, r.output
    assert json.loads((mine / "summary.json").read_text())["written_by"]["program"] == "refine-agent"


def test_demo_checks_every_sample_folder_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert cli("demo", "--n", "2", "--no-baseline", "--out", out).exit_code == 0
    touched = next((out / "rule").iterdir()) / "final.png"
    touched.write_bytes(b"retouched by hand")
    before = snapshot(out)
    r = cli("demo", "--n", "2", "--no-baseline", "--out", out)
    assert "final.png" in error_line(r.output, r.exit_code, 2) and "Pass rate" not in r.output
    assert changed(before, snapshot(out)) == []


def test_a_refused_run_creates_no_folder(scene: tuple[Path, str], tmp_path: Path) -> None:
    before = snapshot(tmp_path)
    r = _edit(scene, tmp_path / "new" / "deep" / "out", "-E", "bogus=1")
    assert "bogus" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("name", ["FINAL.PNG", "Round_00.png", "Source.PNG"])
def test_names_like_ours_in_another_case_are_the_users(scene: tuple[Path, str], tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    assert _edit(scene, out).exit_code == 0
    (out / name).write_bytes(scene[0].read_bytes())  # the user's own picture, named like ours in capitals
    before = snapshot(out)
    r = _edit(scene, out)
    assert name in error_line(r.output, r.exit_code, 2)
    r = cli("edit", out / name, scene[1], "--out", out)  # and as an input
    assert name in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(out)) == []


@pytest.mark.parametrize("command", [
    ["edit", "{src}", "{instr}", "--out", "{out}"],
    ["demo", "--n", "2", "--no-baseline", "--out", "{out}"],
    ["datasets", "make", "synthetic", "--n", "2", "--out", "{out}"],
], ids=["edit", "demo", "datasets-make"])
def test_a_path_through_a_new_folder_and_back_is_checked_like_the_folder(scene: tuple[Path, str], tmp_path: Path,
                                                                         command: list[str]) -> None:
    mine = tmp_path / "proj"
    mine.mkdir()
    for name in ("final.png", "summary.json", "manifest.jsonl"):
        (mine / name).write_text("the user's")
    before = snapshot(tmp_path)
    args = [a.format(src=scene[0], instr=scene[1], out=mine / "new" / "..") for a in command]
    r = cli(*args)
    error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(tmp_path)) == []


def test_a_source_named_dot_dot_does_not_write_above_the_default_folder(scene: tuple[Path, str], tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "...png").write_bytes(scene[0].read_bytes())
    (tmp_path / "final.png").write_text("the user's")
    r = cli("edit", "...png", scene[1], "--max-rounds", "0")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "final.png").read_text() == "the user's"
    assert (tmp_path / "refine-agent-out" / "image" / "final.png").is_file()


def test_force_never_deletes_an_input(scene: tuple[Path, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    for seed in range(20):  # a run with a re-edit, so round_01.png exists to be reused as the input
        cli("edit", scene[0], scene[1], "--out", out, "--seed", str(seed), "--max-rounds", "3")
        if (out / "round_01.png").exists():
            break
    given = out / "round_01.png"
    r = cli("edit", given, scene[1], "--out", out, "--force", "--max-rounds", "0")
    assert r.exit_code == 0, r.output
    assert given.is_file()  # a stale round of ours, but the user's input this time: kept


def test_a_broken_link_as_out_is_one_line(scene: tuple[Path, str], tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    r = _edit(scene, link)
    assert "broken link" in error_line(r.output, r.exit_code, 2)
    assert not (tmp_path / "gone").exists()


def test_a_report_cut_short_leaves_its_out_folder_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import refine_agent.benchmarks.report as report

    run, out = tmp_path / "run", tmp_path / "out"
    assert cli("bench", "synthetic", "--run-dir", run, "--limit", "3", "--max-rounds", "1").exit_code == 0
    real = report.collect_report

    def interrupted(*args: object, **kwargs: object) -> object:
        raise KeyboardInterrupt  # Ctrl-C after summary.json was written, before the ledger has its hashes

    monkeypatch.setattr(report, "collect_report", interrupted)
    assert cli("report", run, "--out", out).exit_code == 130
    monkeypatch.setattr(report, "collect_report", real)
    r = cli("report", run, "--out", out)
    assert r.exit_code == 0, r.output
