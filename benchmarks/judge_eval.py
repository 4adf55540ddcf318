"""``refine-agent judge-eval``: how well a judge agrees with human scores (IE-Bench style), so users can
choose a judge before trusting it. Correlations are PLCC (raw and after the standard 4-parameter logistic
fit), SRCC and KRCC against the human MOS. Failed judgments are counted, never scored."""

from __future__ import annotations

import asyncio
import math
import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from refine_agent.errors import InputError, ToolCallFailed, describe
from refine_agent.loop import derive_seed
from refine_agent.protocols import close_tools, tool_identity
from refine_agent.runtime import Runtime
from refine_agent.types import JudgeRequest, Verdict

from .concurrency import for_each
from .datasets.base import Dataset, Sample, SampleError


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic used to map objective scores onto the MOS scale before PLCC (VQEG)."""
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / max(abs(b4), 1e-6))) + b2


def correlations(pred: list[float], mos: list[float]) -> dict[str, Any]:
    from scipy.optimize import curve_fit
    from scipy.stats import kendalltau, pearsonr, spearmanr

    x, y = np.asarray(pred, float), np.asarray(mos, float)
    out: dict[str, Any] = {"n": int(x.size), "plcc": None, "plcc_logistic": None, "srcc": None, "krcc": None}
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        out["note"] = "too few samples, or constant scores: correlations are undefined"
        return out
    out["plcc"] = float(pearsonr(x, y)[0])
    out["srcc"] = float(spearmanr(x, y)[0])
    out["krcc"] = float(kendalltau(x, y)[0])
    try:
        p0 = [float(y.max()), float(y.min()), float(np.mean(x)), float(np.std(x)) or 1.0]
        with warnings.catch_warnings():  # an unestimable covariance is fine: only the fitted curve is used
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic4, x, y, p0=p0, maxfev=20000)
        fitted = logistic4(x, *params)
        out["plcc_logistic"] = float(pearsonr(fitted, y)[0]) if np.ptp(fitted) > 0 else None
        out["logistic_params"] = [float(p) for p in params]
    except (RuntimeError, ValueError) as exc:
        out["note"] = f"the logistic fit did not converge ({exc}); only the raw PLCC is given"
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def judge_score(v: Verdict) -> float | None:
    """The number compared with MOS: the overall score, or 10/0 for a pass/fail-only judge."""
    if v.overall is not None:
        return v.overall
    return None if v.passed is None else 10.0 * v.passed


async def judge_eval(dataset: Dataset, judge: Any, *, runtime: Runtime, seed: int = 0, max_samples: int = 8,
                     max_pixels: int = 2**31, on_sample: Callable[[], None] | None = None) -> dict[str, Any]:
    failures: Counter[str] = Counter()
    load_errors: list[str] = []
    pred: list[float] = []
    mos: list[float] = []

    async def score(s: Sample) -> None:
        """Load, judge, and keep the score, or count the failure."""
        try:
            if s.edited is None or "mos" not in s.extra:
                raise InputError("needs an edited image and a human score ('mos')")
            edited_ref = s.edited
            source, edited = await asyncio.to_thread(lambda: (s.source.load(max_pixels), edited_ref.load(max_pixels)))
            req = JudgeRequest(source=source, edited=edited, instruction=s.instruction,
                               seed=derive_seed(seed, s.id, 0, "judge-eval"), context=s.context)
            v = (await runtime.call("judge", judge, lambda: judge.judge(req))).value
        except InputError as exc:
            failures["load_error"] += 1
            load_errors.append(f"{s.id}: {exc}")
            return
        except ToolCallFailed as exc:
            v = Verdict.failed("error", describe(exc))
        value = judge_score(v) if v.ok else None
        if value is None:
            failures[v.status if not v.ok else "no_score"] += 1
        else:
            pred.append(value)
            mos.append(float(s.extra["mos"]))

    async def one(item: Sample | SampleError) -> None:
        if isinstance(item, SampleError):
            failures[item.kind] += 1
            return
        await score(item)
        if on_sample is not None:
            on_sample()

    try:
        await for_each(iter(dataset), one, max_samples)
    finally:
        await close_tools(judge)
    result = {"dataset": dataset.spec, "judge": tool_identity(judge), **correlations(pred, mos),
              "failures": dict(failures), "n_failed": sum(failures.values())}
    if load_errors:
        result["first_load_error"] = load_errors[0]
    return result
