"""Named colours of synthetic scenes. Shape colours are saturated, background colours pale, so every
pixel of a clean scene is exactly one palette colour and the two groups never look alike."""

from __future__ import annotations

import numpy as np

SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (235, 205, 30),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "purple": (140, 60, 180),
    "pink": (240, 110, 180),
    "brown": (125, 75, 35),
    "black": (30, 30, 30),
}

BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "light gray": (200, 200, 200),
    "beige": (240, 225, 190),
    "pale blue": (190, 215, 245),
    "pale green": (200, 235, 200),
    "pale pink": (250, 215, 225),
}

ALL_COLOURS: dict[str, tuple[int, int, int]] = {**SHAPE_COLOURS, **BACKGROUND_COLOURS}
COLOUR_NAMES: list[str] = list(ALL_COLOURS)
PALETTE = np.array([ALL_COLOURS[n] for n in COLOUR_NAMES], dtype=np.int32)
UNKNOWN = -1  # label of a pixel that matches no palette colour (an artifact)
MATCH_TOLERANCE = 24.0  # RGB distance within which a pixel counts as a palette colour


def rgb(name: str) -> tuple[int, int, int]:
    return ALL_COLOURS[name]


def pack(arr: np.ndarray) -> np.ndarray:
    """RGB triples packed into one int per pixel (0xRRGGBB)."""
    a = arr.astype(np.int32)
    return (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]


PALETTE_KEYS = pack(PALETTE)


_ORDER = np.argsort(PALETTE_KEYS)
_SORTED_KEYS = PALETTE_KEYS[_ORDER]


def nearest_palette(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each pixel's nearest palette colour and its squared RGB distance.

    Exact palette colours (nearly every pixel of a clean scene) are looked up directly; only the rest pay
    for a nearest-colour search, over their distinct values.
    """
    keys = pack(arr).ravel()
    pos = np.minimum(np.searchsorted(_SORTED_KEYS, keys), len(_SORTED_KEYS) - 1)
    exact = _SORTED_KEYS[pos] == keys
    idx = _ORDER[pos]
    dist2 = np.zeros(keys.shape, dtype=np.int64)
    if not exact.all():
        rest, inverse = np.unique(keys[~exact], return_inverse=True)
        colours = np.stack([(rest >> 16) & 255, (rest >> 8) & 255, rest & 255], axis=1)
        d2 = ((colours[:, None, :] - PALETTE[None, :, :]) ** 2).sum(axis=2)
        near = d2.argmin(axis=1)
        idx[~exact] = near[inverse]
        dist2[~exact] = d2[np.arange(len(near)), near][inverse]
    return idx.reshape(arr.shape[:2]), dist2.reshape(arr.shape[:2])


def label_pixels(arr: np.ndarray) -> np.ndarray:
    """Index into COLOUR_NAMES of each pixel's palette colour, or UNKNOWN if none is close."""
    idx, dist2 = nearest_palette(arr)
    return np.where(dist2 <= MATCH_TOLERANCE**2, idx, UNKNOWN)


def far_from_palette(rng: np.random.Generator, min_distance: float = 70.0) -> tuple[int, int, int]:
    """A random colour that no palette colour resembles, for simulated artifacts."""
    while True:
        c = rng.integers(0, 256, size=3)
        if np.sqrt(((PALETTE - c) ** 2).sum(axis=1)).min() >= min_distance:
            return int(c[0]), int(c[1]), int(c[2])
