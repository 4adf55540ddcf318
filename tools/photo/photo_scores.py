"""Scoring for the photo checker: the shared context, per-op results (graded and absolute ops), score curves."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from refine_agent.tools.judges.assessment import Unsupported

from refine_agent.types import Finding

from .grammar import COLOURS, STRENGTH_LEVELS, PhotoOp, PhotoPlan, render_op, render_plan
from .measure import Aligned
from .ops import colour_weight, has_colour, hue_distance

PASS_RATIO = 1.45    # measured/requested strength within [1/1.45, 1.45] scores at least 8
ABSENT = 0.15        # below this fraction of the requested strength the edit counts as not applied
ABSENT_FLOOR = 0.05  # ... and below this many strength units whatever was requested (measurement noise)
_DIRECTION_WORDS = {"brightness": ("brighter", "darker"), "contrast": ("more contrast", "less contrast"),
                    "saturation": ("more saturated", "less saturated"), "warmth": ("warmer", "cooler"),
                    "sharpness": ("sharper", "blurrier")}


def conservative(op: PhotoOp) -> PhotoOp:
    """Round a correction down to a grammar strength level (at most 25% over), so re-edits undershoot rather
    than overshoot and flip the error's sign."""
    level = max([lv for lv in STRENGTH_LEVELS if lv <= 1.25 * op.strength] or [STRENGTH_LEVELS[0]])
    return op.model_copy(update={"strength": level})


def ramp(x: float, lo: float, hi: float) -> float:
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))


def ssim_score(value: float) -> float:
    """Fidelity score from an SSIM-like value: 10 at >= 0.97, 8 at 0.92, 0 at 0.6."""
    if value >= 0.97:
        return 10.0
    if value >= 0.92:
        return 8.0 + 2.0 * (value - 0.92) / 0.05
    return max(0.0, 8.0 * (value - 0.6) / 0.32)


def ratio_score(log_ratio: float) -> float:
    """Success of a graded op from ln(measured / requested strength): 10 near 0, 8 at ln(1.45), ~4.5 at ln 2."""
    a = abs(log_ratio)
    edge = math.log(PASS_RATIO)
    if a <= 0.2:
        return 10.0
    if a <= edge:
        return 10.0 - 2.0 * (a - 0.2) / (edge - 0.2)
    if a <= math.log(2.0):
        return 8.0 - 3.5 * (a - edge) / (math.log(2.0) - edge)
    return max(1.0, 4.5 - 5.0 * (a - math.log(2.0)))


@dataclass
class Ctx:
    """Everything the checker measures on: aligned full-size pair, subsampled pair, masks."""

    plan: PhotoPlan
    al: Aligned
    src: np.ndarray
    edt: np.ndarray
    ys: np.ndarray
    ye: np.ndarray
    hsv_s: tuple[np.ndarray, np.ndarray, np.ndarray]
    hsv_e: tuple[np.ndarray, np.ndarray, np.ndarray]
    keep: np.ndarray
    sigma0: float
    steady: np.ndarray  # where unasked properties must hold (drifts): outside recolourings and mixed edges
    fit_ssim: float | None = None

    def finding(self, kind: str, message: str, severity: float, data: dict[str, Any]) -> Finding:
        return Finding(kind=kind, message=message, severity=round(min(1.0, max(0.05, severity)), 3), data=data)

    def plan_scaled(self, name: str | None, factor: float) -> str:
        """The original instruction with one graded op's strength (all, for None) scaled: a restart text."""
        ops = [op.model_copy(update={"strength": min(3.0, max(0.25, op.strength * factor))})
               if op.graded and name in (None, op.op) else op for op in self.plan.ops]
        return render_plan(ops)

    def plan_scaled_all(self, factor: float) -> str:
        return self.plan_scaled(None, factor)


@dataclass
class Scored:
    """One op's result: its success score, what was measured, and findings."""

    op: PhotoOp
    measured: float | str | None
    metric: str
    score: float = 0.0
    requested: float | None = None
    findings: list[Finding] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    note: str | None = None  # replaces the summary, e.g. when the op could not be told either way

    def fail(self, kind: str, score: float, message: str, ctx: Ctx, *, suggest: str | None = None,
             extra: dict[str, Any] | None = None, severity: float = 1.0) -> Scored:
        self.score = score
        data: dict[str, Any] = {"op": self.op.op, "metric": self.metric, "measured": self.measured,
                                "restart": render_plan(ctx.plan), **(extra or {})}
        if suggest is not None:
            data["suggest"] = suggest
        self.findings.append(ctx.finding(kind, f"{self.op.op}: {message}", severity, data))
        return self

    def measurements(self) -> dict[str, Any]:
        out = {f"{self.op.op}.{self.metric}": self.measured}
        out.update({f"{self.op.op}.{k}": v for k, v in self.extra.items()})
        return out

    def summary(self) -> str:
        if self.note is not None:
            return self.note
        if self.requested is not None and isinstance(self.measured, float):
            return (f"{_DIRECTION_WORDS[self.op.op][0 if self.op.direction > 0 else 1]} at "
                    f"{self.measured / self.requested:.2f}x the requested strength")
        return f"{self.op.op} {self.score:.0f}/10"


def graded_result(ctx: Ctx, op: PhotoOp, s_eq: float, info: dict[str, Any]) -> Scored:
    """Score a graded op from its measured strength ``s_eq`` (grammar units, positive = requested way)."""
    s_req = op.strength
    lo, hi = s_req / PASS_RATIO, s_req * PASS_RATIO
    res = Scored(op, measured=round(s_eq, 4), metric="strength", requested=s_req, extra=info)
    target = {"requested": s_req, "target": [round(lo, 4), round(hi, 4)], "direction": op.direction}
    absent = max(ABSENT * s_req, ABSENT_FLOOR)
    if s_eq <= -absent:
        return res.fail("wrong_direction", 0.0, f"went the wrong way ({s_eq:.2f} of the requested {s_req:g})",
                        ctx, suggest=render_op(op), extra={**target, "fix_base": "source"})
    if s_eq < absent:
        return res.fail("not_applied", 0.5, f"no visible change ({s_eq:.2f} of the requested {s_req:g})", ctx,
                        suggest=render_op(op), extra={**target, "fix_base": "current"})
    log_ratio = math.log(s_eq / s_req)
    res.score = ratio_score(log_ratio)
    severity = min(1.0, abs(log_ratio) / 1.4)
    if s_eq < lo:
        res.fail("too_weak", res.score, f"too weak ({s_eq:.2f} of the requested {s_req:g}, want {lo:.2f}-"
                 f"{hi:.2f})", ctx, suggest=render_op(conservative(op.model_copy(update={"strength": s_req - s_eq}))),
                 extra={**target, "fix_base": "current", "restart": ctx.plan_scaled(op.op, s_req / s_eq)},
                 severity=severity)
    elif s_eq > hi:
        undo = op.model_copy(update={"direction": -op.direction, "strength": min(s_eq - s_req, 10.0)})
        # A blur cannot be undone by sharpening: restart from the source with less.
        base = "source" if op.op == "sharpness" and op.direction < 0 else "current"
        res.fail("too_strong", res.score, f"too strong ({s_eq:.2f} of the requested {s_req:g}, want {lo:.2f}-"
                 f"{hi:.2f})", ctx, suggest=render_op(conservative(undo)) if base == "current" else None,
                 extra={**target, "fix_base": base, "restart": ctx.plan_scaled(op.op, s_req / s_eq)},
                 severity=severity)
    return res


# -- absolute ops ---------------------------------------------------------------------------------------------

def _grayscale(ctx: Ctx, op: PhotoOp) -> Scored:
    cs = float(np.ptp(ctx.src, axis=-1)[ctx.keep].mean())
    ce = float(np.ptp(ctx.edt, axis=-1)[ctx.keep].mean())
    ratio = ce / cs if cs > 0.01 else (0.0 if ce < 0.01 else 1.0)
    res = Scored(op, measured=round(ratio, 4), metric="residual_colour")
    if ratio > 1.05:
        return res.fail("wrong_direction", 0.0, "the image got more colourful instead of black and white", ctx)
    if ratio >= 0.85:
        return res.fail("not_applied", 0.5, "the colours were not removed", ctx)
    res.score = 10.0 if ratio <= 0.05 else (10 - 20 * (ratio - 0.05) if ratio <= 0.15 else 8 - 8 * (ratio - 0.15))
    if ratio > 0.15:
        res.fail("too_weak", res.score, f"{ratio:.0%} of the colour remains", ctx, suggest=render_op(op))
    return res


def _sepia(ctx: Ctx, op: PhotoOp) -> Scored:
    h, s, v = ctx.hsv_e
    c = (v * s)[ctx.keep]
    vec = (c * np.exp(1j * np.deg2rad(h[ctx.keep]))).sum()
    coherence = float(abs(vec) / max(c.sum(), 1e-9))
    hue = float(np.rad2deg(np.angle(vec)) % 360)
    tone = float(c.mean() / max(ctx.ye[ctx.keep].mean(), 1e-3))
    res = Scored(op, measured=round(tone, 4), metric="sepia_tone",
                 extra={"sepia_hue": round(hue, 1), "sepia_coherence": round(coherence, 3)})
    if float(np.abs(ctx.edt - ctx.src).mean()) < 0.004:
        return res.fail("not_applied", 0.5, "the image is unchanged", ctx)
    hue_ok = 1.0 - ramp(float(hue_distance(np.array(hue), 32.0)), 15.0, 40.0)
    tone_ok = ramp(tone, 0.05, 0.15) * (1.0 - ramp(tone, 0.9, 1.4))
    res.score = 10.0 * min(hue_ok, ramp(coherence, 0.6, 0.9), tone_ok)
    if tone >= 0.15 and hue_ok < 0.5:
        res.fail("wrong_direction", res.score, f"the tint is {hue:.0f} deg, not a sepia brown", ctx)
    elif tone < 0.15 or coherence < 0.9:
        res.fail("too_weak", res.score, "the image is not a single brown tone yet", ctx, suggest=render_op(op))
    elif tone > 0.9:
        res.fail("too_strong", res.score, "the sepia tint is too heavy", ctx)
    return res


def _recolor(ctx: Ctx, op: PhotoOp) -> Scored:
    src_name, tgt_name = str(op.params["source"]), str(op.params["target"])
    weight = colour_weight(*ctx.hsv_s, src_name)
    if not has_colour(weight):
        raise Unsupported(f"the source has no clearly {src_name} pixels, so recolouring cannot be verified")
    core = weight >= 0.9
    he, se, ve = ctx.hsv_e
    centre, _, outer = COLOURS[tgt_name]
    converted = float(((hue_distance(he, centre) <= outer) & (se >= 0.12))[core].mean())
    remaining = float((colour_weight(he, se, ve, src_name) >= 0.5)[core].mean())
    res = Scored(op, measured=round(converted, 4), metric="converted_fraction",
                 extra={"remaining_fraction": round(remaining, 4)})
    res.score = 10.0 * ramp(converted, 0.05, 0.9)
    if remaining >= 0.8:
        res.fail("not_applied", min(res.score, 0.5), f"the {src_name} areas are still {src_name}", ctx,
                 suggest=render_op(op))
    elif converted < 0.1 and remaining < 0.5:
        res.fail("wrong_direction", res.score, f"the {src_name} areas did not become {tgt_name}", ctx)
    elif converted < 0.85:
        res.fail("too_weak", res.score, f"only {converted:.0%} of the {src_name} areas became {tgt_name}", ctx,
                 suggest=render_op(op))
    return res


def _geometry(ctx: Ctx, op: PhotoOp) -> Scored:
    if not ctx.al.decidable:  # nothing to penalise: every transform that fits looks the same on this source
        h, w = ctx.al.source_size
        note = (f"{op.op}: cannot tell on this {w}x{h} px source (too small, too uniform or symmetric), "
                "so not penalised")
        return Scored(op, measured="cannot tell", metric="transform", score=10.0, note=note)
    res = Scored(op, measured=str(ctx.al.detected), metric="transform", score=10.0)
    if ctx.al.detected != ctx.al.expected:
        res.score = 0.0
    return res


def absolute_result(ctx: Ctx, op: PhotoOp) -> Scored:
    """Score an op without a strength: black and white, sepia, recolouring, rotate/flip."""
    scorer = {"grayscale": _grayscale, "sepia": _sepia, "recolor": _recolor}.get(op.op, _geometry)
    return scorer(ctx, op)
