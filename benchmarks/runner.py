"""``refine-agent bench``: refine every sample of a dataset into a run directory that loses nothing.

Samples stream from the dataset, at most ``max_samples`` at a time, so memory stays flat and the
scheduling work grows with the samples, not the cap. Every tool result, round and sample is committed as
it finishes. A resumed run skips finished samples and replays the calls of unfinished ones from the
on-disk cache, so it repeats no completed tool call and ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from refine_agent import __version__
from refine_agent.cache import identity_hash
from refine_agent.config import RunConfig, ToolSpec, public_dump
from refine_agent.errors import ConfigError, InputError, ToolUnavailableError, describe
from refine_agent.images import Image
from refine_agent.protocols import close_tools, load_tools, tool_identity
from refine_agent.run_context import server_log_dir
from refine_agent.runtime import Runtime
from refine_agent.session import Toolset, build_tools, make_tool, placement_record, run_one
from refine_agent.store import RunStore, SampleInputs, StoreCache
from refine_agent.types import Round, Trajectory

from .concurrency import for_each
from .datasets import load_dataset
from .datasets.base import Dataset, Sample, SampleError, placeholder_id
from .eval_judge import score_rounds

RUN_SCHEMA_VERSION = 1


class BenchSettings(BaseModel):
    """What a bench run reads and how it schedules, beside the RunConfig of its tools and loop."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    limit: int | None = Field(default=None, ge=1)
    max_samples: int = Field(default=8, ge=1, description="samples refined at once")
    eval_judge: ToolSpec | None = None


@dataclass
class Progress:
    """Live counters for the progress bar."""

    total: int | None = None
    done: int = 0
    skipped: int = 0
    errors: int = 0
    rounds: int = 0
    passed: int = 0
    started: float = field(default_factory=time.monotonic)


def _fingerprint_fields(info: dict[str, Any]) -> dict[str, Any]:
    """The parts of run.json that decide results; a resume must match them exactly."""
    cfg = info["config"]
    return {
        "dataset.spec": info["dataset"]["spec"],
        "dataset.options": info["dataset"]["options"],
        "seed": cfg["seed"],
        "budget": cfg["budget"],
        "policy": cfg["policy"],
        "max_pixels": cfg["max_pixels"],
        # attempts and timeouts decide which calls fail for good, so they change results too
        "runtime.max_attempts": cfg["runtime"]["retry"]["max_attempts"],
        "runtime.timeout_s": cfg["runtime"]["timeout_s"],
        **{f"tools.{k}": v for k, v in info["tools"].items()},
    }


def check_resume(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Refuse a resume whose settings would change results, naming what differs."""
    a, b = _fingerprint_fields(old), _fingerprint_fields(new)
    diff = [k for k in a if json.dumps(a[k], sort_keys=True) != json.dumps(b.get(k), sort_keys=True)]
    if diff:
        shown = "; ".join(f"{k}: {json.dumps(a[k], sort_keys=True)} -> {json.dumps(b.get(k), sort_keys=True)}"
                          for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise ConfigError(f"--resume refused: the run was made with different settings that change results ({shown}"
                          f"{more}). Resume with the original settings, or start a new --run-dir")
    old_ev, new_ev = old.get("eval_judge") or {}, new.get("eval_judge") or {}
    if old_ev.get("identity") != new_ev.get("identity"):
        spec = old_ev.get("spec") or {}
        how = (f"--eval-judge {spec.get('spec')}" + "".join(f" -V {k}={v}" for k, v in spec.get("options", {}).items())
               if not old_ev.get("is_loop_judge") else "no --eval-judge (it is the loop judge)")
        raise ConfigError(f"--resume refused: the run's evaluation judge is {old_ev.get('identity')}, so new samples "
                          f"must be scored by it too; resume with {how}")
    old_limit, new_limit = old["dataset"].get("limit"), new["dataset"].get("limit")
    if new_limit is not None and (old_limit is None or new_limit < old_limit):
        raise ConfigError(f"--resume refused: --limit {new_limit} is below the run's "
                          f"{'full dataset' if old_limit is None else f'--limit {old_limit}'}, whose samples are "
                          "already in the run; resume with the same or a larger --limit")


class Bench:
    def __init__(self, config: RunConfig, settings: BenchSettings, store: RunStore,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.config = config
        self.settings = settings
        self.store = store
        self.on_progress = on_progress or (lambda p: None)
        self.tools: Toolset = build_tools(config)
        self.eval_tool = self._eval_tool()
        self.runtime = Runtime(config.runtime, cache=StoreCache(store))
        self.progress = Progress()

    def _eval_tool(self) -> Any | None:
        spec = self.settings.eval_judge
        if spec is None:
            return None
        tool = make_tool("judge", spec, self.config.ray)
        if self._remote(tool) or self._remote(self.tools.judge):
            return tool  # identities are known once actors load: a duplicate of the loop judge is dropped then
        return None if tool_identity(tool) == tool_identity(self.tools.judge) else tool

    @staticmethod
    def _remote(tool: Any) -> bool:
        return hasattr(tool, "placement_record")  # a tool run as Ray actors (tools/distributed)

    def placement(self) -> dict[str, Any] | None:
        """Where the tools run when some run as Ray actors: the cluster and each tool's actors (for run.json)."""
        return placement_record({**vars(self.tools), "eval_judge": self.eval_tool})

    # -- run.json ------------------------------------------------------------------------------------------
    def run_info(self, dataset: Dataset) -> dict[str, Any]:
        ev = self.eval_tool
        ev_ident = tool_identity(ev) if ev is not None else tool_identity(self.tools.judge)
        key = identity_hash(ev_ident)
        return {
            "schema_version": RUN_SCHEMA_VERSION,
            "refine_agent_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": "bench",
            "dataset": {"spec": self.settings.dataset, "options": self.settings.dataset_options,
                        "limit": self.settings.limit, "size": dataset.size, "categories": dataset.categories,
                        "info": dataset.info},
            "config": public_dump(self.config),
            "settings": self.settings.model_dump(mode="json"),
            "tools": self.tools.identities(),
            "eval_judge": {"spec": self.settings.eval_judge.model_dump() if self.settings.eval_judge else None,
                           "identity": ev_ident, "is_loop_judge": ev is None, "key": key},
        }

    def prepare(self, resume: bool, *, load: bool = False) -> Dataset:
        """Open the dataset, check a resumed run matches, and record the run. With ``load``, local models load
        before the run is recorded, so a model that cannot load leaves no run behind."""
        dataset = load_dataset(self.settings.dataset, limit=self.settings.limit, seed=self.config.seed,
                               options=self.settings.dataset_options)
        remote = any(self._remote(t) for t in (*vars(self.tools).values(), self.eval_tool))
        if remote:  # tools run as Ray actors tell their identities (which run.json holds) once they have loaded
            asyncio.run(self.load())
        info = self.run_info(dataset)
        cluster = self.placement() if remote else None
        if cluster is not None:
            info["cluster"] = cluster
        old = self.store.read_run_info()
        if old is not None or not self.store.is_empty:
            if not resume:
                raise InputError(f"{self.store.dir} already holds a run; pass --resume to continue it, or choose "
                                 "another --run-dir")
            if old is not None:
                check_resume(old, info)
                info["created"] = old.get("created", info["created"])
                info["eval_judge"] = old.get("eval_judge", info["eval_judge"])
                if "rejudged" in old:
                    info["rejudged"] = old["rejudged"]
                # what may differ between sessions (limit, concurrency) stays on record, session by session
                info["resumes"] = [*old.get("resumes", []), {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                             "limit": self.settings.limit,
                                                             "max_samples": self.settings.max_samples,
                                                             **({"cluster": cluster} if cluster else {})}]
        if load and not remote:
            asyncio.run(self.load())
        self.store.write_run_info(info)
        self.info = info
        return dataset

    async def load(self) -> None:
        server_log_dir.set(self.store.dir / "servers")  # managed servers (vllm:) log into the run
        await self.tools.load()
        await load_tools(self.eval_tool)
        if self.eval_tool is not None and tool_identity(self.eval_tool) == tool_identity(self.tools.judge):
            await close_tools(self.eval_tool)  # the loop judge again (known now that actors have loaded)
            self.eval_tool = None

    # -- samples -------------------------------------------------------------------------------------------
    async def run(self, dataset: Dataset, before: Callable[[], Awaitable[None]] | None = None) -> None:
        """Refine every sample. ``before`` runs once the tools have loaded, in the same event loop and with
        the same tools (``bench --judge-check`` checks the run's judges there)."""
        done = await asyncio.to_thread(self.store.finished)
        self.progress.total = dataset.size
        try:
            await self.load()  # idempotent: loaded in prepare() when the CLI runs it
            if before is not None:
                await before()
            # One task per sample, at most max_samples at once: the scheduling work grows with the samples,
            # never with the cap (a cap far above the dataset starts no idle workers). A failure of the store
            # itself ends the run with its error instead of hanging.
            await for_each(_jobs(dataset), lambda job: self._job(job, done), self.settings.max_samples)
        finally:
            await self.tools.aclose()
            await close_tools(self.eval_tool)

    async def _job(self, job: tuple[int, Sample | SampleError], done: set[str]) -> None:
        index, item = job
        if item.id in done:  # finished in an earlier session
            self.progress.skipped += 1
        else:
            try:
                await self._sample(index, item)
            except Exception as exc:  # one sample's surprise must not end the run: record it, go on
                await asyncio.to_thread(self.store.fail_sample, item.id, index, f"internal error: {describe(exc)}",
                                        "internal_error", getattr(item, "category", None),
                                        getattr(item, "instruction", None))
                self.progress.errors += 1
        self.on_progress(self.progress)

    async def _sample(self, index: int, item: Sample | SampleError) -> None:
        if isinstance(item, SampleError):
            await asyncio.to_thread(self.store.fail_sample, item.id, index, item.error, item.kind)
            self.progress.errors += 1
            return
        try:
            source, edited, mask = await asyncio.to_thread(self._load_images, item)
            inputs = await asyncio.to_thread(self._store_inputs, item, source, edited, mask)
        except InputError as exc:
            await asyncio.to_thread(self.store.fail_sample, item.id, index, str(exc), "load_error", item.category,
                                    item.instruction)
            self.progress.errors += 1
            return

        async def on_round(rnd: Round) -> None:
            await asyncio.to_thread(self.store.put_round, item.id, rnd)

        result = await run_one(self.config, self.tools, source, item.instruction, edited=edited, sample_id=item.id,
                               runtime=self.runtime, on_round=on_round, context=item.context, mask=mask)
        traj = result.trajectory
        if result.failure is not None and isinstance(result.failure.cause, ToolUnavailableError):
            # the tool is gone (its actors died), not wrong about this sample: an error record, which --resume
            # runs again, replaying the calls that were made from the cache
            await asyncio.to_thread(self.store.fail_sample, item.id, index, str(result.failure), "tool_unavailable",
                                    item.category, item.instruction)
            self.progress.errors += 1
            return
        if self.eval_tool is not None:
            await self._evaluate(item, source, mask, traj, result.bank.get)
        await asyncio.to_thread(self.store.finish_sample, item.id, index, item.category, item.instruction, traj,
                                inputs, item.extra)
        self.progress.done += 1
        self.progress.rounds += len(traj.rounds)
        best = traj.best
        self.progress.passed += int(bool(best and best.verdict and best.verdict.passed))

    def _load_images(self, item: Sample) -> tuple[Image, Image | None, Image | None]:
        mp = self.config.max_pixels
        source = item.source.load(mp)
        edited = item.edited.load(mp) if item.edited is not None else None
        mask = item.mask.load(mp) if item.mask is not None else None
        return source, edited, mask

    def _store_inputs(self, item: Sample, source: Image, edited: Image | None, mask: Image | None) -> SampleInputs:
        """Keep the inputs in the image store: rejudging and reports need them after the run."""
        put = self.store.put_image
        return SampleInputs(source=put(source), edited=put(edited) if edited is not None else None,
                            mask=put(mask) if mask is not None else None, context=item.context)

    async def _evaluate(self, item: Sample, source: Image, mask: Image | None, traj: Trajectory,
                        image_of: Callable[[str], Image]) -> None:
        """Score every round with the evaluation judge: ablations may pick any round as final."""

        async def load(sha: str) -> Image:
            return image_of(sha)

        await score_rounds(self.store, self.runtime, self.eval_tool, self.info["eval_judge"]["key"],
                           run_seed=self.config.seed, sample_id=item.id, instruction=traj.instruction,
                           rounds=traj.rounds, source=source, mask=mask, context=item.context, load=load)


def _jobs(dataset: Dataset) -> Iterator[tuple[int, Sample | SampleError]]:
    """The dataset's rows with their index; a repeated id becomes an error record, so no result is overwritten.

    The record of a repeat gets a made-up id (``#row-N:ID``), which no real id can equal (loaders refuse real
    ids in that reserved form), so it never hides a later row; a row that already failed keeps its own error.
    """
    seen: set[str] = set()
    for index, item in enumerate(dataset):
        if item.id in seen:
            new_id, n = placeholder_id(index, item.id), 1
            while new_id in seen:  # only made-up ids can be taken (e.g. a loader's own): add a counter
                n += 1
                new_id = f"{placeholder_id(index, item.id)}#{n}"
            if isinstance(item, SampleError):
                item = item.model_copy(update={"id": new_id})
            else:
                item = SampleError(id=new_id, index=index, error=f"duplicate sample id {item.id!r}",
                                   kind="duplicate_id")
        seen.add(item.id)
        yield index, item
