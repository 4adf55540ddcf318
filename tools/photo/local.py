"""Local changes outside the requested edit: what a global fidelity average (SSIM over the whole frame) dilutes.

Every classic op except blur/sharpen is a global colour mapping: each output pixel is a function of the same
source pixel's colour, the same function everywhere. So the checker fits that function (a cubic polynomial in
RGB, then a robust per-colour correction for gamut clipping) after the measured blur/sharpen, and looks for
connected areas the fit cannot explain: a pasted patch, a region that was changed alone, a smudge. Inside the
areas a recolouring is asked to change, only the hue may move, so there the fit predicts each pixel's max and
min channel (HSV value and saturation) instead of its colour. Each candidate area is then checked against its
colour twins elsewhere in the frame: a global edit treats equal colours equally, a local change does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import (
    binary_dilation,
    binary_opening,
    find_objects,
    gaussian_filter,
    gaussian_gradient_magnitude,
    label,
    maximum_filter,
)
from scipy.spatial import cKDTree

from . import measure as M
from .grammar import PhotoPlan
from .ops import blur_sigma, colour_weight, luma, rgb_to_hsv

WORK_SIDE = 256      # residuals are measured at about this size: small enough to average out noise
MIN_AREA = 0.002     # a cluster must cover this fraction of the frame (correct edits stay below 0.0005)
MIN_CHANGE = 0.06    # ... of pixels the global fit misses by more than this (correct edits: < 0.05 at p99)
EDGE_SLACK = 1.0     # ... plus this much of the source's local contrast (gradient per pixel at work size)
UNIQUE_CHANGE = 0.2  # an area whose source colours occur nowhere else must miss the fit by this much
TWIN_DISTANCE = 0.04  # source colours this close (max channel difference) are twins
_LUT_SIDE = 8        # nodes per channel of the per-colour correction
_MAX_CANDIDATES = 16  # the largest candidate areas checked against their twins (a wrecked image has many)
_ROWS, _COLS = ("top", "middle", "bottom"), ("left", "middle", "right")


@dataclass
class Cluster:
    """One connected area of unexplained change, in the edited image's pixels."""

    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    fraction: float                  # of the frame
    change: float                    # mean unexplained change, 0-1 per channel
    where: str

    def data(self) -> dict[str, object]:
        return {"where": self.where, "bbox": list(self.bbox), "fraction": round(self.fraction, 4),
                "change": round(self.change, 3)}


@dataclass
class LocalChanges:
    clusters: list[Cluster] = field(default_factory=list)
    mask: np.ndarray | None = None  # work-size mask of the clusters, to keep them out of the other checks
    residual_p99: float = 0.0

    @property
    def mass(self) -> float:
        """Area weighted by how strong the change is: a faint local drift counts less than a pasted patch."""
        return sum(c.fraction * min(1.0, max(0.0, (c.change - 0.04) / 0.16)) for c in self.clusters)

    def penalty(self) -> float:
        """Points off fidelity: 3 at the smallest strong cluster, about 6.5 at 1% of the frame, at most 8."""
        if not self.clusters:
            return 0.0
        return float(min(8.0, max(1.0, 3.0 + 1.5 * math.log2(max(self.mass, 1e-9) / MIN_AREA))))

    def mask_at(self, shape: tuple[int, ...]) -> np.ndarray:
        """The cluster mask at another size (nearest neighbour), all False without clusters."""
        if self.mask is None or not self.clusters:
            return np.zeros(shape[:2], dtype=bool)
        rows = np.arange(shape[0]) * self.mask.shape[0] // shape[0]
        cols = np.arange(shape[1]) * self.mask.shape[1] // shape[1]
        return self.mask[np.ix_(rows, cols)]


def _spatial(src: np.ndarray, blur: float, sharpen: float) -> np.ndarray:
    """The source with the measured blur (sigma, px) or unsharp mask (amount, on luma) applied."""
    if blur > 0.05:
        return gaussian_filter(src, (blur, blur, 0), mode="reflect").astype(np.float32)
    if abs(sharpen) > 1e-3:
        y = luma(src)
        detail = y - gaussian_filter(y, blur_sigma(*src.shape[:2]), mode="reflect")
        return (src + sharpen * detail[..., None]).astype(np.float32)
    return src


def _features(x: np.ndarray) -> np.ndarray:
    """Cubic polynomial terms of RGB (n x 20)."""
    r, g, b = (x[:, i].astype(np.float64) for i in range(3))
    one = np.ones_like(r)
    return np.stack([one, r, g, b, r * r, g * g, b * b, r * g, r * b, g * b, r ** 3, g ** 3, b ** 3, r * g * b,
                     r * r * g, r * r * b, g * g * r, g * g * b, b * b * r, b * b * g], axis=1)


def _colour_table(colours: np.ndarray, resid: np.ndarray, fit: np.ndarray) -> np.ndarray:
    """Per-colour median of ``resid`` over the ``fit`` pixels, read back trilinearly for every pixel."""
    g = _LUT_SIDE
    q = np.clip(colours, 0.0, 1.0) * (g - 1)
    node = np.rint(q[fit]).astype(np.int64)
    keys = (node[:, 0] * g + node[:, 1]) * g + node[:, 2]
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], resid[fit][order]
    table = np.zeros((g ** 3, resid.shape[1]))
    uniq, start, count = np.unique(keys, return_index=True, return_counts=True)
    for k, s, c in zip(uniq, start, count, strict=True):
        if c >= 12:  # a median needs a few pixels
            table[k] = np.median(vals[s:s + c], axis=0)
    table = table.reshape(g, g, g, -1)
    lo = np.clip(np.floor(q).astype(np.int64), 0, g - 2)
    f = q - lo
    out = np.zeros_like(resid)
    for corner in np.ndindex(2, 2, 2):
        w = np.prod([f[:, i] if corner[i] else 1 - f[:, i] for i in range(3)], axis=0)
        out += w[:, None] * table[lo[:, 0] + corner[0], lo[:, 1] + corner[1], lo[:, 2] + corner[2]]
    return out


def _unexplained(colours: np.ndarray, target: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Per-pixel max |target - fit| of the best global colour mapping, fitted robustly on ``sel``."""
    x = _features(colours)
    y = target.astype(np.float64)
    fit = sel.copy()
    pred = np.zeros_like(y)
    for _ in range(3):  # refit without what the last fit could not explain, so a patch cannot bend the curve
        xf = x[fit]  # normal equations with a touch of ridge: 20 unknowns, much faster than an SVD solve
        coef = np.linalg.solve(xf.T @ xf + 1e-6 * len(xf) * np.eye(x.shape[1]), xf.T @ y[fit])
        pred = x @ coef
        res = np.abs(y - pred).max(axis=1)
        fit = sel & (res < max(0.03, 4.4 * float(np.median(res[sel]))))
    # Gamut clipping bends the mapping in ways a polynomial misses; a per-colour median catches it, fitted only
    # on pixels the polynomial nearly explains and capped, so it cannot learn a patch's colour.
    near = sel & (np.abs(y - pred).max(axis=1) < 0.15)
    pred += np.clip(_colour_table(colours, y - pred, near), -0.1, 0.1)
    return np.abs(y - np.clip(pred, 0.0, 1.0)).max(axis=1)


def _twin_change(colours: np.ndarray, rgb: np.ndarray, inside: np.ndarray, part: np.ndarray,
                 away: np.ndarray) -> float | None:
    """How differently the ``part`` pixels were edited from their colour twins away from it: the mean max-channel
    difference to their twins' median edit (max and min channel only inside a recolouring), or None when too
    few of them have twins to tell."""
    if away.sum() < 64:
        return None
    dist, idx = cKDTree(colours[away]).query(colours[part], k=8, p=np.inf, distance_upper_bound=TWIN_DISTANCE)
    ok = np.isfinite(dist)
    has = ok.sum(axis=1) >= 3
    if has.mean() < 0.25:
        return None
    twin_idx = np.where(ok, idx, 0)[has]

    def miss(values: np.ndarray) -> np.ndarray:
        twins = values[away][twin_idx].astype(np.float64)
        twins[~ok[has]] = np.nan
        return np.abs(values[part][has] - np.nanmedian(twins, axis=1)).max(axis=1)

    vm = np.stack([rgb.max(axis=1), rgb.min(axis=1)], axis=1)
    return float(np.where(inside[part][has], miss(vm), miss(rgb)).mean())


def _edge_strength(x: np.ndarray) -> np.ndarray:
    """Local contrast of the (modelled) source: the largest channel gradient nearby, per pixel."""
    grad = np.max([gaussian_gradient_magnitude(x[..., c], 1.0) for c in range(3)], axis=0)
    return maximum_filter(grad, size=5)


def _where(cy: float, cx: float) -> str:
    r, c = min(2, int(cy * 3)), min(2, int(cx * 3))
    return "center" if (r, c) == (1, 1) else f"{_ROWS[r]}-{_COLS[c]}"


def find_local_changes(src: np.ndarray, edt: np.ndarray, plan: PhotoPlan, blur: float = 0.0,
                       sharpen: float = 0.0) -> LocalChanges:
    """Connected areas where ``edt`` (aligned, same size as ``src``) is not the global edit of ``src``."""
    big = M.work_size(*src.shape[:2], 1024)  # the blur/sharpen model runs near full resolution, scaled
    scale = math.sqrt(big[0] * big[1] / (src.shape[0] * src.shape[1]))
    model = _spatial(M.resize(src, *big), blur * scale, sharpen)
    h, w = M.work_size(*src.shape[:2], WORK_SIDE)
    if h * w < 256:
        return LocalChanges()
    s, e = M.resize(model, h, w), M.resize(edt, h, w)
    hsv = rgb_to_hsv(np.clip(s, 0.0, 1.0))
    region, ramp = np.zeros((h, w), dtype=bool), np.zeros((h, w), dtype=bool)
    for op in plan.ops:
        if op.op == "recolor":
            weight = colour_weight(*hsv, str(op.params["source"]))
            region |= weight > 0
            ramp |= (weight > 0) & (weight < 0.9)
    if region.any():
        region = binary_dilation(region, iterations=2)
        # Where the hue mask fades, noisy pixels go either way and a downsampled pixel is a mix: no rule holds.
        ramp = binary_dilation(ramp, iterations=1)
    colours, flat_e = s.reshape(-1, 3), e.reshape(-1, 3)
    resid = np.zeros(h * w)
    inside, outside = (region & ~ramp).ravel(), (~region).ravel()
    if outside.sum() >= 64:
        resid[outside] = _unexplained(colours, flat_e, outside)[outside]
    if inside.sum() >= 64:  # a recolouring keeps each pixel's value and saturation, i.e. its max and min channel
        vm = np.stack([flat_e.max(axis=1), flat_e.min(axis=1)], axis=1)
        resid[inside] = _unexplained(colours, vm, inside)[inside]
    resid_map = gaussian_filter(resid.reshape(h, w), 1.0)
    # Near edges and texture, any other kernel (sharpening, resampling, JPEG's chroma subsampling) moves pixels
    # a colour mapping cannot explain: allow more there. Thin lines and specks are not areas either.
    allowed = MIN_CHANGE + EDGE_SLACK * _edge_strength(s)
    changed = binary_opening(resid_map > allowed, iterations=1)
    labels, _ = label(changed, structure=np.ones((3, 3)))
    out = LocalChanges(mask=np.zeros((h, w), dtype=bool), residual_p99=float(np.percentile(resid_map, 99)))
    sy, sx = edt.shape[0] / h, edt.shape[1] / w
    areas = np.bincount(labels.ravel())[1:] / (h * w)
    boxes = find_objects(labels)
    for i in np.argsort(-areas)[:_MAX_CANDIDATES]:
        sl, frac = boxes[i], float(areas[i])
        if sl is None or frac < MIN_AREA:
            continue
        # A global edit maps equal colours equally: compare with the same source colours elsewhere. Colours found
        # only here could be a global curve the polynomial misses (a gamut-clipped sun), so only a big miss counts.
        whole = labels == i + 1
        away = ~binary_dilation(whole, iterations=3).ravel() & (inside | outside)
        change = _twin_change(colours, flat_e, inside, whole.ravel(), away)
        if change is None:
            change = float(resid_map[whole].mean())
            if change < UNIQUE_CHANGE:
                continue
        elif change < MIN_CHANGE:
            continue
        ys, xs = np.nonzero(whole)
        bbox = (int(sl[1].start * sx), int(sl[0].start * sy), math.ceil(sl[1].stop * sx), math.ceil(sl[0].stop * sy))
        out.clusters.append(Cluster(bbox=bbox, fraction=frac, change=change,
                                    where=_where(float(ys.mean()) / h, float(xs.mean()) / w)))
        out.mask |= whole
    out.clusters.sort(key=lambda c: -c.fraction * c.change)
    return out
