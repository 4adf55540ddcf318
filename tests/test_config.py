from pathlib import Path

import pytest

from refine_agent.cli.options import config_from_flags
from refine_agent.config import RunConfig, parse_key_values, read_config_file
from refine_agent.errors import ConfigError


def test_defaults() -> None:
    c = RunConfig()
    assert (c.editor.spec, c.judge.spec, c.critic.spec, c.budget.max_rounds) == ("sim", "verify", "rule", 3)


def test_yaml_toml_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("editor: {spec: sim, options: {skill: 0.9}}\nbudget: {max_rounds: 5}\n")
    (tmp_path / "a.toml").write_text('judge = "verify"\nseed = 7\n[critic]\nspec = "repeat"\n')
    (tmp_path / "a.json").write_text('{"policy": {"patience": 2}}')
    assert config_from_flags(config=tmp_path / "a.yaml").editor.options == {"skill": 0.9}
    assert config_from_flags(config=tmp_path / "a.yaml").budget.max_rounds == 5
    c = config_from_flags(config=tmp_path / "a.toml")
    assert c.seed == 7 and c.critic.spec == "repeat"
    assert config_from_flags(config=tmp_path / "a.json").policy.patience == 2


@pytest.mark.parametrize("name,text,match", [
    ("bad.yaml", "editor: [unclosed\n", r"not valid YAML \(line"),
    ("bad.toml", "seed = \n", "not valid TOML"),
    ("bad.json", "{", "not valid JSON"),
    ("list.yaml", "- 1\n- 2\n", "must hold a mapping"),
    ("bad.ini", "x=1", "unknown format"),
    ("typo.yaml", "budgett: {max_rounds: 2}\n", r"budgett: unknown field"),
    ("type.yaml", "budget: {max_rounds: lots}\n", r"budget.max_rounds: Input should be a valid integer"),
])
def test_malformed_files_give_one_line(tmp_path: Path, name: str, text: str, match: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        config_from_flags(config=p)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "nope.yaml")


def test_key_values() -> None:
    assert parse_key_values(["skill=0.8", "name=x y", "flag=true", "n=3", "empty="], "opt") == {
        "skill": 0.8, "name": "x y", "flag": True, "n": 3, "empty": ""}
    with pytest.raises(ConfigError, match="use key=value"):
        parse_key_values(["skill"], "--editor-opt")


def test_flags_override_the_file_and_keep_its_tool_options(tmp_path: Path) -> None:
    p = tmp_path / "run.yaml"
    p.write_text("editor: {spec: sim, options: {skill: 0.9}}\njudge: verify\nbudget: {max_rounds: 5}\nseed: 3\n")
    c = config_from_flags(config=p, max_rounds=1, editor_opt=["latency_ms=5"], judge_opt=["noise=1"])
    assert c.budget.max_rounds == 1 and c.seed == 3
    assert c.editor.options == {"skill": 0.9, "latency_ms": 5}
    assert c.judge.options == {"noise": 1}
    # a different spec replaces the tool, options included
    c = config_from_flags(config=p, editor="classic")
    assert c.editor.spec == "classic" and c.editor.options == {}


def test_flag_values_for_policy_and_budget() -> None:
    c = config_from_flags(config=None, threshold=8.5, patience=2, max_seconds=30, max_cost=1.5, base="source",
                          keep_going=True, max_calls=["editor=4", "total=9"], timeout=5, max_attempts=2)
    assert c.policy.threshold == 8.5 and c.policy.patience == 2 and c.policy.force_base == "source"
    assert c.policy.stop_on_pass is False
    assert (c.budget.max_seconds, c.budget.max_cost) == (30, 1.5)
    assert (c.budget.max_calls.editor, c.budget.max_calls.total) == (4, 9)
    assert c.runtime.timeout_s == 5 and c.runtime.retry.max_attempts == 2
    with pytest.raises(ConfigError, match="kind must be"):
        config_from_flags(config=None, max_calls=["gpu=1"])
    with pytest.raises(ConfigError, match="policy.force_base"):
        config_from_flags(config=None, base="sideways")
    with pytest.raises(ConfigError, match="needs --refine-editor"):
        config_from_flags(config=None, refine_editor_opt=["skill=1"])
