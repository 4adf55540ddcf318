"""Photo-like test images made procedurally (smooth gradients, texture and coloured regions), since tests
never download anything."""

from __future__ import annotations

import numpy as np

from refine_agent.images import Image


def photo_array(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    base = np.stack([90 + 60 * xx / w, 80 + 50 * yy / h, 110 - 30 * xx / w], axis=2)
    base += rng.normal(0, 6, (h, w, 3))
    blob = (xx - w * 0.35) ** 2 + (yy - h * 0.5) ** 2 < (h * 0.22) ** 2
    base[blob] = (190, 45, 40) + rng.normal(0, 8, (int(blob.sum()), 3))  # a red object
    leaf = (xx - w * 0.75) ** 2 / 2 + (yy - h * 0.4) ** 2 < (h * 0.18) ** 2
    base[leaf] = (50, 150, 60) + rng.normal(0, 8, (int(leaf.sum()), 3))  # a green one
    return np.clip(base, 0, 255).astype(np.uint8)


def photo(seed: int = 0, h: int = 96, w: int = 128) -> Image:
    return Image(photo_array(h, w, seed))
