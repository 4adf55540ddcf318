"""Tests that load tiny random-weight models through the same code users hit. They need the ``local`` extra
(torch, diffusers, transformers) and are marked ``models``: CI runs them; ``pytest -m "not models"`` skips
them for a quick run. The pipelines are built once per session, offline (tests/tiny_pipelines.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the local extra (torch, diffusers) is not installed")
pytest.importorskip("diffusers", reason="the local extra (torch, diffusers) is not installed")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.models)


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # two threads on a shared 2-core machine are slower, not faster


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``pipelines(name)``: the folder of a tiny saved pipeline, built on first use in this session."""
    from tests.tiny_pipelines import build

    root = tmp_path_factory.mktemp("pipelines")
    return lambda name: build(name, root)


@pytest.fixture(scope="session")
def vlms(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``vlms(name)``: the folder of a tiny saved vision-language model (qwen25_vl, qwen3_vl)."""
    pytest.importorskip("transformers", reason="the local extra (transformers) is not installed")
    from tests.tiny_vlms import build

    root = tmp_path_factory.mktemp("vlms")
    return lambda name: build(name, root)


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, str]:
    """A synthetic scene saved as a PNG, and its instruction (a colour change), for the CLI tests."""
    from refine_agent.tools.synthetic.generate import make_sample

    sample = make_sample(1, seed=0)
    path = tmp_path / "scene.png"
    sample.image().save(path)
    return path, sample.instruction
