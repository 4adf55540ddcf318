"""Hostile text: rich markup, emoji codes and brackets in every field a user or a data set controls. Each must
print verbatim, never crash and never be eaten (issue 8, High 1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from refine_agent.tools.synthetic.generate import make_sample

from .conftest import changed, cli, cli_subprocess, error_line, snapshot
from .markup_tools import MARKUP

TOOLS = "tests.hostile.markup_tools"
WIDE = {"COLUMNS": "400"}  # tables fold long cells; a wide terminal keeps hostile strings on one line
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, str]:
    s = make_sample(5, seed=0)  # "Make the background pale blue": the sim editor does it
    path = tmp_path / "IMG_[final].png"
    s.image().save(path)
    return path, s.instruction


@pytest.mark.parametrize("name", ["notes [/tmp].png", "IMG_[final].jpg", "[bold]x[/bold].png", ":smile:.png",
                                  "[link=file:///etc]a.png"])
def test_a_missing_input_is_named_verbatim(tmp_path: Path, name: str) -> None:
    before = snapshot(tmp_path)
    r = cli("edit", tmp_path / name, "make it blue", "--out", tmp_path / "o", env=WIDE)
    assert f"{tmp_path / name}: no such file" in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(tmp_path)) == []


def test_bracketed_paths_and_a_markup_instruction_run_and_print_verbatim(tmp_path: Path) -> None:
    src = tmp_path / "IMG_[final].png"
    make_sample(5, seed=0).image().save(src)
    out = tmp_path / "out [/]"
    instruction = f"Make it different {MARKUP}"
    r = cli("edit", src, instruction, "--out", out, "-e", f"{TOOLS}:InvertEditor", "-j", f"{TOOLS}:MarkupJudge",
            "-c", f"{TOOLS}:MarkupCritic", "--max-rounds", "2", env=WIDE)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert instruction in r.output  # the table's title: the instruction, not its markup rendered
    assert MARKUP in r.output  # the critic's analysis in the table
    assert f"wrote {out}/final.png and {out}/trajectory.json" in r.output
    data = json.loads((out / "trajectory.json").read_text())
    assert data["instruction"] == instruction and data["rounds"][1]["instruction"].endswith(MARKUP)


def test_a_tool_reply_in_an_error_prints_verbatim(scene: tuple[Path, str], tmp_path: Path) -> None:
    path, instruction = scene
    r = cli("edit", path, instruction, "--out", tmp_path / "o", "-j", f"{TOOLS}:MarkupJudge", "-J", "refuse=true",
            env=WIDE)
    line = error_line(r.output, r.exit_code, 1)
    assert f"I will not judge {MARKUP}" in line


def test_an_instruction_a_tool_refuses_is_quoted_verbatim(scene: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = scene
    text = f"Make the background pale blue {MARKUP}"
    r = cli("edit", path, text, "--out", tmp_path / "o", env=WIDE)
    assert f"'{text}'" in error_line(r.output, r.exit_code, 2)


@pytest.mark.parametrize("args, shown", [
    (["--editor", "[/]nope"], "[/]nope"),
    (["-e", "sim", "-E", "skill=fast[/]"], "'fast[/]'"),
    (["--config", "[bold]c[/].yaml"], "[bold]c[/].yaml"),
    (["--max-calls", "[/]=3"], "[/]"),
    (["--base", ":smile:[/]"], ":smile:[/]"),
])
def test_bad_option_values_are_quoted_verbatim(scene: tuple[Path, str], tmp_path: Path, args: list[str],
                                               shown: str) -> None:
    path, instruction = scene
    before = snapshot(tmp_path)
    r = cli("edit", path, instruction, "--out", tmp_path / "o", *args, env=WIDE)
    assert shown in error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(tmp_path)) == []


def test_a_library_warning_prints_verbatim(scene: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = scene
    p = cli_subprocess("edit", path, "anything", "--out", tmp_path / "o", "-e", f"{TOOLS}:InvertEditor",
                       "-E", "warn=true", "-j", f"{TOOLS}:MarkupJudge", "--max-rounds", "0", cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert f"warning: odd setting {MARKUP}" in p.stderr and "Traceback" not in p.stderr


def _hostile_manifest(root: Path) -> Path:
    """Three rows: ids, categories and instructions full of markup; the third one no tool understands."""
    rows = []
    for i, (sid, cat) in enumerate([("[bold]a[/bold]", "[/]"), (":smile:", "IMG_[final]"), ("c[/]", "[red]")]):
        s = make_sample(i + 4, seed=0)
        s.image().save(root / f"{i}.png")
        text = s.instruction if i < 2 else f"{s.instruction} {MARKUP}"
        rows.append({"id": sid, "source": f"{i}.png", "instruction": text, "category": cat})
    path = root / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile-run")
    manifest = _hostile_manifest(root)
    r = cli("bench", f"jsonl:{manifest}", "--run-dir", root / "run", "--max-rounds", "1", env=WIDE)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "IMG_[final]" in r.output and "[/]" in r.output
    assert "editor_failed 1" in r.output  # the row no tool understands: an error record, the others go on
    return root / "run"


@pytest.mark.parametrize("command", [["report"], ["export"], ["ablate", "--budgets", "0,1"],
                                     ["rejudge", "--eval-judge", "verify"]])
def test_commands_on_a_run_with_hostile_ids_and_categories(hostile_run: Path, command: list[str]) -> None:
    r = cli(command[0], hostile_run, *command[1:], env=WIDE)
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    if command[0] in ("report", "rejudge"):
        assert "IMG_[final]" in r.output and "[/]" in r.output  # the category table, verbatim
    html = (hostile_run / "report.html")
    if command[0] == "report":
        page = html.read_text(encoding="utf-8")
        assert "[bold]a[/bold]" in page and "<bold>" not in page


def test_demo_and_dataset_folders_with_brackets(tmp_path: Path) -> None:
    d = tmp_path / "d [/]"
    r = cli("datasets", "make", "synthetic", "--n", "2", "--out", d, env=WIDE)
    assert r.exit_code == 0 and f"wrote 2 samples to {d}/manifest.jsonl" in r.output
    o = tmp_path / ":smile: [/]"
    r = cli("demo", "--n", "3", "--out", o, "--no-baseline", env=WIDE)
    assert r.exit_code == 0 and f"{o}/summary.json" in r.output


def test_terminal_control_sequences_print_as_visible_escapes(tmp_path: Path) -> None:
    src = tmp_path / "a\x1b[2Jb.png"
    r = cli("edit", src, "clear \x1b]0;owned\x07 the screen", "--out", tmp_path / "o", env=WIDE)
    line = error_line(r.output, r.exit_code, 2)
    assert "\x1b" not in r.output and "a\\x1b[2Jb.png" in line


def test_error_lines_stay_one_line_and_bounded(scene: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = scene
    r = cli("edit", path, "make it \u202eblue\nand green", "--out", tmp_path / "o", env=WIDE)
    line = error_line(r.output, r.exit_code, 2)
    assert "\\u202e" in line and "\\n" in line and "\u202e" not in r.output
    r = cli("edit", path, "x" * 100_000, "--out", tmp_path / "o2", env=WIDE)
    line = error_line(r.output, r.exit_code, 2)
    assert len(line) < 3000 and "more characters" in line
