"""Tools as Ray actors, on Ray started on this machine (CPU only, loopback and this host's own address, no
network): once per test module, by the module's fixture. The folder is skipped without the ray extra."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray for the module (4 logical CPUs); ``--ray local`` in the CLI then uses it, and never stops it."""
    import ray

    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture
def release_pool() -> Iterator[None]:
    """What every CLI command does at its end, for tests that drive a Bench themselves: close the model pool,
    which holds the Ray connection (and with it, kills the actors the test's tools created)."""
    yield
    from refine_agent.pool import model_pool

    model_pool().close()
