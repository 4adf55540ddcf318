"""The photo checker of the ``verify`` judge: reference-free scores for classic-grammar instructions.

It sees the source, the edited image and the instruction, never a ground truth. For each op it measures the
effect relative to the source in the units the grammar speaks (strength 1 = the plain wording), scores whether
it went the right way by the right amount, checks what should not have changed (globally, and as connected
local changes the global edit cannot explain, see ``local``), and looks for clipping, banding, halos and noise.
Findings carry ``data`` a critic can act on, including a re-edit instruction.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from refine_agent.tools.judges.assessment import Assessment, Unsupported
from scipy.ndimage import binary_dilation, gaussian_filter

from refine_agent.errors import UnsupportedInstructionError
from refine_agent.images import Image
from refine_agent.types import Finding

from . import measure as M
from .grammar import (
    GEOMETRY_OPS,
    GRADED_OPS,
    PhotoOp,
    PhotoPlan,
    parse_photo_instruction,
    render_op,
    render_plan,
)
from .local import LocalChanges, find_local_changes
from .ops import (
    BRIGHT_K,
    CONTRAST_K,
    SAT_K,
    SHARP_K,
    WARM_K,
    blur_sigma,
    colour_weight,
    hue_distance,
    logit,
    luma,
    rgb_to_hsv,
    to_float,
)
from .photo_scores import Ctx, Scored, absolute_result, conservative, graded_result, ssim_score

Number = float | int | str | bool | None


# -- graded ops: measured strength in grammar units (positive = the requested way) ----------------------------

def _gamma(ctx: Ctx) -> float | None:
    sel = ctx.keep & (ctx.ys > 0.05) & (ctx.ys < 0.95)
    if sel.sum() < 16:
        return None
    ls, le = np.log(ctx.ys[sel]), np.log(np.clip(ctx.ye[sel], 1 / 512, 1.0))
    return max(float((ls * le).sum() / (ls * ls).sum()), 1e-3)  # le ~ g * ls for a gamma curve


def _logit_gain(ctx: Ctx) -> float | None:
    sel = ctx.keep & (ctx.ys > 0.03) & (ctx.ys < 0.97)
    if sel.sum() < 16:
        return None
    zs = logit(ctx.ys[sel])
    return max(float(logit(ctx.ye[sel]).std() / zs.std()), 1e-3) if zs.std() > 1e-3 else None


def _chroma_gain(ctx: Ctx) -> float | None:
    """Median per-pixel gain of chroma relative to luma, over pixels whose chroma had room to grow: a gain
    is invisible where the gamut stops it."""
    src, y = ctx.src, ctx.ys
    sel = ctx.keep & (y > 0.08) & (y < 0.92)
    cs = np.ptp(src, axis=-1) / np.maximum(y, 0.02)
    if sel.sum() < 16 or float(cs[sel].mean()) < 0.03:
        return None
    chroma = src - y[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        room = np.where(chroma > 1e-3, (1 - y[..., None]) / chroma,
                        np.where(chroma < -1e-3, y[..., None] / -chroma, np.inf)).min(axis=-1)
    sel &= cs > 0.05
    for need in (4.0, 2.0, 0.0):  # prefer pixels that could take a 4x gain
        if (sel & (room >= need)).sum() >= 50:
            sel &= room >= need
            break
    if sel.sum() < 16:
        return None
    ce = np.ptp(ctx.edt, axis=-1) / np.maximum(ctx.ye, 0.02)
    return float(np.median(ce[sel] / cs[sel]))


def _warm_shift(ctx: Ctx) -> float | None:
    """Median per-pixel change of ln(R/B): white-balance gains shift it by the same amount everywhere."""
    s, e = ctx.src, np.clip(ctx.edt, 1 / 512, 1.0)
    sel = ctx.keep & np.logical_and.reduce([(c > 0.04) & (c < 0.98) for c in (s[..., 0], s[..., 2])])
    if sel.sum() < 16:
        return None
    return float(np.median(np.log(e[..., 0][sel] / e[..., 2][sel]) - np.log(s[..., 0][sel] / s[..., 2][sel])))


def _sharpness(ctx: Ctx, direction: int) -> tuple[float, float, dict[str, Number]]:
    side = min(ctx.al.src.shape[:2])
    if side < 3 * ctx.sigma0:  # the blur spans the whole short side: every strength averages it the same
        raise Unsupported(f"the image is only {side} px across, within the blur's reach, so blur or sharpening "
                          "cannot be verified")
    ys, ye = luma(ctx.al.src), luma(ctx.al.edt)
    if M.detail_level(ys) < 0.002:
        raise Unsupported("the source has no fine detail, so blur or sharpening cannot be verified")
    amount, fit_ssim = M.fit_sharpen(ys, ye, ctx.sigma0)
    info: dict[str, Number] = {"sharpen_amount": round(amount, 4)}
    if direction > 0:
        return amount / SHARP_K, fit_ssim, info
    sigma, blur_ssim = M.fit_blur(ys, ye, ctx.sigma0)
    info["blur_sigma"] = round(sigma, 4)
    if amount > 0.05 * SHARP_K:
        return -amount / SHARP_K, fit_ssim, info
    return (sigma / ctx.sigma0) ** 2, blur_ssim, info


def _measure_graded(ctx: Ctx, op: PhotoOp) -> tuple[float, dict[str, Number]]:
    d = op.direction
    if op.op == "brightness":
        g = _gamma(ctx)
        if g is None:  # almost no mid-tones: fall back to the mean
            return d * float(ctx.ye.mean() - ctx.ys.mean()) / 0.06, {}
        return -d * math.log(g) / BRIGHT_K, {"gamma": round(g, 4)}
    if op.op == "contrast":
        c = _logit_gain(ctx)
        if c is None:
            raise Unsupported("the source has almost no tonal range, so a contrast change cannot be verified")
        return d * math.log(c) / CONTRAST_K, {"logit_gain": round(c, 4)}
    if op.op == "saturation":
        k = _chroma_gain(ctx)
        if k is None:
            raise Unsupported("the source has almost no colour, so a saturation change cannot be verified")
        return d * math.log(max(k, 1e-6)) / SAT_K, {"chroma_gain": round(k, 4)}
    if op.op == "warmth":
        w = _warm_shift(ctx)
        if w is None:
            raise Unsupported("the source has no mid-tone red/blue pixels, so warmth cannot be verified")
        return d * w / (2 * WARM_K), {"log_rb_shift": round(w, 4)}
    s_eq, fit_ssim, info = _sharpness(ctx, d)
    ctx.fit_ssim = fit_ssim
    return s_eq, info


def _merged_graded(plan: PhotoPlan) -> list[PhotoOp]:
    """One op per graded kind: "brighter and slightly brighter" asks for 1.5x brighter."""
    total: dict[str, float] = {}
    for op in plan.ops:
        if op.graded:
            total[op.op] = total.get(op.op, 0.0) + op.direction * op.strength
    return [PhotoOp(op=name, direction=1 if v > 0 else -1, strength=abs(v))  # type: ignore[arg-type]
            for name, v in total.items() if abs(v) > 1e-9]


# -- side effects, naturalness, artifacts ---------------------------------------------------------------------

def _work_pair(ctx: Ctx) -> tuple[np.ndarray, np.ndarray]:
    h, w = M.work_size(*ctx.al.src.shape[:2], 512)
    return M.resize(ctx.al.src, h, w), M.resize(ctx.al.edt, h, w)


def _structure(ctx: Ctx, names: set[str]) -> tuple[float, dict[str, Number]]:
    """What should keep its structure: the whole image, or outside/inside a recoloured region."""
    s, e = _work_pair(ctx)
    # With only a recolouring asked, everything outside it must stay identical; otherwise compare structure only.
    sim = M.ssim_map if names == {"recolor"} else M.structure_map
    info: dict[str, Number] = {}
    values: list[float] = []
    mask = None
    hsv = rgb_to_hsv(s)
    for op in ctx.plan.ops:
        if op.op == "recolor":
            weight = colour_weight(*hsv, str(op.params["source"]))
            mask = ~binary_dilation(weight > 0, iterations=2) & (mask if mask is not None else True)
            inside = M.masked_mean(sim(s.max(-1), e.max(-1)), weight >= 0.9)  # lightness/texture kept
            info["inside_value_ssim"] = inside
            values.append(inside)
    if mask is not None:
        # The SSIM window of a pixel outside reaches into the recoloured areas: put the source back there, or a
        # thin or small image (mostly such borders) counts the asked recolouring as damage outside.
        e = np.where(mask[..., None], e, s)
        outside = float(np.mean([M.masked_mean(sim(s[..., c], e[..., c]), mask) for c in range(3)]))
        info["outside_ssim"] = outside
        values.append(outside)
    if "sharpness" in names and ctx.fit_ssim is not None:
        info["fit_ssim"] = ctx.fit_ssim
        values.append(ctx.fit_ssim)
    elif mask is None:
        info["structure_ssim"] = M.masked_mean(M.structure_map(luma(s), luma(e)), None)
        values.append(float(info["structure_ssim"]))
    return min(values), info


def _counter(name: str, change: float, k: float) -> PhotoOp:
    """The op that undoes an unwanted change (``change`` > 0: it went up)."""
    return PhotoOp(op=name, direction=-1 if change > 0 else 1, strength=min(3.0, max(abs(change) / k, 0.01)))  # type: ignore[arg-type]


def _drifts(ctx: Ctx, names: set[str]) -> list[tuple[str, float, float, PhotoOp | None]]:
    """(what, |drift|, tolerance, counter-op) for properties the instruction did not ask to change, measured
    where they must hold (``steady``); with too few such pixels a drift is not measured."""
    ctx = replace(ctx, keep=ctx.steady)
    out: list[tuple[str, float, float, PhotoOp | None]] = []
    colour_ops = {"saturation", "grayscale", "sepia", "warmth", "recolor"}
    if not names & {"brightness", "contrast"} and (g := _gamma(ctx)) is not None:
        out.append(("brightness", abs(math.log(g)), 0.06, _counter("brightness", -math.log(g), BRIGHT_K)))
    if not names & {"brightness", "contrast", "sharpness"} and (c := _logit_gain(ctx)) is not None:
        out.append(("contrast", abs(math.log(c)), 0.1, _counter("contrast", math.log(c), CONTRAST_K)))
    if not names & colour_ops and (k := _chroma_gain(ctx)) is not None:
        lk = math.log(max(k, 0.01))
        tol = 0.25 if names & {"sharpness", "contrast", "brightness"} else 0.12  # these shift chroma a little too
        out.append(("saturation", abs(lk), tol, _counter("saturation", lk, SAT_K)))
    if not names & colour_ops:
        if (w := _warm_shift(ctx)) is not None:
            tol = 0.08 if names & {"contrast", "brightness"} else 0.05
            out.append(("warmth", abs(w), tol, _counter("warmth", w, 2 * WARM_K)))
        (hs, ss, vs), (he, se, ve) = ctx.hsv_s, ctx.hsv_e
        sel = ctx.keep & (ss > 0.25) & (se > 0.25) & (vs > 0.15) & (ve > 0.15)
        if sel.sum() >= 16:
            wts = (ss * vs)[sel]
            out.append(("hue", float(hue_distance(he[sel] - hs[sel], 0.0).dot(wts) / wts.sum()), 8.0, None))
    return out


def _outside_recolour(ctx: Ctx, src: np.ndarray) -> np.ndarray:
    """Pixels away from every region a recolouring is asked to change."""
    hsv = rgb_to_hsv(src)
    near = np.zeros(src.shape[:2], dtype=bool)
    for op in ctx.plan.ops:
        if op.op == "recolor":
            near |= colour_weight(*hsv, str(op.params["source"])) > 0
    return ~binary_dilation(near, iterations=3) if near.any() else ~near


def _quality(ctx: Ctx, requested: dict[str, float],
             changes: LocalChanges) -> tuple[float, float, list[Finding], dict[str, Number]]:
    """Naturalness (clipping, gamut) and artifacts (banding, halos, noise) relative to the source, away from
    local changes (those are one finding of their own, not a cascade)."""
    findings: list[Finding] = []
    nat, art = 10.0, 10.0
    # Damage that cannot be undone: the critic restarts from the source, gentler.
    fix = {"fix_base": "source", "restart": ctx.plan_scaled_all(0.6)}
    away = ~changes.mask_at(ctx.src.shape)
    hi_s, lo_s = M.clipped_fractions(ctx.src[away])
    hi_e, lo_e = M.clipped_fractions(ctx.edt[away])
    sat_s = float(((ctx.hsv_s[1] >= 0.99) & (ctx.hsv_s[2] >= 0.25))[away].mean())
    sat_e = float(((ctx.hsv_e[1] >= 0.99) & (ctx.hsv_e[2] >= 0.25))[away].mean())
    sat_tol = 0.03 + 0.12 * max(requested.get("saturation", 0.0), 0.0)
    # Strong tone requests push more pixels to the ends legitimately.
    up = max(requested.get("contrast", 0.0), requested.get("brightness", 0.0), 0.0)
    down = max(requested.get("contrast", 0.0), -requested.get("brightness", 0.0), 0.0)
    for what, delta, tol, slope in (("highlights", hi_e - hi_s, 0.01 + 0.03 * up, 50.0),
                                    ("shadows", lo_e - lo_s, 0.01 + 0.03 * down, 50.0),
                                    ("colour", sat_e - sat_s, sat_tol, 40.0)):
        if delta > tol:
            pen = min(7.0, slope * (delta - tol) + 1.0)
            nat -= pen
            findings.append(ctx.finding("clipping", f"{delta:.1%} more {what} are clipped", pen / 7,
                                        {"what": what, "measured": round(delta, 4), "limit": tol, **fix}))
    crop_s, crop_e = M.center_crop(ctx.al.src), M.center_crop(ctx.al.edt)
    ys_full, ye_full = luma(crop_s), luma(crop_e)
    matched = M.tone_curve_match(ys_full, ye_full)
    sharpen = max(requested.get("sharpness", 0.0), 0.0)
    # A recolouring changes luma locally by design.
    local = _outside_recolour(ctx, crop_s) & ~M.center_crop(changes.mask_at(ctx.al.src.shape))
    overshoot = M.overshoot_fraction(matched, ye_full, local)
    noise = M.noise_ratio(matched, ye_full, local)
    gaps = M.histogram_gaps(ctx.edt[..., 1]) - M.histogram_gaps(ctx.src[..., 1])
    checks = (("halo", overshoot, 0.03 + 0.08 * sharpen, 40.0), ("noise", noise, 1.5 * (1 + SHARP_K * sharpen) ** 2,
                                                                   3.0), ("banding", gaps, 0.45, 15.0))
    for what, value, tol, slope in checks:
        if value > tol:
            pen = min(7.0, slope * (value - tol) + 1.0)
            art -= pen
            findings.append(ctx.finding("artifact", f"{what} ({value:.3g} > {tol:.3g})", pen / 7,
                                        {"what": what, "measured": round(value, 4), "limit": round(tol, 4), **fix}))
    info: dict[str, Number] = {"clip_highlights_delta": round(hi_e - hi_s, 4), "clip_shadows_delta":
                               round(lo_e - lo_s, 4), "gamut_clip_delta": round(sat_e - sat_s, 4),
                               "overshoot": round(overshoot, 4), "noise_ratio": round(noise, 4),
                               "banding_delta": round(gaps, 4)}
    return max(0.0, nat), max(0.0, art), findings, info


# -- assembly -------------------------------------------------------------------------------------------------

def _context(plan: PhotoPlan, source: Image, edited: Image) -> Ctx:
    geo = [op for op in plan.ops if op.op in GEOMETRY_OPS]
    al = M.align(to_float(source.array), to_float(edited.array), geo)
    src, edt = M.subsample(al.src), M.subsample(al.edt)
    hsv_s = rgb_to_hsv(src)
    keep = np.ones(src.shape[:2], dtype=bool)
    for op in plan.ops:  # global measures skip the areas a recolouring is meant to change
        if op.op == "recolor":
            keep &= colour_weight(*hsv_s, str(op.params["source"])) <= 0
    sigma0 = blur_sigma(*al.src.shape[:2])
    steady = keep & _away_from_mixing(plan, src, sigma0 * src.shape[0] / al.src.shape[0])
    if keep.sum() < max(16, 0.05 * keep.size):
        keep = np.ones_like(keep)  # almost all of it is to be recoloured: measure the other ops everywhere
    return Ctx(plan=plan, al=al, src=src, edt=edt, ys=luma(src), ye=luma(edt), hsv_s=hsv_s, hsv_e=rgb_to_hsv(edt),
               keep=keep, sigma0=sigma0, steady=steady)


def _away_from_mixing(plan: PhotoPlan, src: np.ndarray, sigma: float) -> np.ndarray:
    """Where a blur or sharpening (radius ``sigma`` here) must leave colours alone: away from colour edges,
    which it mixes or pushes apart by design. Everywhere for other plans."""
    if not any(op.op == "sharpness" for op in plan.ops):
        return np.ones(src.shape[:2], dtype=bool)
    spread = np.abs(gaussian_filter(src, (sigma, sigma, 0), mode="reflect") - src).max(axis=-1)
    return spread < 0.04


def assess_photo(source: Image, edited: Image, instruction: str) -> Assessment:
    """Score ``edited`` against ``source`` for a classic-grammar ``instruction`` (0-10 each, 10 = best)."""
    try:
        plan = parse_photo_instruction(instruction)
    except UnsupportedInstructionError as exc:
        raise Unsupported(str(exc)) from None
    ctx = _context(plan, source, edited)
    results: list[Scored] = []
    for op in _merged_graded(plan):
        s_eq, info = _measure_graded(ctx, op)
        results.append(graded_result(ctx, op, s_eq, info))
    results += [absolute_result(ctx, op) for op in plan.ops if op.op not in GRADED_OPS]
    if not results:
        raise Unsupported(f'the edits in "{instruction}" cancel out, so there is nothing to verify')
    findings = [f for r in results for f in r.findings]
    measurements: dict[str, Number] = {"aligned_as": ctx.al.expected, "detected_transform":
                                       ctx.al.detected if ctx.al.decidable else "cannot tell",
                                       "geometry_decidable": ctx.al.decidable, "resized": ctx.al.resized}
    for r in results:
        measurements.update(r.measurements())
    overediting = _overediting(ctx, findings, measurements)
    changes = _local_changes(ctx, results, measurements)
    if changes.clusters:  # an unasked local change is both an over-edit and an artifact
        findings.append(_local_finding(ctx, changes))
        overediting = max(0.0, overediting - changes.penalty())
    requested = {op.op: op.direction * op.strength for op in _merged_graded(plan)}
    naturalness, artifacts, quality_findings, quality_info = _quality(ctx, requested, changes)
    artifacts = max(0.0, artifacts - changes.penalty())
    findings += quality_findings
    measurements.update(quality_info)
    return Assessment(domain="photo", success=round(min(r.score for r in results), 2),
                      overediting=round(overediting, 2), naturalness=round(naturalness, 2),
                      artifacts=round(artifacts, 2), reasoning=_reasoning(results, findings, plan.notes),
                      findings=findings,
                      measurements=measurements)


def _overediting(ctx: Ctx, findings: list[Finding], measurements: dict[str, Number]) -> float:
    """Fidelity of what should not change: structure (or the fitted blur/sharpen model), geometry, drifts."""
    names = {op.op for op in ctx.plan.ops}
    restart = render_plan(ctx.plan)
    struct, info = _structure(ctx, names)
    measurements.update({k: round(v, 4) if isinstance(v, float) else v for k, v in info.items()})
    score = ssim_score(struct)
    if ctx.al.detected != ctx.al.expected:
        score = min(score, 2.0)
        findings.append(ctx.finding(
            "geometry", f"the image looks like '{ctx.al.detected}' of the source, expected '{ctx.al.expected}'",
            1.0, {"expected": ctx.al.expected, "detected": ctx.al.detected, "fix_base": "source",
                  "restart": restart}))
    if ctx.al.aspect_excess > 0:
        score = min(score, _aspect_cap(ctx.al.aspect_excess))
        findings.append(_aspect_finding(ctx, restart))
    for what, drift, tol, counter in _drifts(ctx, names):
        measurements[f"drift_{what}"] = round(drift, 4)
        if drift <= tol:
            continue
        pen = min(6.0, (drift - tol) / tol * 2.0 + 1.0)
        score -= pen
        data: dict[str, object] = {"what": what, "measured": round(drift, 4), "limit": tol, "restart": restart,
                                   "fix_base": "current" if counter is not None else "source"}
        if counter is not None:
            data["suggest"] = render_op(conservative(counter))
        findings.append(ctx.finding("side_effect", f"{what} changed though not asked ({drift:.3g} > {tol:g})",
                                    pen / 6, data))
    return max(0.0, score)


def _aspect_cap(excess: float) -> float:
    """Fidelity left after a stretch, crop or pad: 8 just past the tolerance, 2 at a 15% change."""
    return max(2.0, 8.0 - 40.0 * excess)


def _aspect_finding(ctx: Ctx, restart: str) -> Finding:
    (sh, sw), (eh, ew) = ctx.al.source_size, ctx.al.edited_size
    return ctx.finding(
        "geometry", f"the edited image is {ew}x{eh} px but the source is {sw}x{sh} px: no rotation or resize "
        "gives that aspect ratio, so it was stretched, cropped or padded", min(1.0, 0.3 + 5 * ctx.al.aspect_excess),
        {"what": "aspect_ratio", "expected": ctx.al.expected, "detected": ctx.al.detected,
         "source_size": [sw, sh], "edited_size": [ew, eh], "aspect_excess": round(ctx.al.aspect_excess, 4),
         "fix_base": "source", "restart": restart})


def _local_changes(ctx: Ctx, results: list[Scored], measurements: dict[str, Number]) -> LocalChanges:
    """Areas the global edit (with the measured blur or sharpening) does not explain."""
    sharp = next((r.extra for r in results if r.op.op == "sharpness"), {})
    amount = float(sharp.get("sharpen_amount") or 0.0)
    sigma = float(sharp.get("blur_sigma") or 0.0)
    if sigma > 0 and amount <= 0.05 * SHARP_K:  # the same choice as the sharpness measurement
        amount = 0.0
    else:
        sigma = 0.0
    changes = find_local_changes(ctx.al.src, ctx.al.edt, ctx.plan, blur=sigma, sharpen=amount)
    measurements.update({"local_change_fraction": round(sum(c.fraction for c in changes.clusters), 4),
                         "local_change_clusters": len(changes.clusters),
                         "local_residual_p99": round(changes.residual_p99, 4)})
    return changes


def _local_finding(ctx: Ctx, changes: LocalChanges) -> Finding:
    total = sum(c.fraction for c in changes.clusters)
    places = list(dict.fromkeys(c.where for c in changes.clusters))
    where = " and ".join(places[:3]) + (" and elsewhere" if len(places) > 3 else "")
    n = len(changes.clusters)
    noun = "a local change that was" if n == 1 else f"{n} local changes that were"
    # The global edit itself may be right: restart from the source with the same request, not a gentler one.
    return ctx.finding("local_change", f"{noun} not asked for, in the {where} ({total:.1%} of the frame)",
                       changes.penalty() / 8, {"what": "local_change", "clusters": [c.data() for c in
                                                                                   changes.clusters[:8]],
                                               "fraction": round(total, 4), "fix_base": "source",
                                               "restart": render_plan(ctx.plan)})


def _reasoning(results: list[Scored], findings: list[Finding], notes: list[str]) -> str:
    parts = "; ".join(r.summary() for r in results)
    issues = [f.message for f in findings][:2]
    tail = f" Issues: {'; '.join(issues)}." if issues else " Nothing else changed and no artifacts were found."
    head = "".join(f"Note: {n}. " for n in notes)  # what the grammar changed, e.g. a capped strength
    return f"{head}{parts[:1].upper()}{parts[1:]}.{tail}"
