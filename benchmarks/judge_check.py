"""``refine-agent judge-check``: does a judge reward edits that did nothing?

Real judges do: a reward model gives a black image ~42/100, and safety filters give silent zeros. For every
sample the judge sees non-edits (the unchanged source, a black image, seeded noise, the source re-encoded as
JPEG), and where the dataset has an edited image, that edit under another sample's instruction
(``mismatched``) and under its own (``edits``, the reference). A judge is flagged when it passes more than
5% of any non-edit probe, or when a non-edit probe's mean overall is above the edits'. A failed judgment is
counted by status, never scored as a 0.
"""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image as PILImage
from rich.console import Console
from rich.table import Table

from refine_agent.errors import InputError, ToolCallFailed, describe
from refine_agent.images import DEFAULT_MAX_PIXELS, Image
from refine_agent.loop import derive_seed
from refine_agent.protocols import close_tools, tool_identity
from refine_agent.runtime import Runtime
from refine_agent.terminal import styled
from refine_agent.types import JudgeRequest, Verdict

from .concurrency import for_each
from .datasets.base import Dataset, Sample, SampleError
from .metrics import Score, bootstrap_ci, score_of
from .tables import ci, num, pct

NON_EDITS = ("unchanged", "black", "noise", "jpeg", "mismatched")
PROBES = (*NON_EDITS, "edits")
MAX_PASS_RATE = 0.05
JPEG_QUALITY = 90
MAX_WAITING = 64  # edited samples held back until another instruction is seen (bounds memory)
FILE_NAME = "judge_check.json"


@dataclass(frozen=True)
class Job:
    """A sample, and another sample's instruction for its mismatched probe (None: there is none)."""

    sample: Sample
    other: str | None = None


def with_other_instructions(rows: Iterable[Sample | SampleError]) -> Iterator[Job | SampleError]:
    """Pair each sample with a different instruction from a nearby sample, streaming.

    The last two distinct instructions are remembered, so one of them always differs from the current one. An
    edited sample that comes before any different instruction (the first, or a run of identical ones) waits for
    the next different one; a bounded number wait, the rest (and those still waiting at the end) get None.
    """
    recent: list[str] = []
    waiting: list[Sample] = []
    for item in rows:
        if isinstance(item, SampleError):
            yield item
            continue
        text = item.instruction
        if waiting and waiting[0].instruction != text:
            yield from (Job(s, text) for s in waiting)
            waiting.clear()
        other = next((t for t in reversed(recent) if t != text), None)
        recent = [t for t in recent if t != text][-1:] + [text]
        if item.edited is not None and other is None and len(waiting) < MAX_WAITING:
            waiting.append(item)
        else:
            yield Job(item, other)
    yield from (Job(s, None) for s in waiting)


def black_like(image: Image) -> Image:
    return Image(np.zeros_like(image.array))


def noise_like(image: Image, seed: int) -> Image:
    """Uniform RGB noise of the same size, seeded per sample so reruns judge the same pixels."""
    return Image(np.random.default_rng(seed).integers(0, 256, size=image.array.shape, dtype=np.uint8))


def jpeg_of(image: Image, quality: int = JPEG_QUALITY) -> Image:
    """The image through a JPEG round trip: what a pipeline that re-saves its input returns as the 'edit'."""
    buf = io.BytesIO()
    image.to_pil().save(buf, format="JPEG", quality=quality)
    with PILImage.open(io.BytesIO(buf.getvalue())) as im:
        return Image.from_pil(im)


def probe_requests(job: Job, seed: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, JudgeRequest]:
    """Load the sample's images (InputError when one cannot be read) and build one judge request per probe."""
    s = job.sample
    source = s.source.load(max_pixels)
    edited = s.edited.load(max_pixels) if s.edited is not None else None
    mask = s.mask.load(max_pixels) if s.mask is not None else None  # judges see what bench's judges see
    images: dict[str, tuple[Image, str]] = {
        "unchanged": (source, s.instruction), "black": (black_like(source), s.instruction),
        "noise": (noise_like(source, derive_seed(seed, s.id, 0, "judge-check:noise-pixels")), s.instruction),
        "jpeg": (jpeg_of(source), s.instruction)}
    if edited is not None:
        images["edits"] = (edited, s.instruction)
        if job.other is not None:
            images["mismatched"] = (edited, job.other)
    return {name: JudgeRequest(source=source, edited=image, instruction=text, mask=mask, context=s.context,
                               seed=derive_seed(seed, s.id, 0, f"judge-check:{name}"))
            for name, (image, text) in images.items()}


def summarise(scores: list[Score], seed: int = 0) -> dict[str, Any]:
    """One probe: pass rate among ok verdicts that say pass or fail, mean overall with its 95% bootstrap CI."""
    ok = [s for s in scores if s.ok]
    verdicts = [s.passed for s in ok if s.passed is not None]
    # sorted: judgments finish in any order, and the bootstrap must not depend on it
    overall = sorted(s.overall for s in ok if s.overall is not None)
    failed = Counter(s.status for s in scores if not s.ok)
    return {"n": len(scores), "n_ok": len(ok), "n_passed": sum(verdicts),
            "pass_rate": sum(verdicts) / len(verdicts) if verdicts else None,
            "n_no_pass_fail": len(ok) - len(verdicts),
            "mean_overall": float(np.mean(overall)) if overall else None,
            "mean_overall_ci95": bootstrap_ci(overall, seed=seed),
            "failed": dict(failed), "n_failed": sum(failed.values())}


def flag(probes: dict[str, dict[str, Any]]) -> list[str]:
    """Why the judge is not to be trusted; empty when it is not flagged. Each non-edit probe stands alone."""
    reasons = []
    edits = probes.get("edits", {}).get("mean_overall")
    for name in NON_EDITS:
        p = probes.get(name) or {}
        rate, mean = p.get("pass_rate"), p.get("mean_overall")
        if rate is not None and rate > MAX_PASS_RATE:
            reasons.append(f"{name}: passes {pct(rate)} of non-edits ({p['n_passed']} of "
                           f"{p['n_ok'] - p['n_no_pass_fail']}; at most {pct(MAX_PASS_RATE)} allowed)")
        if edits is not None and mean is not None and mean > edits:
            reasons.append(f"{name}: mean overall {mean:.2f} is above the real edits' {edits:.2f}")
    return reasons


async def judge_check(dataset: Dataset, judge: Any, *, runtime: Runtime, seed: int = 0, max_samples: int = 8,
                      max_pixels: int = DEFAULT_MAX_PIXELS, on_sample: Callable[[], None] | None = None,
                      close: bool = True) -> dict[str, Any]:
    """Judge every probe of the first samples. ``close=False`` leaves the judge open: a bench run checks the
    judges it has loaded, then goes on with them."""
    scores: dict[str, list[Score]] = {name: [] for name in PROBES}
    load_errors: Counter[str] = Counter()
    first_error: list[str] = []
    n_samples = 0

    async def one_probe(name: str, req: JudgeRequest) -> None:
        try:
            v = (await runtime.call("judge", judge, lambda: judge.judge(req))).value
        except ToolCallFailed as exc:  # a failed judgment, never a 0
            v = Verdict.failed("error", describe(exc))
        scores[name].append(score_of(v))

    def not_loaded(kind: str, message: str) -> None:
        load_errors[kind] += 1
        if not first_error:
            first_error.append(message)

    async def judged(item: Job | SampleError) -> None:
        nonlocal n_samples
        if isinstance(item, SampleError):
            return not_loaded(item.kind, f"{item.id}: {item.error}")
        try:
            requests = await asyncio.to_thread(probe_requests, item, seed, max_pixels)
        except InputError as exc:
            return not_loaded("load_error", f"{item.sample.id}: {exc}")
        n_samples += 1
        async with asyncio.TaskGroup() as group:  # a bug in one probe cancels the sample's others
            for name, req in requests.items():
                group.create_task(one_probe(name, req))

    async def one(item: Job | SampleError) -> None:
        await judged(item)
        if on_sample is not None:  # every item advances the progress bar, so it ends at the dataset's size
            on_sample()

    try:
        await for_each(with_other_instructions(dataset), one, max_samples)
    finally:
        if close:
            await close_tools(judge)
    probes = {name: summarise(scores[name], seed) for name in PROBES}
    reasons = flag(probes)
    result: dict[str, Any] = {
        "judge": tool_identity(judge), "dataset": dataset.spec, "n_samples": n_samples, "seed": seed,
        "n_edited": probes["edits"]["n"], "probes": probes, "flagged": bool(reasons), "reasons": reasons,
        "max_pass_rate": MAX_PASS_RATE, "load_errors": dict(load_errors)}
    if first_error:
        result["first_load_error"] = first_error[0]
    return result


def judged_anything(result: dict[str, Any]) -> bool:
    """Whether any non-edit judgment succeeded: a judge that failed them all was not checked at all."""
    return any(result["probes"][name]["n_ok"] for name in NON_EDITS)


def print_judge_check(console: Console, r: dict[str, Any]) -> None:
    # the heading on its own line, not as the table's title: a long dataset path would wrap to the table's width
    console.print(f"Judge sanity check: {r['judge'].get('name')} on {r['dataset']} ({r['n_samples']} samples)",
                  style="bold", soft_wrap=True)
    t = Table()
    for col in ("probe", "n", "pass rate", "no pass/fail", "mean overall", "95% CI", "failed judgments"):
        t.add_column(col, justify="left" if col == "probe" else "right", overflow="fold")
    for name in PROBES:
        p = r["probes"][name]
        if p["n"]:  # probes that need edited images do not run on datasets without them
            t.add_row(name, str(p["n"]), pct(p["pass_rate"]), str(p["n_no_pass_fail"]), num(p["mean_overall"]),
                      ci(p["mean_overall_ci95"]), ", ".join(f"{k} {v}" for k, v in p["failed"].items()) or "0")
    console.print(t)
    if not r["n_edited"]:
        console.print("no edited images in the dataset: the mismatched and edits probes did not run", style="dim")
    if r["load_errors"]:
        console.print("samples not loaded: " + ", ".join(f"{k} {v}" for k, v in r["load_errors"].items()),
                      soft_wrap=True)
    for reason in r["reasons"]:
        console.print(styled(("FLAGGED:", "bold red"), " ", reason), soft_wrap=True)
    if not r["flagged"] and judged_anything(r):
        console.print(styled(("ok:", "green"), f" passes at most {pct(r['max_pass_rate'])} of every non-edit probe"
                             + (" and scores real edits above them" if r["n_edited"] else "")), soft_wrap=True)
