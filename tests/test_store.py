from pathlib import Path

import pytest

from refine_agent.errors import InputError
from refine_agent.store import RunStore, SampleInputs, StoreCache
from refine_agent.types import Critique, EditResult, Round, StopReason, Trajectory, Usage, Verdict

from .conftest import solid


def traj(sample_id: str, n: int) -> Trajectory:
    rounds = [Round(index=i, instruction="x", base="source", image=solid(i).sha256,
                    verdict=Verdict(scores={"SC": [i, 9], "PQ": [9, 9]})) for i in range(n)]
    return Trajectory(sample_id=sample_id, instruction="x", source="s", seed=0, rounds=rounds, best_round=n - 1,
                      stop_reason=StopReason.max_rounds)


def test_images_are_content_addressed_and_checked(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    img = solid(7)
    sha = store.put_image(img)
    assert store.put_image(img) == sha and store.image_path(sha).is_file()
    assert store.get_image(sha) == img
    store.image_path(sha).write_bytes(solid(8).png_bytes())
    with pytest.raises(InputError, match="damaged"):
        store.get_image(sha)


async def test_results_round_trip_through_the_disk_cache(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    cache = StoreCache(store)
    edit = EditResult(image=solid(3), usage=Usage(cost_usd=0.5), info={"model": "m"})
    verdict = Verdict(scores={"SC": [5, 5], "PQ": [5, 5]}, passed=False, reasoning="meh")
    critique = Critique(satisfied=False, instruction="again", base="best")
    for key, value in (("k1", edit), ("k2", verdict), ("k3", critique)):
        await cache.put(key, value)
    reopened = StoreCache(RunStore(tmp_path, writer=False))
    got = await reopened.get("k1")
    assert got.image == solid(3) and got.usage.cost_usd == 0.5 and got.info == {"model": "m"}
    assert await reopened.get("k2") == verdict and await reopened.get("k3") == critique
    assert await reopened.get("nope") is None and reopened.hits == 3 and reopened.misses == 1
    assert store.count_results() == {"critic": 1, "editor": 1, "judge": 1}


def test_rounds_are_upserted_never_duplicated(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    r = Round(index=0, instruction="x", base="source")
    store.put_round("s", r)
    store.put_round("s", r.model_copy(update={"critique": Critique(satisfied=True)}))
    assert len(store.rounds("s")) == 1 and store.rounds("s")[0].critique is not None
    t = traj("s", 2)
    store.finish_sample("s", 0, "cat", "x", t, SampleInputs(source="a"))
    assert [r.index for r in store.rounds("s")] == [0, 1]
    store.finish_sample("s", 0, "cat", "x", traj("s", 1), SampleInputs(source="a"))  # a rewrite drops stale rounds
    assert [r.index for r in store.rounds("s")] == [0]


def test_samples_stream_in_dataset_order(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    for i in reversed(range(7)):
        if i == 3:
            store.fail_sample(f"s{i}", i, "bad row", "load_error")
        else:
            store.finish_sample(f"s{i}", i, "c", "x", traj(f"s{i}", 1), SampleInputs(source="a"), {"k": i})
    recs = list(store.iter_samples(batch=2))
    assert [r.index for r in recs] == list(range(7))
    assert recs[3].status == "error" and recs[3].error_kind == "load_error" and recs[3].trajectory is None
    assert recs[4].extra == {"k": 4} and recs[4].inputs == SampleInputs(source="a")
    assert store.finished() == {f"s{i}" for i in range(7) if i != 3}
    assert store.count_samples() == {"done": 6, "error": 1}


def test_evals_are_kept_per_judge(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    v = Verdict(passed=True)
    store.put_eval("j1", "s", 0, v)
    store.put_eval("j1", "s", 0, v)
    store.put_eval("j2", "s", 1, Verdict.failed("parse_error", "garbled"))
    assert store.evals("j1", "s") == {0: v}
    assert store.evals("j2", "s")[1].status == "parse_error"


def test_one_writer_per_run_directory(tmp_path: Path) -> None:
    from refine_agent.store import RunInUse

    first = RunStore(tmp_path)
    with pytest.raises(RunInUse, match="in use by another"):
        RunStore(tmp_path)
    RunStore(tmp_path, writer=False).count_samples()  # readers are welcome
    first.close()
    RunStore(tmp_path).close()


def test_a_failed_commit_rolls_back_and_the_store_keeps_working(tmp_path: Path) -> None:
    import sqlite3

    store = RunStore(tmp_path)
    other = sqlite3.connect(tmp_path / "records.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
    store._db.execute("PRAGMA busy_timeout=50")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        store.finish_sample("s", 0, "c", "x", traj("s", 1), SampleInputs(source="a"))
    other.execute("ROLLBACK")
    store.finish_sample("s", 0, "c", "x", traj("s", 1), SampleInputs(source="a"))
    assert not store._db.in_transaction and RunStore(tmp_path, writer=False).finished() == {"s"}


def test_a_placeholder_record_is_replaced_by_the_real_sample(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.fail_sample("row-2", 2, "row 2: not JSON", "load_error")
    store.finish_sample("real-2", 2, "c", "x", traj("real-2", 1), SampleInputs(source="a"))
    store.finish_sample("real-3", 3, "c", "x", traj("real-3", 1), SampleInputs(source="a"))
    assert [r.sample_id for r in store.iter_samples(batch=1)] == ["real-2", "real-3"]


async def test_a_lost_image_makes_its_cached_result_a_miss(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    cache = StoreCache(store)
    await cache.put("k", EditResult(image=solid(4)))
    store.image_path(solid(4).sha256).unlink()
    assert await cache.get("k") is None and store.count_results() == {}


def test_run_json(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert store.read_run_info() is None and store.is_empty
    store.write_run_info({"schema_version": 1, "x": "é"})
    assert RunStore(tmp_path, writer=False).read_run_info() == {"schema_version": 1, "x": "é"}
