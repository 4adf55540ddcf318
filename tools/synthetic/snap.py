"""Read scenes that went through lossy compression or resampling, as edits made by other systems do.

A scene saved as PNG is read exactly: every pixel is a palette colour or a foreign (artifact) one, and
nothing here changes that reading. JPEG, WebP and resampling add small colour errors everywhere and blend
neighbouring colours along every boundary, in bands a few pixels wide (chroma subsampling and ringing
reach furthest), and many of those blends are far from every palette colour. A pixel-exact reading would
call every edge a stray mark. So, for a lossy image:

1. pixels within MATCH_TOLERANCE of a palette colour take it;
2. a pixel near flat patches of two colours whose colour is a blend of those two (luma and chroma
   separately, with some overshoot) takes the colour it leans to;
3. leftover specks next to a flat patch join it.

A foreign blob is flat inside and no blend of its neighbours, so a real smudge stays an artifact.
"""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from scipy import ndimage

from .palette import MATCH_TOLERANCE, PALETTE, UNKNOWN, nearest_palette

MIN_NEAR = 0.9  # share of pixels within MATCH_TOLERANCE of the palette in a lossy scene (JPEG q30: 0.92+)
MAX_UNEXPLAINED = 0.03  # share left foreign after snapping (smudges of a failed edit are ~1%)
# Lossy coding keeps flat areas flat, so most of a compressed scene stays within a level or two of its
# palette colours (JPEG q80: 70%+), while sensor noise on a pale photo background does not (<25%).
FLAT_DISTANCE2 = 3 * 1.5**2
MIN_FLAT = 0.5
EDGE_REACH = 8.0  # px from flat patches within which a pixel may be a blend of them (JPEG blocks are 8 px)
OVERSHOOT = 0.25  # how far ringing may push a blend past either colour, as a share of their difference
BLEND_PASSES = 3  # thin tips may have no flat patch nearby until their neighbours are resolved
SPECK_REACH = 2.0  # px to the nearest flat patch for a leftover pixel to join it
BLEND_TOLERANCE = 16.0  # YCbCr distance from the nearest blend within which a pixel counts as one
ASPECT_TOLERANCE = 0.01
MIN_SIDE = 16  # px; smaller images are not scenes, and not worth resampling into one


def is_lossless(dist2: np.ndarray) -> bool:
    """No pixel is near a palette colour without being it: nothing blended, nothing compressed."""
    return not bool(((dist2 > 0) & (dist2 <= MATCH_TOLERANCE**2)).any())


def _flat(labels: np.ndarray) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood has one label (UNKNOWN counts as one, so smudges are flat inside)."""
    lo = ndimage.minimum_filter(labels, size=3, mode="nearest")
    hi = ndimage.maximum_filter(labels, size=3, mode="nearest")
    return lo == hi


_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])


def _ycc(rgb: np.ndarray) -> np.ndarray:
    """JPEG's luma/chroma split (without the offset): compression blurs chroma far more than luma."""
    return np.asarray(rgb, dtype=float) @ _YCC.T


def _blend_residual(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How far colours ``c`` (N x 3, YCbCr) are from a blend of ``a`` and ``b``, and which side they lean to.

    Luma and chroma may blend in different proportions (chroma subsampling) and overshoot a little
    (ringing, sharpening), so the blends form a patch, not a line, in colour space.
    """
    d = b - a
    dy, dc = d[0], d[1:]
    lo, hi = min(a[0], b[0]) - OVERSHOOT * abs(dy), max(a[0], b[0]) + OVERSHOOT * abs(dy)
    ry = np.maximum(0.0, np.maximum(lo - c[:, 0], c[:, 0] - hi))
    ty = (c[:, 0] - a[0]) / dy if abs(dy) > 1e-6 else np.zeros(len(c))
    nc = float(dc @ dc)
    tc = ((c[:, 1:] - a[1:]) @ dc) / nc if nc > 1e-6 else np.zeros(len(c))
    rc = c[:, 1:] - a[1:] - np.clip(tc, -OVERSHOOT, 1 + OVERSHOOT)[:, None] * dc
    residual = np.sqrt(ry**2 + (rc**2).sum(axis=1))
    # luma is sharp, so it says which side a pixel belongs to unless both colours have the same luma
    side = ty if abs(dy) >= 20 else tc
    return residual, side >= 0.5


def _blend_pass(colour: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One pass of boundary resolution; ``colour`` is the image in YCbCr."""
    known = _flat(labels) & (labels != UNKNOWN)
    present = [int(x) for x in np.unique(labels[known])]
    if not present:
        return labels
    near = {lab: ndimage.distance_transform_edt(~(known & (labels == lab))) <= EDGE_REACH for lab in present}
    ys, xs = np.nonzero(~known & np.logical_or.reduce(list(near.values())))
    c = colour[ys, xs]
    best = np.full(len(ys), np.inf)
    label_of = labels[ys, xs].copy()
    palette = _ycc(PALETTE)
    for i, a in enumerate(present):
        for b in present[i:]:
            sel = np.nonzero(near[a][ys, xs] & near[b][ys, xs])[0]
            if not len(sel):
                continue
            residual, to_b = _blend_residual(c[sel], palette[a], palette[b])
            better = residual < best[sel]
            best[sel[better]] = residual[better]
            label_of[sel[better]] = np.where(to_b[better], b, a)
    ok = best <= BLEND_TOLERANCE
    out = labels.copy()
    out[ys[ok], xs[ok]] = label_of[ok]
    return out


def snap_labels(arr: np.ndarray) -> np.ndarray:
    """Index into the palette of each pixel, or UNKNOWN; robust to mild compression and resampling."""
    idx, dist2 = nearest_palette(arr)
    labels = np.where(dist2 <= MATCH_TOLERANCE**2, idx, UNKNOWN)
    if is_lossless(dist2):
        return labels  # exact reading: no smoothing can hide a defect in a clean scene
    # Boundary bands: a foreign colour that no neighbouring pair explains stays an artifact. Passes
    # repeat because resolved pixels form new flat patches, which reach further into thin tips.
    colour = _ycc(arr)
    for _ in range(BLEND_PASSES):
        new = _blend_pass(colour, labels)
        if np.array_equal(new, labels):
            break
        labels = new
    # Specks: whatever is still outside every flat patch (isolated ringing pixels, mostly) joins the
    # nearest flat patch if it is close. A foreign blob is flat inside, so it keeps its size.
    flat = _flat(labels)
    if not flat.any():
        return labels
    dist, (iy, ix) = ndimage.distance_transform_edt(~flat, return_indices=True)
    speck = ~flat & (dist <= SPECK_REACH)
    labels[speck] = labels[iy[speck], ix[speck]]
    return labels


def snap(arr: np.ndarray) -> np.ndarray:
    """The scene redrawn in exact palette colours; artifact pixels keep their own colour."""
    if is_lossless(nearest_palette(arr)[1]):
        return np.array(arr, copy=True)
    labels = snap_labels(arr)
    out = np.array(arr, copy=True)
    known = labels != UNKNOWN
    out[known] = PALETTE[labels[known]].astype(np.uint8)
    return out


def looks_like_scene(arr: np.ndarray) -> bool:
    """A (possibly lossy) scene: nearly all pixels near the palette, and snapping explains nearly all.

    A photo of an object on a white table has the first but not the second: its object stays foreign.
    """
    _, dist2 = nearest_palette(arr[::4, ::4])  # a sample decides quickly for photos, which are most inputs
    if (dist2 <= MATCH_TOLERANCE**2).mean() < MIN_NEAR or (dist2 <= FLAT_DISTANCE2).mean() < MIN_FLAT:
        return False
    return bool((snap_labels(arr) == UNKNOWN).mean() <= MAX_UNEXPLAINED)


def same_aspect(size: tuple[int, int], other: tuple[int, int]) -> bool:
    (w, h), (w2, h2) = size, other
    return abs((w / h) / (w2 / h2) - 1.0) <= ASPECT_TOLERANCE


def fit(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """``arr`` resampled to ``size`` (width, height) if it has the same aspect ratio, else None.

    Shrinking averages areas (box filter), so each output pixel is a blend the snapping resolves;
    enlarging repeats pixels (nearest), which adds no new colours.
    """
    h, w = arr.shape[:2]
    if (w, h) == size:
        return arr
    if not same_aspect((w, h), size) or min(w, h) < MIN_SIDE:
        return None
    method = PILImage.Resampling.BOX if w >= size[0] else PILImage.Resampling.NEAREST
    return np.asarray(PILImage.fromarray(arr, "RGB").resize(size, method))
