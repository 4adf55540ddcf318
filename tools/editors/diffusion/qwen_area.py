"""Qwen-Image-Edit's conditioning size, as an option.

Its pipelines resize the input to about 1 MP (and, in the Plus pipeline, to 384² for the vision encoder)
through a module-level ``calculate_dimensions``; there is no argument for it. A 1 MP VAE encode is what the
model was trained with, but it costs about 40 s on a CPU, so ``condition_area`` scales those target areas.
The patch reads a thread-local value, so each replica's worker thread sets its own and a call without it
behaves exactly as stock diffusers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

TRAINED_AREA = 1024 * 1024
_MODULES = ("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit",
            "diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus")
_state = threading.local()
_patched: set[str] = set()
_lock = threading.Lock()


def _scaled(original: Callable[..., Any]) -> Callable[..., Any]:
    def calculate_dimensions(target_area: float, ratio: float) -> Any:
        scale = getattr(_state, "scale", None)
        if scale is not None:
            target_area = max(64 * 64, target_area * scale)  # sides stay at least about 64 pixels
        return original(target_area, ratio)

    return calculate_dimensions


def _install() -> None:
    import importlib

    with _lock:
        for name in _MODULES:
            if name in _patched:
                continue
            module = importlib.import_module(name)
            module.calculate_dimensions = _scaled(module.calculate_dimensions)  # type: ignore[attr-defined]
            _patched.add(name)


@contextmanager
def condition_area(area: int | None) -> Iterator[None]:
    """Within this block, in this thread, Qwen-Image-Edit conditions on ``area`` pixels (None: stock)."""
    if area is None:
        yield
        return
    _install()
    _state.scale = area / TRAINED_AREA
    try:
        yield
    finally:
        _state.scale = None
