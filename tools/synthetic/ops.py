"""Pixel operations on synthetic scenes, in place on an RGB uint8 array: recolour, erase, draw, resize,
replace, change the background, add smudges, clean smudges. Each can be applied partially (a fraction of
the region), which is how the sim editor simulates half-done edits."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .detect import DetectedObject, DetectedScene
from .palette import COLOUR_NAMES, UNKNOWN, far_from_palette, label_pixels, rgb
from .scene import CELL, paint_shape


def partial_mask(mask: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The part of ``mask`` on one side of a random straight cut, holding about ``fraction`` of it."""
    if fraction >= 1.0:
        return mask
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return mask
    angle = rng.uniform(0, 2 * np.pi)
    proj = xs * np.cos(angle) + ys * np.sin(angle)
    cut = np.quantile(proj, fraction)
    out = np.zeros_like(mask)
    keep = proj <= cut
    out[ys[keep], xs[keep]] = True
    return out


def local_background(arr: np.ndarray, scene: DetectedScene, mask: np.ndarray) -> tuple[int, int, int]:
    """The background colour around a region (backgrounds can be half-changed, so look locally)."""
    ring = ndimage.binary_dilation(mask, iterations=4) & ~mask & scene.background_mask
    if not ring.any():
        return rgb(scene.background)
    labels = label_pixels(arr[ring][None])[0]
    labels = labels[labels != UNKNOWN]
    if labels.size == 0:
        return rgb(scene.background)
    return rgb(COLOUR_NAMES[int(np.bincount(labels).argmax())])


def centre(obj: DetectedObject) -> tuple[float, float]:
    x0, y0, x1, y1 = obj.bbox
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0


def recolour(arr: np.ndarray, mask: np.ndarray, colour: str) -> None:
    arr[mask] = rgb(colour)


def erase(arr: np.ndarray, scene: DetectedScene, mask: np.ndarray) -> None:
    arr[mask] = local_background(arr, scene, mask)


def draw(arr: np.ndarray, shape: str, colour: str, extent: float, cx: float, cy: float) -> None:
    paint_shape(arr, shape, cx, cy, extent, rgb(colour))


def redraw(arr: np.ndarray, scene: DetectedScene, obj: DetectedObject, *, shape: str | None = None,
           colour: str | None = None, extent: float | None = None) -> None:
    """Erase an object and draw it again, with a new shape, colour or size, at the same centre."""
    mask = scene.mask(obj)
    erase(arr, scene, mask)
    cx, cy = centre(obj)
    new_shape = shape or (obj.shape if obj.shape != "irregular" else "square")
    draw(arr, new_shape, colour or obj.colour, extent or obj.extent, cx, cy)


def change_background(arr: np.ndarray, scene: DetectedScene, colour: str, fraction: float,
                      rng: np.random.Generator) -> None:
    arr[partial_mask(scene.background_mask, fraction, rng)] = rgb(colour)


def add_smudges(arr: np.ndarray, rng: np.random.Generator, count: int = 1,
                region: tuple[int, int, int, int] | None = None) -> list[tuple[int, int]]:
    """Paint ``count`` stray blotches in colours no palette colour resembles; return their centres."""
    h, w = arr.shape[:2]
    x0, y0, x1, y1 = region or (0, 0, w, h)
    centres = []
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(count):
        cx, cy = rng.uniform(x0 + 6, max(x0 + 7, x1 - 6)), rng.uniform(y0 + 6, max(y0 + 7, y1 - 6))
        rx, ry = rng.uniform(3, 8, size=2)
        blob = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        speck = rng.random((h, w)) < 0.35
        arr[blob] = far_from_palette(rng)
        arr[blob & speck] = far_from_palette(rng)
        centres.append((int(cx), int(cy)))
    return centres


def cell_region(cell: tuple[int, int] | None, width: int, height: int,
                margin: int = CELL // 2) -> tuple[int, int, int, int]:
    """A cell of the 3x3 grid grown by ``margin`` pixels, or the whole image for None."""
    if cell is None:
        return 0, 0, width, height
    r, c = cell
    return (max(0, c * CELL - margin), max(0, r * CELL - margin), min(width, (c + 1) * CELL + margin),
            min(height, (r + 1) * CELL + margin))


def clean_smudges(arr: np.ndarray, scene: DetectedScene, region: tuple[int, int, int, int],
                  keep_fraction: float = 0.0, rng: np.random.Generator | None = None) -> int:
    """Replace artifact pixels inside ``region`` with the nearest clean pixel. Return pixels cleaned.

    With ``keep_fraction`` > 0, that share of the smudges (largest last) is left in place.
    """
    x0, y0, x1, y1 = region
    target = np.zeros_like(scene.artifacts)
    clusters = [c for c in scene.clusters
                if c.bbox[0] < x1 and c.bbox[2] > x0 and c.bbox[1] < y1 and c.bbox[3] > y0]
    n_keep = int(round(len(clusters) * keep_fraction))
    for c in clusters[n_keep:] if n_keep else clusters:
        cx0, cy0, cx1, cy1 = c.bbox
        target[cy0:cy1, cx0:cx1] |= scene.artifacts[cy0:cy1, cx0:cx1]
    if not target.any():
        return 0
    # Every artifact pixel counts as missing data, so fills copy only clean pixels.
    _, (iy, ix) = ndimage.distance_transform_edt(scene.artifacts, return_indices=True)
    arr[target] = arr[iy[target], ix[target]]
    return int(target.sum())
