"""Costs grow with the work, not the caps; an incomplete run says so; the outcome badges and the headline rates
are labelled apart (issue 8, Medium 5 and 9, Low).

Timings are only generous guards (a subprocess timeout): the assertions are on behaviour, such as how many
tasks a scheduler starts, how many replay steps a summary takes and how many rows it writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refine_agent.benchmarks import replay as replay_module
from refine_agent.benchmarks.concurrency import for_each
from refine_agent.benchmarks.metrics import budget_row, same_as
from refine_agent.benchmarks.replay import Cut, NotReplayable, replay, replay_budgets

from refine_agent.loop import LoopPolicy, best_round_index
from refine_agent.store import RunStore
from refine_agent.types import CallRecord, Critique, Round, StopReason, Trajectory, Usage, Verdict

from .conftest import cli, cli_subprocess

GUARD_S = 120  # far above the seconds these take; before the fix each ran for more than ten minutes


def _summary(run: Path, name: str = "summary.json") -> dict[str, Any]:
    return json.loads((run / name).read_text(encoding="utf-8"))


def _last_rounds(run: Path) -> list[int]:
    """The last round index of every finished sample, read-only from the store."""
    db = sqlite3.connect(f"file:{run / 'records.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT trajectory FROM samples WHERE trajectory IS NOT NULL").fetchall()
    finally:
        db.close()
    return [len(json.loads(t)["rounds"]) - 1 for (t,) in rows]


def _numbered_rows(by_budget: dict[str, dict[str, Any]]) -> list[int]:
    return sorted(int(b) for b, row in by_budget.items() if "same_as" not in row)


# -- schedulers: the workers follow the samples, not --max-samples ------------------------------------------------


class _CountingTask(asyncio.Task):  # type: ignore[type-arg]
    """A task that counts the done-callbacks put on it: a scheduler that waits on every pending task at each
    step puts one on each of them per step, so its count grows with items x pending, not with items."""

    callbacks = 0

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        _CountingTask.callbacks += 1
        super().add_done_callback(fn, context=context)


async def test_for_each_scheduling_is_linear_in_the_items_whatever_the_limit() -> None:
    n = 400
    started = asyncio.Event()
    done = [asyncio.Event() for _ in range(n)]
    count = 0

    async def work(i: int) -> None:  # all n run at once, then finish one at a time, in order
        nonlocal count
        count += 1
        if count == n:
            started.set()
        await (started.wait() if i == 0 else done[i - 1].wait())
        done[i].set()

    loop = asyncio.get_running_loop()
    loop.set_task_factory(lambda loop, coro, **kw: _CountingTask(coro, loop=loop, **kw))
    _CountingTask.callbacks = 0
    try:
        await asyncio.wait_for(for_each(iter(range(n)), work, 10**9), GUARD_S)
    finally:
        loop.set_task_factory(None)
    assert all(d.is_set() for d in done)
    # a few callbacks per task (its own, one final wait); a for_each that waits on all pending tasks at each
    # step puts tens of thousands here
    assert _CountingTask.callbacks <= 4 * n, _CountingTask.callbacks


async def test_for_each_keeps_to_the_limit() -> None:
    running, peak = 0, 0

    async def work(_: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    await asyncio.wait_for(for_each(iter(range(10)), work, 2), GUARD_S)
    assert peak == 2


def _items_then(error: Exception, n: int) -> Iterator[int]:
    yield from range(n)
    raise error


async def test_for_each_returns_only_after_its_tasks_have_cleaned_up() -> None:
    """If the items raise (a damaged store) or the caller is cancelled (Ctrl-C), the tasks are cancelled, and
    for_each returns only once they have finished: the caller then closes the tools they use."""
    cleaned: list[int] = []
    running = asyncio.Event()

    async def work(i: int) -> None:
        try:
            running.set()
            await asyncio.sleep(30)
        finally:
            await asyncio.sleep(0.05)  # cleanup that itself awaits (closing a connection, recording a failure)
            cleaned.append(i)

    with pytest.raises(OSError, match="damaged"):
        await asyncio.wait_for(for_each(_items_then(OSError("damaged store"), 3), work, 10), GUARD_S)
    assert sorted(cleaned) == [0, 1, 2]

    cleaned.clear()
    running.clear()
    job = asyncio.create_task(for_each(iter(range(3)), work, 10))
    await asyncio.wait_for(running.wait(), GUARD_S)
    await asyncio.sleep(0.01)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert sorted(cleaned) == [0, 1, 2]


async def test_for_each_raises_the_first_failure_and_cancels_the_rest() -> None:
    started: list[int] = []

    async def work(i: int) -> None:
        started.append(i)
        if i == 1:
            raise ValueError("boom")
        await asyncio.sleep(30)

    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(for_each(iter(range(1000)), work, 10**6), GUARD_S)
    assert len(started) < 1000  # it stopped pulling items at the failure


async def test_bench_starts_no_more_tasks_than_samples_under_a_huge_max_samples(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from refine_agent.benchmarks import runner

    from refine_agent.config import RunConfig
    from refine_agent.store import RunStore

    base = len(asyncio.all_tasks())
    running = peak_running = peak_tasks = 0
    real_for_each = runner.for_each

    async def watched(items: Any, fn: Any, limit: int) -> None:  # whatever the sample job is called
        async def job(item: Any) -> None:
            nonlocal running, peak_running, peak_tasks
            running += 1
            peak_running = max(peak_running, running)
            peak_tasks = max(peak_tasks, len(asyncio.all_tasks()) - base)
            try:
                await fn(item)
            finally:
                running -= 1

        await real_for_each(items, job, limit)

    monkeypatch.setattr(runner, "for_each", watched)
    store = RunStore(tmp_path / "run")
    bench = runner.Bench(RunConfig(budget={"max_rounds": 1}),
                         runner.BenchSettings(dataset="synthetic", limit=3, max_samples=100_000), store)
    data = bench.prepare(resume=False)
    await bench.run(data)
    store.close()
    assert 0 < peak_running <= 3  # one job per sample
    assert peak_tasks < 100  # and no idle workers (tool calls may hold a few tasks of their own): not 100000


def test_bench_with_a_huge_max_samples_ends_with_its_samples(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = cli_subprocess("bench", "synthetic", "--run-dir", run, "--limit", "30", "--max-samples", "100000",
                       timeout=GUARD_S)
    assert r.returncode == 0, r.stderr
    assert _summary(run)["n_samples"] == 30


# -- summaries and ablations: rows for the rounds run, one row for a budget past them -----------------------------


def test_budgets_past_every_sample_s_last_round_are_one_small_row(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = cli_subprocess("bench", "synthetic", "--run-dir", run, "--limit", "3", "--budgets", "0,100000",
                       timeout=GUARD_S)
    assert r.returncode == 0, r.stderr
    reached = max(_last_rounds(run))
    s = _summary(run)
    assert (run / "summary.json").stat().st_size < 64_000  # 91 MB before
    k = s["by_budget"]["100000"]["same_as"]
    assert k <= reached + 1 and str(k) in s["by_budget"] and s["budget"] == 100000
    assert _numbered_rows(s["by_budget"]) == list(range(k + 1))  # every budget that can differ, once
    a = _summary(run, "ablation.json")
    assert a["budgets"] == [0, 100000] and a["by_budget"]["100000"] == {"same_as": k}
    assert _numbered_rows(a["by_budget"]) == sorted({0, k})
    assert budget_row(a["by_budget"], 100000) == a["by_budget"][str(k)]
    out = " ".join(r.stdout.split())
    assert f"same as budget {k}" in out and f"budget 100000, same as budget {k}" in out


def test_a_huge_max_rounds_keeps_summary_and_report_to_the_rounds_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = cli_subprocess("bench", "synthetic", "--run-dir", run, "--limit", "10", "--max-rounds", "1000",
                       timeout=GUARD_S)
    assert r.returncode == 0, r.stderr
    r = cli_subprocess("report", run, timeout=GUARD_S)
    assert r.returncode == 0, r.stderr
    s = _summary(run)
    reached = max(_last_rounds(run))
    rows = _numbered_rows(s["by_budget"])
    assert rows[-1] <= reached + 1 and len(s["by_budget"]) <= reached + 3  # 1001 rows before
    assert s["by_budget"]["1000"] == {"same_as": rows[-1]}
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page.count('<tr class="same">') == 1 and f"same as budget {rows[-1]}" in page


def test_a_cap_past_any_machine_size_is_only_a_number(tmp_path: Path) -> None:
    run, huge = tmp_path / "run", str(10**20)
    r = cli("bench", "synthetic", "--run-dir", run, "--limit", "6", "--max-rounds", huge)
    assert r.exit_code == 0, r.output
    assert cli("report", run).exit_code == 0
    by_budget = _summary(run)["by_budget"]
    assert by_budget[huge] == {"same_as": _numbered_rows(by_budget)[-1]}
    r = cli("ablate", run, "--budgets", f"0,1,{huge}")
    assert r.exit_code == 0, r.output


def test_ablate_rows_stop_where_the_samples_stop(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("bench", "synthetic", "--run-dir", run, "--limit", "4", "--max-rounds", "300").exit_code == 0
    r = cli("ablate", run, "--budgets", ",".join(str(b) for b in range(0, 301, 3)))
    assert r.exit_code == 0, r.output
    (path,) = run.glob("ablation-*.json")
    a = json.loads(path.read_text(encoding="utf-8"))
    same = [b for b, row in a["by_budget"].items() if "same_as" in row]
    assert len(a["budgets"]) == 101 and len(a["by_budget"]) <= 101 + 1
    # a long list of budgets past the last round: tiny rows naming the one row that holds the numbers
    assert same and all(a["by_budget"][b] == {"same_as": a["by_budget"][same[0]]["same_as"]} for b in same)


def _as_controller_run(run: Path) -> None:
    """Make a finished fixed-policy run read as one a controller drove, which finished by round 2 at most."""
    store = RunStore(run, create=False)
    try:
        for rec in list(store.iter_samples()):
            if rec.trajectory is not None and rec.inputs is not None:
                rounds = rec.trajectory.rounds[:3]
                t = rec.trajectory.model_copy(update={"controller": "scripted-controller", "rounds": rounds,
                                                      "best_round": best_round_index(rounds),
                                                      "stop_reason": StopReason.controller_finished})
                store.finish_sample(rec.sample_id, rec.index, rec.category, rec.instruction or "", t, rec.inputs)
        info = store.require_run_info()
        info["config"]["controller"] = {"spec": "refine_agent.testing:ScriptedController", "options": {}}
        store.write_run_info(info)
    finally:
        store.close()


def test_a_controller_run_gains_no_budget_row_it_cannot_know(tmp_path: Path) -> None:
    """A controller run is known at budget 0 and at its own budget only: its samples ending early must not make
    up a row at the last round reached, nor turn the run's own budget into "same as" it."""
    run = tmp_path / "run"
    assert cli("bench", "synthetic", "--run-dir", run, "--limit", "6", "--max-rounds", "5").exit_code == 0
    _as_controller_run(run)
    assert max(_last_rounds(run)) <= 2  # the case: every sample ended before the run's budget
    r = cli("report", run)
    assert r.exit_code == 0, r.output
    s = _summary(run)
    assert s["budget"] == 5 and set(s["by_budget"]) == {"0", "5"}
    assert _numbered_rows(s["by_budget"]) == [0, 5]  # no {"same_as": k} row, no row k
    assert budget_row(s["by_budget"], 2) == {}  # between 0 and the run's budget: unknown
    assert "same as budget" not in r.output
    assert cli("ablate", run, "--budgets", "0,5").exit_code == 0
    r = cli("ablate", run, "--budgets", "0,2,5")
    assert r.exit_code == 2 and "6 samples cannot be replayed" in " ".join(r.output.split())
    assert "controller" in r.output


def test_a_budget_between_the_last_row_and_the_top_reads_as_the_last_row() -> None:
    """--limit 5 --max-rounds 50: rows 0..k and 50; any budget from k to 50 is row k, below k its own row."""
    rows = {str(b): {"n": 5, "mean_overall": float(b)} for b in range(4)}
    by_budget = {**rows, "50": {"same_as": 3}}
    assert budget_row(by_budget, 10) == budget_row(by_budget, 50) == budget_row(by_budget, "3") == rows["3"]
    assert same_as(by_budget, 10) == same_as(by_budget, 50) == 3 and same_as(by_budget, 3) is None
    assert budget_row(by_budget, 1) == rows["1"] and budget_row(by_budget, 51) == {}
    sparse = {"0": rows["0"], "3": rows["3"], "100000": {"same_as": 3}}  # ablate --budgets 0,100000
    assert budget_row(sparse, 2) == {} and budget_row(sparse, 7) == rows["3"]
    assert budget_row(rows, 4) == {}  # no budget past the last row was listed: nothing to say past it


# -- replay: one pass over the rounds, and the same answers as replaying budget by budget ---------------------------


def _round(i: int, rng: random.Random, *, last: bool) -> Round:
    calls = [CallRecord(kind="editor", tool="e", seconds=1, service_s=rng.random(), usage=Usage(cost_usd=0.01)),
             CallRecord(kind="judge", tool="j", seconds=1, service_s=rng.random(), usage=Usage(cost_usd=0.002))]
    failed_edit = i > 0 and rng.random() < 0.04
    status = "error" if rng.random() < 0.04 else "ok"
    overall = rng.choice([2.0, 4.0, 5.0, 6.5, 8.0, 9.0])
    verdict = (Verdict.failed(status, "judge failed") if status != "ok" else
               Verdict(scores={"SC": [overall, 10], "PQ": [10, 10]}, overall=overall, passed=overall >= 8))
    critique = None
    if not last or rng.random() < 0.5:
        calls.append(CallRecord(kind="critic", tool="c", seconds=1, service_s=rng.random(),
                                usage=Usage(cost_usd=0.001)))
        critique = Critique(satisfied=last, instruction="again")
    return Round(index=i, instruction="x", base="source" if i == 0 else "current",
                 image=None if failed_edit else f"img{i}", verdict=None if failed_edit else verdict,
                 critique=critique, calls=calls)


def _trajectory(rng: random.Random, n: int) -> Trajectory:
    rounds = [_round(i, rng, last=i == n - 1) for i in range(n)]
    reason = rng.choice([StopReason.max_rounds, StopReason.critic_satisfied, StopReason.passed,
                         StopReason.max_tool_calls, StopReason.patience, StopReason.critic_failed,
                         StopReason.critic_gave_up])
    return Trajectory(sample_id="s", instruction="x", source="src", seed=0, rounds=rounds, stop_reason=reason)


def _as_cut(traj: Trajectory, b: int, policy: LoopPolicy) -> Cut | str:
    try:
        rp = replay(traj, b, policy)
    except NotReplayable as exc:
        return str(exc)
    return Cut(rp.best_round, len(rp.rounds), rp.calls_by_kind, rp.cost_usd, rp.tool_seconds)


POLICIES = [LoopPolicy(), LoopPolicy(stop_on_pass=False), LoopPolicy(threshold=6.0), LoopPolicy(patience=2),
            LoopPolicy(stop_on_pass=False, patience=3)]


@pytest.mark.parametrize("seed", range(40))
def test_replaying_every_budget_in_one_pass_equals_replaying_each(seed: int) -> None:
    rng = random.Random(seed)
    traj = _trajectory(rng, rng.randint(1, 12))
    policy = rng.choice(POLICIES)
    last = len(traj.rounds) - 1
    cuts = replay_budgets(traj, range(last + 5), policy)
    sparse = sorted(rng.sample(range(last + 5), k=min(3, last + 5)))
    cuts_sparse = replay_budgets(traj, sparse, policy)
    for b in range(last + 8):
        got = cuts.at(b)
        assert (str(got) if isinstance(got, NotReplayable) else got) == _as_cut(traj, b, policy), b
        if b in sparse or b >= cuts_sparse.settles:
            g = cuts_sparse.at(b)
            assert (str(g) if isinstance(g, NotReplayable) else g) == _as_cut(traj, b, policy), b
    assert cuts.settles <= last + 1  # past the stored rounds nothing changes


def test_replaying_every_budget_is_one_pass_over_the_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(0)
    n = 3000
    rounds = [_round(i, rng, last=i == n - 1) for i in range(n)]
    for r in rounds:  # every round judged and edited, none passing: nothing stops before the end
        r.image, r.verdict = f"img{r.index}", Verdict(scores={"SC": [3, 10], "PQ": [10, 10]}, overall=3.0,
                                                      passed=False)
    traj = Trajectory(sample_id="s", instruction="x", source="src", seed=0, rounds=rounds,
                      stop_reason=StopReason.max_rounds)
    steps = 0
    real_stop = replay_module._stop

    def counting(*a: Any) -> Any:
        nonlocal steps
        steps += 1
        return real_stop(*a)

    monkeypatch.setattr(replay_module, "_stop", counting)
    cuts = replay_budgets(traj, range(10**9), LoopPolicy(patience=10**6))
    assert steps <= 2 * n  # one pass for the cuts, one to confirm where they settle; never rounds x budgets
    assert len(cuts.explicit) == n - 1 and cuts.settles == n - 1
    assert cuts.at(10**8) == cuts.at(n - 1)


# -- an incomplete run says so -------------------------------------------------------------------------------------


def _done(run: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{run / 'records.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def _kill_after(run: Path, n_done: int, *args: str) -> None:
    """Start a real bench, SIGKILL it once ``n_done`` samples have a record."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "refine_agent", "bench", "synthetic", "--run-dir", str(run), *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + GUARD_S
    while _done(run) < n_done and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=GUARD_S)


def test_a_killed_run_reads_as_incomplete_everywhere(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _kill_after(run, 3, "--limit", "12", "--max-samples", "1", "-E", "latency_ms=150")
    n = _done(run)
    assert 3 <= n < 12, n
    r = cli_subprocess("report", run, timeout=GUARD_S)
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert f"synthetic: incomplete: {n} of 12 samples" in out and f"warning: incomplete: {n} of 12" in out
    s = _summary(run)
    assert (s["n_samples"], s["n_expected"], s["complete"]) == (n, 12, False)
    assert s["warnings"][0].startswith(f"incomplete: {n} of 12 samples were run")
    page = (run / "report.html").read_text(encoding="utf-8")
    assert 'id="incomplete"' in page and f"incomplete: {n} of 12 samples" in page
    r = cli("ablate", run, "--budgets", "0,1")
    assert r.exit_code == 0 and f"incomplete: {n} of 12 samples" in " ".join(r.output.split())
    (path,) = run.glob("ablation-*.json")
    assert json.loads(path.read_text(encoding="utf-8"))["complete"] is False


def test_a_finished_run_reads_as_complete(tmp_path: Path) -> None:
    run = tmp_path / "run"
    r = cli("bench", "synthetic", "--run-dir", run, "--limit", "4", "--max-rounds", "1")
    assert r.exit_code == 0 and "incomplete" not in r.output
    s = _summary(run)
    assert (s["n_samples"], s["n_expected"], s["complete"]) == (4, 4, True)
    assert not any(w.startswith("incomplete") for w in s["warnings"])


# -- badges and rates: labelled apart ------------------------------------------------------------------------------


def test_outcome_badges_and_headline_rates_are_labelled_apart(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert cli("bench", "synthetic", "--run-dir", run, "--limit", "8", "--max-rounds", "2").exit_code == 0
    r = cli("report", run)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "improvement rate (fail -> pass)" in out and "regression rate (pass -> fail)" in out
    assert "fail->pass" in out and "improved" not in out  # "improved" is the badge's word only
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "<th>fail→pass</th>" in page and "<th>improved</th>" not in page
    assert "pass/fail first, then the overall score" in page and "count only pass/fail changes" in page
