"""Pixel operations of the classic editor (numpy/scipy only, float32 RGB in [0, 1], deterministic).

Every strength-bearing op is parameterised so that strengths *add up* when the op is applied again to its own
output: brightness is a gamma whose log is proportional to strength, contrast a logit stretch whose log-gain is,
saturation a chroma gain, warmth a log white-balance gain, blur a Gaussian whose variance is proportional to
strength. So "slightly brighter" twice is close to "brighter" once, which is what a critic's re-edits rely on.
The photo checker measures the same quantities, expressed back in strength units.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from refine_agent.errors import UnsupportedInstructionError

from .grammar import COLOURS, PhotoOp, PhotoPlan

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
BRIGHT_K = 0.25     # brightness: gamma = exp(-direction * BRIGHT_K * strength)
CONTRAST_K = 0.25   # contrast: logit gain = exp(direction * CONTRAST_K * strength)
SAT_K = 0.35        # saturation: chroma gain = exp(direction * SAT_K * strength)
WARM_K = 0.08       # warmth: R gain exp(+k s), B gain exp(-k s)
SHARP_K = 0.8       # sharpen: unsharp-mask amount per unit strength
SEPIA_TINT = np.array([1.25, 0.94, 0.63], dtype=np.float32)  # luma-neutral (weights sum to ~1)
_EPS = 1.0 / 512.0


def to_float(arr: np.ndarray) -> np.ndarray:
    return arr.astype(np.float32) / np.float32(255.0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def luma(x: np.ndarray) -> np.ndarray:
    return (x @ LUMA).astype(np.float32)


def blur_sigma(height: int, width: int) -> float:
    """The Gaussian sigma of "blur" at strength 1: grows with the image so the look is size-independent."""
    return max(1.2, 0.004 * max(height, width))


def fit_gamut(y: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """``y + chroma`` with each pixel's chroma shrunk toward grey just enough to fit [0, 1].

    Shrinking along the chroma vector keeps luma and hue, unlike per-channel clipping.
    """
    y = np.clip(y, 0.0, 1.0)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(chroma > 1e-7, (1.0 - y) / chroma, np.inf)
        down = np.where(chroma < -1e-7, y / -chroma, np.inf)
    t = np.clip(np.minimum(up, down).min(axis=-1, keepdims=True), 0.0, 1.0)
    return np.clip(y + chroma * t, 0.0, 1.0).astype(np.float32)


def set_luma(x: np.ndarray, y_new: np.ndarray) -> np.ndarray:
    """Give each pixel a new luma, scaling its chroma by the same ratio (keeps saturation and hue)."""
    y = luma(x)
    # Capped so brightening near-black pixels does not blow their noise up into colour speckle.
    ratio = np.minimum(y_new / np.maximum(y, 1e-4), 4.0)
    return fit_gamut(y_new, (x - y[..., None]) * ratio[..., None])


def brightness(x: np.ndarray, direction: int, strength: float) -> np.ndarray:
    gamma = math.exp(-direction * BRIGHT_K * strength)
    return set_luma(x, np.clip(luma(x), 0.0, 1.0) ** np.float32(gamma))


def logit(y: np.ndarray) -> np.ndarray:
    y = np.clip(y, _EPS, 1.0 - _EPS)
    return np.log(y / (1.0 - y))


def contrast(x: np.ndarray, direction: int, strength: float) -> np.ndarray:
    """A sigmoid contrast curve: scale logit(luma) about the mean, so it never clips."""
    gain = math.exp(direction * CONTRAST_K * strength)
    y = luma(x)
    pivot = float(logit(np.array(np.clip(y.mean(), 0.25, 0.75))))
    z = pivot + gain * (logit(y) - pivot)
    return set_luma(x, (1.0 / (1.0 + np.exp(-z))).astype(np.float32))


def saturation(x: np.ndarray, direction: int, strength: float) -> np.ndarray:
    y = luma(x)
    gain = np.float32(math.exp(direction * SAT_K * strength))
    return fit_gamut(y, (x - y[..., None]) * gain)


def grayscale(x: np.ndarray) -> np.ndarray:
    return np.repeat(luma(x)[..., None], 3, axis=-1)


def sepia(x: np.ndarray) -> np.ndarray:
    y = luma(x)
    return fit_gamut(y, y[..., None] * (SEPIA_TINT - 1.0))


def warmth(x: np.ndarray, direction: int, strength: float) -> np.ndarray:
    """White-balance gains on R and B, then rescale each pixel back to its luma (no brightness change)."""
    k = direction * WARM_K * strength
    gains = np.exp(np.array([k, 0.0, -k], dtype=np.float32))
    y = luma(x)
    tinted = x * gains
    tinted = tinted * (y / np.maximum(luma(tinted), 1e-4))[..., None]
    return fit_gamut(y, tinted - y[..., None])


def sharpness(x: np.ndarray, direction: int, strength: float) -> np.ndarray:
    sigma0 = blur_sigma(x.shape[0], x.shape[1])
    if direction < 0:
        sigma = sigma0 * math.sqrt(strength)  # variances add, so repeated blurs compose
        return gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect").astype(np.float32)
    # Unsharp mask on luma only, so edges do not get colour fringes.
    y = luma(x)
    detail = y - gaussian_filter(y, sigma=sigma0, mode="reflect")
    y_new = np.clip(y + SHARP_K * strength * detail, 0.0, 1.0)
    return np.clip(x + (y_new - y)[..., None], 0.0, 1.0).astype(np.float32)


# -- geometry -------------------------------------------------------------------------------------------------

def rotate(a: np.ndarray, angle_cw: int) -> np.ndarray:
    return np.rot90(a, k=-(angle_cw // 90) % 4, axes=(0, 1))


def flip(a: np.ndarray, axis: str) -> np.ndarray:
    return a[:, ::-1] if axis == "horizontal" else a[::-1]


def geometry(a: np.ndarray, op: PhotoOp) -> np.ndarray:
    if op.op == "rotate":
        return rotate(a, int(op.params["angle"]))
    return flip(a, str(op.params["axis"]))


# -- colour replacement ---------------------------------------------------------------------------------------

def rgb_to_hsv(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1]."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    c = v - x.min(axis=-1)
    safe = np.where(c > 1e-7, c, 1.0)
    h = np.where(v == r, (g - b) / safe % 6.0, np.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(c > 1e-7, h * 60.0, 0.0) % 360.0
    s = np.where(v > 1e-7, c / np.where(v > 1e-7, v, 1.0), 0.0)
    return h.astype(np.float32), s.astype(np.float32), v.astype(np.float32)


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    hp = (h % 360.0) / 60.0
    c = v * s
    xx = c * (1.0 - np.abs(hp % 2.0 - 1.0))
    z = np.zeros_like(c)
    sector = np.floor(hp).astype(np.int64) % 6
    table = [(c, xx, z), (xx, c, z), (z, c, xx), (z, xx, c), (xx, z, c), (c, z, xx)]
    out = np.zeros(h.shape + (3,), dtype=np.float32)
    for i, (r, g, b) in enumerate(table):
        m = sector == i
        out[m] = np.stack([r[m], g[m], b[m]], axis=-1)
    return np.clip(out + (v - c)[..., None], 0.0, 1.0)


def hue_distance(h: np.ndarray, centre: float) -> np.ndarray:
    d = np.abs((h - centre) % 360.0)
    return np.minimum(d, 360.0 - d)


def _ramp(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def colour_weight(h: np.ndarray, s: np.ndarray, v: np.ndarray, name: str) -> np.ndarray:
    """Soft mask of pixels of the named colour: near its hue, saturated and not too dark."""
    centre, inner, outer = COLOURS[name]
    hue_w = 1.0 - _ramp(hue_distance(h, centre), inner, outer)
    return (hue_w * _ramp(s, 0.15, 0.3) * _ramp(v, 0.08, 0.18)).astype(np.float32)


def has_colour(weight: np.ndarray) -> bool:
    """Enough clearly-coloured pixels to recolour (and to verify a recolouring)."""
    return int((weight >= 0.9).sum()) >= max(1, int(1e-4 * weight.size))


def recolor(x: np.ndarray, source: str, target: str) -> np.ndarray:
    h, s, v = rgb_to_hsv(x)
    w = colour_weight(h, s, v, source)
    if not has_colour(w):
        raise UnsupportedInstructionError(
            f"classic editor found no {source} pixels to recolour (it selects clearly {source}, "
            "saturated pixels by hue)")
    shift = (COLOURS[target][0] - h + 180.0) % 360.0 - 180.0  # shortest way round the hue circle
    return hsv_to_rgb(h + w * shift, s, v)


# -- plans ----------------------------------------------------------------------------------------------------

def apply_op(x: np.ndarray, op: PhotoOp, scale: float = 1.0) -> np.ndarray:
    s = op.strength * scale
    if op.op in ("rotate", "flip"):
        return np.ascontiguousarray(geometry(x, op))
    if op.op == "grayscale":
        return grayscale(x)
    if op.op == "sepia":
        return sepia(x)
    if op.op == "recolor":
        return recolor(x, str(op.params["source"]), str(op.params["target"]))
    fn = {"brightness": brightness, "contrast": contrast, "saturation": saturation, "warmth": warmth,
          "sharpness": sharpness}[op.op]
    return fn(x, op.direction, s)


def apply_plan(arr: np.ndarray, plan: PhotoPlan, scale: float = 1.0) -> np.ndarray:
    """Apply every op in order to a uint8 RGB array; quantise once at the end."""
    x = to_float(arr)
    for op in plan.ops:
        x = apply_op(x, op, scale)
    return to_uint8(x)
