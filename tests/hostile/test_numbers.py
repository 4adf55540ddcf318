"""Hostile numbers and honest exit codes: seeds out of range are refused at parse time by every command, a
benchmark that scored nothing fails, and progress counts what it did (issue 8, Medium 6 and 7, Low)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import changed, cli, error_line, snapshot

SEED_COMMANDS = [
    ["demo", "--n", "2"],
    ["bench", "synthetic", "--run-dir", "{tmp}/run", "--limit", "2"],
    ["datasets", "make", "synthetic", "--n", "2", "--out", "{tmp}/d"],
    ["judge-eval", "synthetic", "--judge", "verify", "--limit", "2"],
    ["judge-check", "synthetic", "--judge", "verify", "--limit", "2"],
    ["edit", "{tmp}/nothing.png", "make it blue"],
]


@pytest.mark.parametrize("seed", ["-1", "-99999999999999999999", "99999999999999999999", "1.5", "[/]"])
@pytest.mark.parametrize("command", SEED_COMMANDS, ids=lambda c: c[0])
def test_every_seed_option_takes_the_same_range_checked_at_parse_time(tmp_path: Path, command: list[str],
                                                                      seed: str) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    r = cli(*args, "--seed", seed)
    assert "--seed" in error_line(r.output, r.exit_code, 2)
    assert list(tmp_path.iterdir()) == []


def test_a_negative_seed_in_a_config_file_is_refused_too(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("seed: -3\n")
    r = cli("bench", "synthetic", "--run-dir", tmp_path / "run", "--config", config)
    assert "seed" in error_line(r.output, r.exit_code, 2)
    assert not (tmp_path / "run").exists()


def test_bench_fails_when_no_sample_could_be_scored(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"s{i}", "source": f"missing-{i}.png", "instruction": "x"}) + "\n"
                                for i in range(3)))
    r = cli("bench", f"jsonl:{manifest}", "--run-dir", tmp_path / "run")
    line = error_line(r.output, r.exit_code, 1)
    assert "no sample could be scored" in line and "load_error 3" in line
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["n_samples"] == 3  # the record is kept


def test_rejudge_progress_counts_its_calls(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("bench", "synthetic", "--run-dir", run, "--limit", "3", "--max-rounds", "0").exit_code == 0
    r = cli("rejudge", run, "--eval-judge", "verify", "-V", "noise=1")
    assert r.exit_code == 0 and "calls 3" in r.output, r.output


@pytest.mark.parametrize("args", [["--max-samples", "0"], ["--limit", "-1"], ["--max-rounds", "-2"],
                                  ["--budgets", "0,-1"], ["--budgets", "a,b"], ["--threshold", "11"]])
def test_bad_bench_numbers_are_refused_before_anything_is_made(tmp_path: Path, args: list[str]) -> None:
    before = snapshot(tmp_path)
    r = cli("bench", "synthetic", "--run-dir", tmp_path / "run", *args)
    error_line(r.output, r.exit_code, 2)
    assert changed(before, snapshot(tmp_path)) == []


@pytest.mark.parametrize("args", [["--limit", "9223372036854775808"], ["--limit", "1e20"]])
def test_limits_past_what_can_be_counted_are_refused(tmp_path: Path, args: list[str]) -> None:
    r = cli("bench", "synthetic", "--run-dir", tmp_path / "run", *args)
    assert "--limit" in error_line(r.output, r.exit_code, 2)
    assert not (tmp_path / "run").exists()


def test_demo_size_is_bounded() -> None:
    r = cli("demo", "--n", "10001")
    assert "--n" in error_line(r.output, r.exit_code, 2)


@pytest.mark.parametrize("text, fmt", [("editor: 5\n", "yaml"), ("seed: " + "1" * 5000 + "\n", "yaml"),
                                       ('{"seed": ' + "1" * 5000 + "}", "json"), ("[" * 100_000, "json")])
def test_hostile_config_files_are_one_line(tmp_path: Path, text: str, fmt: str) -> None:
    config = tmp_path / f"c.{fmt}"
    config.write_text(text)
    r = cli("bench", "synthetic", "--run-dir", tmp_path / "run", "--config", config)
    assert "c." + fmt in error_line(r.output, r.exit_code, 2)
    assert not (tmp_path / "run").exists()


def test_a_manifest_line_with_a_huge_number_or_deep_nesting_is_an_error_record(tmp_path: Path) -> None:
    from refine_agent.tools.synthetic.generate import make_sample

    s = make_sample(5, seed=0)
    s.image().save(tmp_path / "a.png")
    good = json.dumps({"id": "a", "source": "a.png", "instruction": s.instruction})
    (tmp_path / "m.jsonl").write_text(good + "\n" + '{"id": ' + "9" * 5000 + "}\n" + "[" * 100_000 + "\n")
    r = cli("bench", f"jsonl:{tmp_path / 'm.jsonl'}", "--run-dir", tmp_path / "run", "--max-rounds", "0")
    assert r.exit_code == 0 and "load_error 2" in r.output, r.output
