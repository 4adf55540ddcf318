"""Placement options and ``--ray`` without a cluster: what is taken out of a tool's options, and the one-line errors
for what cannot run (workers without --ray, a missing ray extra). Runs without ray installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refine_agent.cli import app
from refine_agent.cli.options import config_from_flags
from refine_agent.config import ToolSpec, validate_config
from refine_agent.errors import ConfigError, MissingExtraError
from refine_agent.placement import Placement, RayConfig, split_placement
from refine_agent.session import build_tools, make_tool


def test_placement_options_are_taken_out_of_the_tools_options() -> None:
    ray = RayConfig(address="auto")
    placement, rest = split_placement("editor", {"workers": 4, "num_gpus": 1, "resources": {"A100": 1},
                                                 "skill": 0.8}, ray)
    assert rest == {"skill": 0.8}
    assert placement == Placement(workers=4, num_gpus=1, resources={"A100": 1})
    assert placement.demand() == {"A100": 1.0, "GPU": 1.0}
    assert split_placement("judge", {"noise": 1}, None) == (None, {"noise": 1})


@pytest.mark.parametrize("options, ray, needle", [
    ({"workers": 2}, None, "give --ray ADDRESS"),
    ({"num_gpus": 1}, RayConfig(address="local"), "need workers=N"),
    ({"workers": 0}, RayConfig(address="local"), "workers"),
])
def test_placement_errors_are_one_line(options: dict, ray: RayConfig | None, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        split_placement("editor", options, ray)


def test_the_ray_address_from_flags_and_files(tmp_path: Path) -> None:
    assert config_from_flags(config=None).ray is None
    assert config_from_flags(config=None, ray="ray://head:10001").ray == RayConfig(address="ray://head:10001")
    cfg = tmp_path / "run.yaml"
    cfg.write_text("ray: {address: auto, max_restarts: 1}\neditor: {spec: sim, options: {workers: 2}}\n")
    c = config_from_flags(config=cfg, ray="local")
    assert c.ray == RayConfig(address="local", max_restarts=1) and c.editor.options == {"workers": 2}
    assert validate_config({"ray": "auto"}).ray == RayConfig(address="auto")
    with pytest.raises(ConfigError, match="local, auto, ray://HOST:PORT"):
        validate_config({"ray": "http://head"})


def test_workers_without_ray_is_a_clear_error_naming_the_flag(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["bench", "synthetic", "--run-dir", str(tmp_path / "run"), "--limit", "2",
                                 "-E", "workers=2"])
    assert r.exit_code == 2 and "--ray" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_missing_ray_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"refine-agent\[ray\]"):
        make_tool("editor", ToolSpec(spec="sim", options={"workers": 2}), RayConfig(address="local"))


def test_ray_without_workers_runs_in_process_and_says_so() -> None:
    with pytest.warns(UserWarning, match="no tool was given workers=N"):
        tools = build_tools(config_from_flags(config=None, ray="local"))
    assert tools.placement() is None and type(tools.editor).__name__ == "SimEditor"


def test_the_core_and_cli_never_import_ray() -> None:
    import subprocess
    import sys

    code = ("import sys, refine_agent.cli, refine_agent.session, refine_agent.placement; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"
