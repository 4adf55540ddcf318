"""Reference-free image measurements for the photo checker: alignment, SSIM, blur/sharpen fits, artifacts.

All functions take float arrays in [0, 1]. Everything is deterministic and uses numpy/scipy/Pillow only.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage
from scipy.ndimage import gaussian_filter, laplace, maximum_filter, minimum_filter
from scipy.optimize import minimize_scalar

from .grammar import PhotoOp
from .ops import geometry, luma

_C1, _C2 = 0.01 ** 2, 0.03 ** 2
FIT_SIDE = 256  # blur/sharpen fits run on a central crop of about this size: detail must stay full-resolution
GEO_SIDE = 48   # rotations/flips are compared at about this size (a panorama's short side keeps >= 12 px)
ASPECT_TOL = 0.03  # log aspect-ratio change an editor's resize may make on top of rounding to whole pixels
# Another transform is reported only when it beats every accepted one by this margin and the accepted ones fit
# poorly: correct edits keep their own transform >= 0.4 ahead of the rest.
GEO_MARGIN, GEO_GOOD = 0.08, 0.85

DIHEDRAL = {
    "identity": lambda a: a, "rotate 90 clockwise": lambda a: np.rot90(a, -1, axes=(0, 1)),
    "rotate 180": lambda a: np.rot90(a, 2, axes=(0, 1)),
    "rotate 90 counterclockwise": lambda a: np.rot90(a, 1, axes=(0, 1)),
    "flip horizontal": lambda a: a[:, ::-1], "flip vertical": lambda a: a[::-1],
    "transpose": lambda a: np.swapaxes(a, 0, 1),
    "anti-transpose": lambda a: np.rot90(a, 2, axes=(0, 1)).swapaxes(0, 1),
}
SWAPS_SIDES = {"rotate 90 clockwise", "rotate 90 counterclockwise", "transpose", "anti-transpose"}
_PROBE = np.arange(6).reshape(2, 3)


def transform_name(ops: list[PhotoOp]) -> str:
    """The single dihedral transform that a sequence of rotate/flip ops amounts to."""
    out = _PROBE
    for op in ops:
        out = geometry(out, op)
    return next(name for name, fn in DIHEDRAL.items() if np.array_equal(fn(_PROBE), out))


def accepted_transforms(ops: list[PhotoOp]) -> set[str]:
    """Transforms that satisfy the ops; a 90/270 rotation without a stated direction may go either way."""
    variants: list[list[PhotoOp]] = []
    for op in ops:
        alt = [op]
        if op.op == "rotate" and not op.params.get("explicit") and int(op.params["angle"]) in (90, 270):
            alt.append(op.model_copy(update={"params": {**op.params, "angle": 360 - int(op.params["angle"])}}))
        variants.append(alt)
    return {transform_name(list(combo)) for combo in itertools.product(*variants)}


def resize(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box/bilinear resize of a float image (2-D or RGB) with Pillow, channel by channel."""
    if a.shape[:2] == (height, width):
        return a
    shrink = a.shape[0] >= height and a.shape[1] >= width
    method = PILImage.Resampling.BOX if shrink else PILImage.Resampling.BILINEAR
    chans = a[..., None] if a.ndim == 2 else a
    out = [np.asarray(PILImage.fromarray(np.ascontiguousarray(chans[..., c], dtype=np.float32), "F")
                      .resize((width, height), method)) for c in range(chans.shape[-1])]
    res = np.stack(out, axis=-1).astype(np.float32)
    return res[..., 0] if a.ndim == 2 else res


def work_size(h: int, w: int, side: int) -> tuple[int, int]:
    """A working size: the long side fit to ``side`` for ordinary frames; for a panorama or a strip, larger,
    so its short side keeps at least side / 4 pixels instead of rounding away (the long side then at most
    8 * side). Never upscaled, and symmetric in h and w, so a rotated image gets the transposed size."""
    scale = min(1.0, side / max(h, w))
    if min(h, w) * scale < side / 4:
        scale = min(1.0, side / 4 / min(h, w), 8 * side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if den < 1e-9:
        return 1.0 if float(np.abs(a).max() + np.abs(b).max()) < 1e-6 else 0.0
    return float((a * b).sum()) / den


def structure_features(y: np.ndarray) -> np.ndarray:
    """Local structure of a 2-D image at about GEO_SIDE px (``work_size``): high-pass, divided by the local contrast.

    Dividing by the local contrast makes it blind to tone changes, even local ones (a darkened half keeps
    its structure), so only where things are, not how bright they are, decides a rotation or flip."""
    t = resize(y, *work_size(*y.shape, GEO_SIDE)).astype(np.float64)
    hp = t - gaussian_filter(t, 2.0, mode="nearest")
    local = np.sqrt(gaussian_filter(hp * hp, 2.0, mode="nearest"))
    return hp / (local + 0.25 * float(np.median(local)) + 1e-4)  # the floor keeps flat areas from noise blow-up


def frame_of(shape: tuple[int, ...], name: str) -> tuple[int, int]:
    """(height, width) of an image of ``shape`` after the dihedral transform ``name``."""
    h, w = shape[:2]
    return (w, h) if name in SWAPS_SIDES else (h, w)


def aspect_excess(a: tuple[int, int], b: tuple[int, int]) -> float:
    """How much two frames' aspect ratios differ (log), beyond the tolerance and what rounding each side to
    whole pixels explains: an editor's resize is allowed, a stretch, crop or pad is not."""
    slack = 0.5 * (1 / a[0] + 1 / a[1] + 1 / b[0] + 1 / b[1])
    return max(0.0, abs(math.log(a[0] / a[1]) - math.log(b[0] / b[1])) - slack - ASPECT_TOL)


def fitting_transforms(src_shape: tuple[int, ...], edt_shape: tuple[int, ...]) -> tuple[list[str], float]:
    """The transforms whose frame the edited image can be in, and the aspect excess when none fits.

    The exact size when the editor kept it; else the aspect ratio (a resize); else every transform, since the
    edited frame was stretched, cropped or padded and only the content can tell the orientation."""
    edt = (edt_shape[0], edt_shape[1])
    exact = [n for n in DIHEDRAL if frame_of(src_shape, n) == edt]
    if exact:
        return exact, 0.0
    excess = {n: aspect_excess(frame_of(src_shape, n), edt) for n in DIHEDRAL}
    close = [n for n, x in excess.items() if x == 0.0]
    return (close, 0.0) if close else (list(DIHEDRAL), min(excess.values()))


@dataclass
class GeometryFit:
    """How well the edited image matches each fitting transform of the source (``scores``), and how much each
    transform looks like an accepted one on the source itself (``alike``: 1 = indistinguishable)."""

    scores: dict[str, float]
    alike: dict[str, float]
    aspect_excess: float = 0.0


def geometry_fit(src: np.ndarray, edt: np.ndarray, accepted: set[str]) -> GeometryFit:
    """Normalised correlation of the edited image's local structure with each rotation/flip of the source's.

    Per transform, the better of luma and HSV value: a recolouring keeps value but can reshape luma (red to
    green brightens), black and white keeps luma but not value."""
    names, excess = fitting_transforms(src.shape, edt.shape)
    scores: dict[str, float] = {}
    alike: dict[str, float] = {}
    for channel in (luma, lambda x: x.max(axis=-1)):
        fe = structure_features(channel(edt))
        # The features are made of isotropic filters, so they commute with rotations and flips: compute them
        # once for the source and transform the result.
        fs = structure_features(channel(src)).astype(np.float32)
        cands = {n: resize(np.ascontiguousarray(DIHEDRAL[n](fs)), *fe.shape) for n in names}
        for n, cand in cands.items():
            scores[n] = max(_ncc(cand, fe), scores.get(n, -1.0))
            same = [_ncc(cand, cands[a]) for a in accepted if a in cands]
            alike[n] = max(same + [alike.get(n, -1.0)])
    return GeometryFit(scores=scores, alike=alike, aspect_excess=excess)


@dataclass
class Aligned:
    """The source put in the edited image's frame (expected geometry applied), at a common size.

    ``decidable`` is False when the source is too small or too uniform (or symmetric) for its content to
    tell any fitting wrong transform from the accepted ones, or the one that fits as well; then ``detected``
    is the accepted one."""

    src: np.ndarray
    edt: np.ndarray
    expected: str
    detected: str
    scores: dict[str, float] = field(default_factory=dict)
    resized: bool = False
    decidable: bool = True
    aspect_excess: float = 0.0
    source_size: tuple[int, int] = (0, 0)  # (height, width) as given, before alignment
    edited_size: tuple[int, int] = (0, 0)


def _decidable(fit: GeometryFit, accepted: set[str]) -> bool:
    """Can the content tell a wrong transform from an accepted one? Trivially yes when the frame rules every
    wrong one out, or rules every accepted one out (then the shape itself shows the error)."""
    wrong = [n for n in fit.scores if n not in accepted]
    if not wrong or not accepted & set(fit.scores):
        return True
    return any(fit.alike[n] < GEO_GOOD for n in wrong)


def _rivalled(fit: GeometryFit, accepted: set[str], chosen: str, src: np.ndarray) -> bool:
    """Does a wrong transform fit the edited image about as well as the ``chosen`` accepted one while looking
    like an accepted one on the source (a few-pixel or symmetric source)? Then the content cannot tell which
    of the two was made, whatever other wrong transforms it could tell apart. A transform that gives the very
    same pixels as an accepted one (a 1 px row flipped upside down) is not wrong."""
    rivals = [n for n in fit.scores if n not in accepted and fit.alike[n] >= GEO_GOOD
              and fit.scores[n] >= fit.scores[chosen] - GEO_MARGIN]
    return any(not any(np.array_equal(DIHEDRAL[n](src), DIHEDRAL[a](src)) for a in accepted) for n in rivals)


def align(src: np.ndarray, edt: np.ndarray, geo_ops: list[PhotoOp]) -> Aligned:
    expected_set = accepted_transforms(geo_ops)
    fit = geometry_fit(src, edt, expected_set)
    scores = fit.scores
    detected = max(scores, key=lambda k: (scores[k], k in expected_set))
    decidable = _decidable(fit, expected_set)
    # Prefer an accepted transform unless another one fits clearly better (symmetric images are ambiguous).
    ok = sorted((n for n in expected_set if n in scores
                 and (not decidable or scores[n] >= scores[detected] - GEO_MARGIN or scores[n] >= GEO_GOOD)),
                key=lambda n: (-scores[n], n))
    expected = ok[0] if ok else sorted(expected_set)[0]
    if ok:
        detected = expected
        decidable = decidable and not _rivalled(fit, expected_set, expected, src)
    # Measure the other edits in the frame the image is actually in, so a wrong rotation is one finding,
    # not a cascade of misaligned ones.
    target = np.ascontiguousarray(DIHEDRAL[detected](src))
    resized = target.shape != edt.shape
    sizes = {"source_size": (src.shape[0], src.shape[1]), "edited_size": (edt.shape[0], edt.shape[1])}
    if resized:
        edt = resize(edt, target.shape[0], target.shape[1])
    return Aligned(src=target, edt=edt, expected=expected, detected=detected, scores=scores, resized=resized,
                   decidable=decidable, aspect_excess=fit.aspect_excess, **sizes)


# -- SSIM -----------------------------------------------------------------------------------------------------

def _moments(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> tuple[np.ndarray, ...]:
    mu_a, mu_b = gaussian_filter(a, sigma), gaussian_filter(b, sigma)
    va = np.maximum(gaussian_filter(a * a, sigma) - mu_a * mu_a, 0.0)
    vb = np.maximum(gaussian_filter(b * b, sigma) - mu_b * mu_b, 0.0)
    cov = gaussian_filter(a * b, sigma) - mu_a * mu_b
    return mu_a, mu_b, va, vb, cov


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM per pixel (Wang et al. 2004, Gaussian window sigma 1.5) of 2-D arrays in [0, 1]."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b, va, vb, cov = _moments(a, b)
    return ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a ** 2 + mu_b ** 2 + _C1) * (va + vb + _C2))


def structure_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM's structure term only: local correlation, blind to brightness and contrast changes."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    _, _, va, vb, cov = _moments(a, b)
    c3 = _C2 / 2
    return (cov + c3) / (np.sqrt(va * vb) + c3)


def masked_mean(m: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is None:
        return float(m.mean())
    return float(m[mask].mean()) if mask.any() else 1.0


# -- blur / sharpen fits --------------------------------------------------------------------------------------

def fit_crop(ys: np.ndarray, ye: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """A central crop for fitting, and the interior where filtering the crop equals filtering the whole image."""
    crops, inner = [], []
    for axis in (0, 1):
        n = ys.shape[axis]
        size = min(n, FIT_SIDE + 2 * margin)
        start = (n - size) // 2
        m = margin if size < n else 0  # uncropped axes share the editor's reflect border: no margin needed
        crops.append(slice(start, start + size))
        inner.append(slice(m, size - m))
    return ys[tuple(crops)], ye[tuple(crops)], (inner[0], inner[1])


def _affine_residual(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Residual variance of y after the best y ~ a + b x, and b."""
    xc, yc = x - x.mean(), y - y.mean()
    vx = float((xc * xc).mean())
    if vx < 1e-12:
        return float((yc * yc).mean()), 0.0
    b = float((xc * yc).mean()) / vx
    return float(((yc - b * xc) ** 2).mean()), b


def _pred_ssim(x: np.ndarray, e: np.ndarray, inner: tuple[slice, slice]) -> float:
    """SSIM of edited against its best affine prediction from x: how fully the fitted model explains it."""
    _, b = _affine_residual(x[inner], e[inner])
    pred = float(e[inner].mean()) + b * (x - float(x[inner].mean()))
    return float(ssim_map(np.clip(pred, 0.0, 1.0), e)[inner].mean())


def fit_blur(ys: np.ndarray, ye: np.ndarray, sigma0: float) -> tuple[float, float]:
    """The Gaussian sigma that best explains edited from source (tone changes absorbed), and the SSIM of
    that explanation."""
    hi = 4.0 * sigma0
    s, e, inner = fit_crop(ys.astype(np.float64), ye.astype(np.float64), int(math.ceil(3 * hi)))

    def blurred(sigma: float) -> np.ndarray:
        return gaussian_filter(s, sigma, mode="reflect") if sigma > 0.05 else s

    def resid(sigma: float) -> float:
        return _affine_residual(blurred(sigma)[inner], e[inner])[0]

    best = minimize_scalar(resid, bounds=(0.0, hi), method="bounded", options={"xatol": 0.01})
    sigma = float(best.x) if resid(float(best.x)) < resid(0.0) else 0.0
    return sigma, _pred_ssim(blurred(sigma), e, inner)


def fit_sharpen(ys: np.ndarray, ye: np.ndarray, sigma0: float) -> tuple[float, float]:
    """Unsharp-mask amount a in edited ~ c + b * (source + a * (source - blur(source))), negative when
    blurred, and the SSIM of that explanation."""
    s, e, inner = fit_crop(ys.astype(np.float64), ye.astype(np.float64), int(math.ceil(3 * sigma0)))
    detail = s - gaussian_filter(s, sigma0, mode="reflect")
    if float(detail[inner].var()) < 1e-10:
        return 0.0, 1.0
    base = s[inner].ravel()
    design = np.stack([np.ones_like(base), base, detail[inner].ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, e[inner].ravel(), rcond=None)
    amount = float(coef[2] / coef[1]) if abs(coef[1]) > 1e-3 else 0.0
    return amount, _pred_ssim(s + amount * detail, e, inner)


def detail_level(ys: np.ndarray) -> float:
    """Std of the source's fine detail; too little and blur/sharpen cannot be measured."""
    return float((ys - gaussian_filter(ys, 1.0)).std())


# -- artifacts ------------------------------------------------------------------------------------------------

def tone_curve_match(ys: np.ndarray, ye: np.ndarray, bins: int = 48) -> np.ndarray:
    """The source mapped through the median monotone tone curve source->edited (undoes global tone edits)."""
    edges = np.quantile(ys, np.linspace(0, 1, bins + 1))
    idx = np.clip(np.searchsorted(edges, ys, side="right") - 1, 0, bins - 1)
    xs, fs = [], []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            xs.append(float(np.median(ys[sel])))
            fs.append(float(np.median(ye[sel])))
    if len(xs) < 2:
        return ys + (float(ye.mean()) - float(ys.mean()))
    return np.interp(ys, np.array(xs), np.maximum.accumulate(np.array(fs))).astype(np.float32)


def overshoot_fraction(ys_matched: np.ndarray, ye: np.ndarray, mask: np.ndarray, delta: float = 0.04) -> float:
    """Pixels pushed beyond their source neighbourhood's range: halos and ringing from over-sharpening."""
    hi = maximum_filter(ys_matched, size=3, mode="nearest") + delta
    lo = minimum_filter(ys_matched, size=3, mode="nearest") - delta
    return float(((ye > hi) | (ye < lo))[mask].mean()) if mask.any() else 0.0


def noise_ratio(ys_matched: np.ndarray, ye: np.ndarray, mask: np.ndarray) -> float:
    """High-frequency energy of edited over tone-matched source (>1: amplified noise/detail)."""
    if not mask.any():
        return 1.0
    vs = float(laplace(ys_matched.astype(np.float64))[mask].var())
    ve = float(laplace(ye.astype(np.float64))[mask].var())
    return ve / vs if vs > 1e-12 else (1.0 if ve < 1e-12 else 10.0)


def histogram_gaps(channel: np.ndarray) -> float:
    """Fraction of empty 8-bit levels between the 1st and 99th percentile: comb gaps, posterisation."""
    v = np.clip(np.rint(channel * 255.0), 0, 255).astype(np.int64).ravel()
    if v.size < 4096:
        return 0.0
    lo, hi = np.percentile(v, [1, 99]).astype(int)
    if hi - lo < 8:
        return 0.0
    counts = np.bincount(v, minlength=256)[lo:hi + 1]
    return float((counts == 0).mean())


def clipped_fractions(x: np.ndarray) -> tuple[float, float]:
    """Fractions of blown (near-white) and crushed (near-black) pixels, where detail is lost."""
    y = luma(x)
    return float((y >= 0.99).mean()), float((y <= 0.01).mean())


def center_crop(a: np.ndarray, side: int = 512) -> np.ndarray:
    """A full-resolution central crop: local artifacts need real pixels, not a resize."""
    h, w = a.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return a[top:top + side, left:left + side]


def subsample(a: np.ndarray, max_pixels: int = 400_000) -> np.ndarray:
    """Every k-th pixel: pixel-wise relations stay exact, unlike a resize."""
    k = max(1, math.ceil(math.sqrt(a.shape[0] * a.shape[1] / max_pixels)))
    return a[::k, ::k]
