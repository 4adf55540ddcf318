"""The distribution installs one top-level import package, ``refine_agent``: the repository's top-level
folders tools/ and benchmarks/ become refine_agent.tools and refine_agent.benchmarks."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"refine_agent": "refine_agent", "tools": "refine_agent.tools", "benchmarks": "refine_agent.benchmarks"}


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _package_folders() -> set[str]:
    """Every package in the repository, named as it installs."""
    out = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            out.add(".".join([name, *rel.parts]))
    return out


def test_every_package_folder_is_listed_and_mapped() -> None:
    conf = _setuptools()
    assert set(conf["packages"]) == _package_folders()
    assert conf["package-dir"] == {name: folder for folder, name in FOLDERS.items()}


def test_tools_and_benchmarks_import_only_under_refine_agent() -> None:
    import refine_agent.benchmarks.report
    import refine_agent.tools.editors.sim

    assert Path(refine_agent.tools.editors.sim.__file__).parent.parent == ROOT / "tools"
    assert Path(refine_agent.benchmarks.report.__file__).parent == ROOT / "benchmarks"
    for module in list(sys.modules):
        assert not module.startswith(("tools.", "benchmarks.")), module  # no second copy under a bare name


@pytest.mark.skipif(importlib.util.find_spec("wheel") is None, reason="the dev extra installs wheel")
def test_the_wheel_has_one_top_level_package(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", ".ci-venv", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=300)
    wheel = zipfile.ZipFile(next((tmp_path / "dist").glob("*.whl")))
    names = wheel.namelist()
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert wheel.read(top_level).decode().split() == ["refine_agent"]
    assert {n.split("/")[0] for n in names} == {"refine_agent", top_level.split("/")[0]}
    assert "refine_agent/tools/judges/prompts/templates/critic.md" in names  # package data came along
