"""The run directory: ``run.json``, a transactional record store and content-addressed images.

::

    RUN_DIR/run.json            the full config, schema and package versions, tool identities (written first)
    RUN_DIR/records.sqlite      SQLite in WAL mode: tool results (the on-disk cache), rounds, samples, evals
    RUN_DIR/images/ab/<sha>.png every image, named by the sha256 of its pixels

Every write commits (and fsyncs) on its own, as soon as its call, round or sample finishes, so ``kill -9``
at any moment loses at most the calls in flight. An image file is durable before any record names it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .atomic import write_atomic, write_json
from .errors import InputError, describe, validation_message
from .images import Image, decode_image, max_image_bytes, read_image_file
from .store_access import (
    FIX,
    RunInUse,  # noqa: F401 (re-exported: callers catch it as refine_agent.store.RunInUse)
    StoreError,
    connect,
    folder_writable,
    pending_wal,
    reader_lock,
    store_error,
    writer_lock,
)
from .textio import read_text
from .types import ControllerDecision, Critique, EditResult, Round, Trajectory, Usage, Verdict

STORE_SCHEMA_VERSION = 1

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    sample_id TEXT PRIMARY KEY, idx INTEGER NOT NULL, category TEXT, instruction TEXT, status TEXT NOT NULL,
    error TEXT, error_kind TEXT, trajectory TEXT, extra TEXT, inputs TEXT, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    sample_id TEXT NOT NULL, round INTEGER NOT NULL, record TEXT NOT NULL, PRIMARY KEY (sample_id, round));
CREATE TABLE IF NOT EXISTS evals (
    judge TEXT NOT NULL, sample_id TEXT NOT NULL, round INTEGER NOT NULL, verdict TEXT NOT NULL,
    PRIMARY KEY (judge, sample_id, round));
CREATE INDEX IF NOT EXISTS samples_by_idx ON samples (idx);
"""
_REQUIRED_TABLES = {"meta", "results", "samples", "rounds", "evals"}
# What a run directory holds before its first record: a new run may start in a folder holding only these.
_RUN_FILES = {".lock", "images", "records.sqlite", "records.sqlite-wal", "records.sqlite-shm", "run.json"}


class SampleInputs(BaseModel):
    """What the tools saw besides the instruction: image hashes (in the image store) and judge context."""

    source: str
    edited: str | None = None
    mask: str | None = None
    context: dict[str, Any] = {}


class SampleRecord(BaseModel):
    sample_id: str
    index: int
    category: str | None
    instruction: str | None
    status: str  # "done" | "error"
    error: str | None = None
    error_kind: str | None = None
    trajectory: Trajectory | None = None
    extra: dict[str, Any] = {}
    inputs: SampleInputs | None = None


class RunStore:
    """One run directory. Thread-safe: one connection, one lock; call it from worker threads."""

    def __init__(self, run_dir: str | os.PathLike[str], *, writer: bool = True, create: bool = True) -> None:
        """Open a run directory. A writer holds an exclusive lock on it for its lifetime, so two processes never
        write one run, and makes the store when ``create`` (bench); otherwise the store must exist (rejudge).
        A reader (report, export, ablate) opens the store read-only and never creates or changes anything
        (see ``store_access``). A missing, empty, damaged or foreign store is a ``StoreError`` naming the file."""
        self.dir = Path(run_dir)
        self.db_path = self.dir / "records.sqlite"
        self.writer = writer
        self._lock = threading.Lock()
        self._lockfile: Any = None
        if writer and create and not (self.run_json.exists() and not self._has_records()):
            self._check_new_run_dir()
            self.dir.mkdir(parents=True, exist_ok=True)
        else:  # run.json without its records means the results were deleted: say so, never start afresh
            self._require_file()
        existed = self._has_records()
        try:
            self._db = self._open_writer() if writer else self._open_reader()
            self._db.execute("PRAGMA busy_timeout=10000")
            if existed:
                self._check_schema()  # before any write: never change a file that is not our store
            if writer:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # fsync every commit: a finished record survives a crash
            if not existed:
                self._create_tables()
            if writer:
                (self.dir / "images").mkdir(exist_ok=True)
        except sqlite3.Error as exc:
            self.close()
            raise (store_error(exc, self.db_path) or exc) from None
        except BaseException:
            self.close()
            raise

    def _has_records(self) -> bool:
        return self.db_path.is_file() and self.db_path.stat().st_size > 0

    def _create_tables(self) -> None:
        with self._transaction():  # all at once: a kill midway leaves an empty file, never half a schema
            for statement in _TABLES.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(STORE_SCHEMA_VERSION),))

    def _open_writer(self) -> sqlite3.Connection:
        self._lockfile = writer_lock(self.dir)
        return connect(self.db_path)

    def _open_reader(self) -> sqlite3.Connection:
        """Immutable (no file touched) while our shared lock keeps writers out and no commit waits in the WAL;
        otherwise read-only through the WAL, which needs a folder SQLite can add its -shm file to."""
        wal = pending_wal(self.db_path)
        lock = reader_lock(self.dir) if wal is None else None
        if lock is not None:
            self._lockfile = lock
            return connect(self.db_path, "immutable")
        if not folder_writable(self.dir):
            if wal is not None:
                raise StoreError(f"{wal} holds results not yet merged into {self.db_path.name}, and {self.dir} is "
                                 "not writable, so they cannot be read safely; run the command where the folder "
                                 "is writable")
            return connect(self.db_path, "immutable")  # a folder no one here can write: nothing can change
        return connect(self.db_path, "ro")

    def _check_new_run_dir(self) -> None:
        """bench makes its run in a new or empty folder, or continues its own: never among a user's files."""
        if os.path.lexists(self.dir) and not self.dir.is_dir():
            raise StoreError(f"--run-dir {self.dir} is not a folder; give a new or empty folder for the run")
        if self.dir.is_dir() and not self._has_records():
            foreign = sorted(p.name for p in self.dir.iterdir() if p.name not in _RUN_FILES)
            if foreign:
                raise StoreError(f"--run-dir {self.dir} holds {', '.join(foreign[:3])} and no run; give a new or "
                                 "empty folder for the run")

    def _require_file(self) -> None:
        if not self.dir.is_dir():
            what = "not a folder" if os.path.lexists(self.dir) else "no such folder"
            raise StoreError(f"{self.dir} is not a run directory ({what}); make one with 'refine-agent bench'")
        if not self.db_path.exists() and not self.run_json.exists():
            raise StoreError(f"{self.dir} is not a run directory (no records.sqlite, no run.json); make one with "
                             "'refine-agent bench'")
        if not self.db_path.is_file():
            raise StoreError(f"{self.db_path} is missing, so this run's results are gone; {FIX}")
        if self.db_path.stat().st_size == 0:
            raise StoreError(f"{self.db_path} is empty (0 bytes), so this run's results are gone; {FIX}")

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._query("SELECT name FROM sqlite_master WHERE type='table'")}
        if not _REQUIRED_TABLES <= tables:
            missing = ", ".join(sorted(_REQUIRED_TABLES - tables))
            raise StoreError(f"{self.db_path} holds no run records (tables {missing} are missing); {FIX}")
        rows = self._query("SELECT value FROM meta WHERE key='schema_version'")
        version = int(rows[0][0]) if rows and str(rows[0][0]).isdigit() else None
        if version != STORE_SCHEMA_VERSION:
            raise StoreError(f"{self.db_path} was written by a store of schema {version}; this version reads "
                             f"schema {STORE_SCHEMA_VERSION}. Use a new --run-dir.")

    # -- plumbing ------------------------------------------------------------------------------------------
    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        with self._lock, self._damage_as_error():
            self._db.execute(sql, args)

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._damage_as_error():
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One commit (fsynced) for everything inside, or none of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    @contextmanager
    def _damage_as_error(self) -> Iterator[None]:
        """A damaged or unusable database file is the user's to fix: say which file and what to do."""
        try:
            yield
        except sqlite3.Error as exc:
            err = store_error(exc, self.db_path)
            if err is None:
                raise
            raise err from None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            with self._lock:
                db.close()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lockfile is not None:
            self._lockfile.close()
            self._lockfile = None

    def require_samples(self) -> None:
        """Readers need something to read: a store with no sample record is an error, never '0 samples'."""
        if not self._query("SELECT 1 FROM samples LIMIT 1"):
            raise StoreError(f"{self.db_path} holds no sample yet (the run made none so far, or its dataset was "
                             "empty); wait for 'refine-agent bench' to finish one, or continue it with --resume")

    @property
    def is_empty(self) -> bool:
        return not self._query("SELECT 1 FROM samples LIMIT 1") and not self._query("SELECT 1 FROM results LIMIT 1")

    # -- run.json ------------------------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.dir / "run.json"

    def write_run_info(self, info: dict[str, Any]) -> None:
        write_json(self.run_json, info)

    def read_run_info(self) -> dict[str, Any] | None:
        """run.json, or None when there is none yet; a damaged one is a ``StoreError`` naming it."""
        if not self.run_json.exists():
            return None
        try:
            info = json.loads(read_text(self.run_json))  # a BOM, as Windows editors write, is dropped
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.run_json} is damaged ({describe(exc)}); restore it from a backup, or start a "
                             "new run with another --run-dir") from None
        if not isinstance(info, dict):
            raise StoreError(f"{self.run_json} is damaged (not a run description); restore it from a backup, or "
                             "start a new run with another --run-dir")
        return _with_later_defaults(info)

    def require_run_info(self) -> dict[str, Any]:
        """run.json, checked to describe a run (its config, dataset and tools), so a damaged field is an error
        naming the file here, before any work, not a crash halfway through a command."""
        info = self.read_run_info()
        if info is None:
            raise StoreError(f"{self.run_json} is missing, so {self.dir} is not a run directory; make one with "
                             "'refine-agent bench'")
        from .config import RunConfig  # the config's own schema says what a damaged field is

        try:
            full = RunConfig.model_validate(info.get("config")).model_dump(mode="json")
        except ValidationError as exc:
            raise StoreError(f"{self.run_json} is damaged ({validation_message(exc, 'its config')}); restore it "
                             "from a backup, or start a new run with another --run-dir") from None
        missing = _missing_keys(full, info["config"])  # bench writes the whole config: a default is no answer
        bad = [k for k in ("dataset", "tools") if not isinstance(info.get(k), dict)] + missing
        if bad or not isinstance(info["dataset"].get("spec"), str):
            raise StoreError(f"{self.run_json} is damaged ({', '.join(bad) or 'dataset.spec'} missing or of the "
                             "wrong type); restore it from a backup, or start a new run with another --run-dir")
        return info

    # -- images --------------------------------------------------------------------------------------------
    def image_path(self, sha: str) -> Path:
        return self.dir / "images" / sha[:2] / f"{sha}.png"

    def put_image(self, image: Image) -> str:
        path = self.image_path(image.sha256)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            write_atomic(path, image.png_bytes())
        return image.sha256

    def get_image(self, sha: str) -> Image:
        path = self.image_path(sha)
        try:  # a blob swapped for a FIFO or a huge file is refused, never read without bound
            img = decode_image(read_image_file(path, limit=max_image_bytes(2**62)), name=str(path), max_pixels=2**62)
        except InputError as exc:
            raise StoreError(f"{path} is damaged ({exc}); delete it and run 'bench --resume' to make it again") \
                from None
        if img.sha256 != sha:
            raise StoreError(f"{path} is damaged: its pixels do not match its name; delete it and run "
                             "'bench --resume' to make it again")
        return img

    # -- tool results (the on-disk cache) ------------------------------------------------------------------
    def get_result(self, key: str) -> Any | None:
        """A stored tool result, or None. A result whose image file is gone or damaged is dropped, so the call
        is made again instead of the run getting stuck on it."""
        rows = self._query("SELECT type, payload FROM results WHERE key=?", (key,))
        if not rows:
            return None
        try:
            return decode_result(rows[0][0], rows[0][1], self)
        except (OSError, InputError, ValidationError, ValueError, TypeError, KeyError):  # made again, not trusted
            self._exec("DELETE FROM results WHERE key=?", (key,))
            return None

    def put_result(self, key: str, kind: str, value: Any) -> None:
        type_name, payload = encode_result(value, self)
        self._exec("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                   (key, kind, type_name, payload, time.time()))

    def count_results(self) -> dict[str, int]:
        return dict(self._query("SELECT kind, COUNT(*) FROM results GROUP BY kind"))  # type: ignore[arg-type]

    # -- rounds and samples --------------------------------------------------------------------------------
    def put_round(self, sample_id: str, rnd: Round) -> None:
        self._exec("INSERT OR REPLACE INTO rounds VALUES (?, ?, ?)", (sample_id, rnd.index, rnd.model_dump_json()))

    def rounds(self, sample_id: str) -> list[Round]:
        rows = self._query("SELECT record FROM rounds WHERE sample_id=? ORDER BY round", (sample_id,))
        with self._record_of(sample_id):
            return [Round.model_validate_json(r[0]) for r in rows]

    def finish_sample(self, sample_id: str, index: int, category: str | None, instruction: str,
                      trajectory: Trajectory, inputs: SampleInputs, extra: dict[str, Any] | None = None) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM rounds WHERE sample_id=? AND round>=?", (sample_id, len(trajectory.rounds)))
            for rnd in trajectory.rounds:
                self._db.execute("INSERT OR REPLACE INTO rounds VALUES (?, ?, ?)",
                                 (sample_id, rnd.index, rnd.model_dump_json()))
            self._replace_sample(sample_id, index, category, instruction, "done", None, None,
                                 trajectory.model_dump_json(), json.dumps(extra or {}, default=str),
                                 inputs.model_dump_json())

    def _replace_sample(self, sample_id: str, index: int, *values: Any) -> None:
        """One record per dataset position: a row once stored under a placeholder id ('row-7') and now
        readable under its real id replaces the old record instead of sitting beside it."""
        self._db.execute("DELETE FROM samples WHERE idx=? AND sample_id<>?", (index, sample_id))
        self._db.execute("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (sample_id, index, *values, time.time()))

    def fail_sample(self, sample_id: str, index: int, error: str, kind: str, category: str | None = None,
                    instruction: str | None = None) -> None:
        with self._transaction():
            self._replace_sample(sample_id, index, category, instruction, "error", error, kind, None, "{}", None)

    def finished(self, *, include_errors: bool = False) -> set[str]:
        statuses = ("done", "error") if include_errors else ("done",)
        marks = ",".join("?" * len(statuses))
        return {r[0] for r in self._query(f"SELECT sample_id FROM samples WHERE status IN ({marks})", statuses)}

    def count_samples(self) -> dict[str, int]:
        return dict(self._query("SELECT status, COUNT(*) FROM samples GROUP BY status"))  # type: ignore[arg-type]

    def iter_samples(self, batch: int = 256) -> Iterator[SampleRecord]:
        """Every sample record in dataset order, read in batches so memory stays flat."""
        last: tuple[int, str] = (-1, "")
        while True:
            rows = self._query("SELECT sample_id, idx, category, instruction, status, error, error_kind, trajectory, "
                               "extra, inputs FROM samples WHERE (idx, sample_id) > (?, ?) "
                               "ORDER BY idx, sample_id LIMIT ?", (*last, batch))
            if not rows:
                return
            for sid, idx, cat, instr, status, err, kind, traj, extra, inputs in rows:
                with self._record_of(sid):
                    yield SampleRecord(sample_id=sid, index=idx, category=cat, instruction=instr, status=status,
                                       error=err, error_kind=kind,
                                       trajectory=Trajectory.model_validate_json(traj) if traj else None,
                                       extra=json.loads(extra or "{}"),
                                       inputs=SampleInputs.model_validate_json(inputs) if inputs else None)
            last = (rows[-1][1], rows[-1][0])

    @contextmanager
    def _record_of(self, sample_id: str) -> Iterator[None]:
        """A record that no longer parses is damage to the store: name the file and the sample."""
        try:
            yield
        except (ValidationError, ValueError, TypeError) as exc:
            raise StoreError(f"{self.db_path} is damaged: the record of sample {sample_id!r} cannot be read "
                             f"({describe(exc)}); {FIX}") from None

    # -- evaluation verdicts -------------------------------------------------------------------------------
    def put_eval(self, judge: str, sample_id: str, round_index: int, verdict: Verdict) -> None:
        self._exec("INSERT OR REPLACE INTO evals VALUES (?, ?, ?, ?)",
                   (judge, sample_id, round_index, verdict.model_dump_json()))

    def evals(self, judge: str, sample_id: str) -> dict[int, Verdict]:
        rows = self._query("SELECT round, verdict FROM evals WHERE judge=? AND sample_id=?", (judge, sample_id))
        with self._record_of(sample_id):
            return {r: Verdict.model_validate_json(v) for r, v in rows}

    # A best-of-N round's candidates are judged one by one, so that narrower widths can be replayed. Their
    # verdicts sit in the same table, under the judge's key with the candidate's index (keys are hex hashes).
    def put_candidate_eval(self, judge: str, sample_id: str, round_index: int, candidate: int,
                           verdict: Verdict) -> None:
        self.put_eval(f"{judge}#{candidate}", sample_id, round_index, verdict)

    def candidate_evals(self, judge: str, sample_id: str, n_candidates: int) -> dict[tuple[int, int], Verdict]:
        """(round, candidate) -> the evaluation verdict of that candidate's image, for candidates 0 to
        ``n_candidates`` - 1 (the most any round of the sample made; 0: none, and no query)."""
        if n_candidates <= 0:
            return {}
        keys = [f"{judge}#{k}" for k in range(n_candidates)]  # exact keys: the primary key finds them
        rows = self._query(f"SELECT judge, round, verdict FROM evals WHERE sample_id=? AND judge IN "
                           f"({', '.join('?' * len(keys))})", (sample_id, *keys))
        with self._record_of(sample_id):
            return {(r, int(j.rpartition("#")[2])): Verdict.model_validate_json(v) for j, r, v in rows}


# Config fields added after runs were made, with the value every older run had: such a run.json is complete.
LATER_DEFAULTS: dict[tuple[str, ...], Any] = {("policy", "candidates"): 1}


def _with_later_defaults(info: dict[str, Any]) -> dict[str, Any]:
    config = info.get("config")
    for path, value in LATER_DEFAULTS.items():
        node = config
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(path[-1], value)
    return info


def _missing_keys(full: Any, given: Any, prefix: str = "config.") -> list[str]:
    """The fields of ``full`` (a complete config) that ``given`` (as stored) leaves out."""
    if not isinstance(full, dict) or not isinstance(given, dict):
        return []
    out = []
    for key, value in full.items():
        if key not in given:
            out.append(prefix + key)
        elif key != "options":  # a tool's options are what was given, never filled in
            out += _missing_keys(value, given[key], f"{prefix}{key}.")
    return out


def open_run(run_dir: str | os.PathLike[str], *, writer: bool = False) -> tuple[RunStore, dict[str, Any]]:
    """An existing run with at least one sample, and its run.json: for report, export and ablate (read-only,
    nothing created or changed) and rejudge (a writer that never creates a store). A missing, empty or
    damaged store or run.json is a ``StoreError`` naming the file."""
    store = RunStore(run_dir, writer=writer, create=False)
    try:
        info = store.require_run_info()
        store.require_samples()
    except BaseException:
        store.close()
        raise
    return store, info


# -- result codec -------------------------------------------------------------------------------------------
def encode_result(value: Any, store: RunStore) -> tuple[str, str]:
    """Tool results as JSON; an edit's image goes to the image store and the record keeps its hash."""
    if isinstance(value, EditResult):
        sha = store.put_image(value.image)
        payload = {"image": sha, "usage": value.usage.model_dump(), "info": value.info}
        return "EditResult", json.dumps(payload, default=str)
    if isinstance(value, (Verdict, Critique, ControllerDecision)):
        return type(value).__name__, value.model_dump_json()
    raise TypeError(f"cannot store a {type(value).__name__} result")


def decode_result(type_name: str, payload: str, store: RunStore) -> Any:
    if type_name == "EditResult":
        data = json.loads(payload)
        return EditResult(image=store.get_image(data["image"]), usage=Usage(**data["usage"]), info=data["info"])
    if type_name == "Verdict":
        return Verdict.model_validate_json(payload)
    if type_name == "Critique":
        return Critique.model_validate_json(payload)
    if type_name == "ControllerDecision":
        return ControllerDecision.model_validate_json(payload)
    raise ValueError(f"unknown stored result type {type_name!r}")


class StoreCache:
    """The runtime's Cache on top of a RunStore: results survive the process, so a resumed run repeats no
    completed tool call. Reads and writes run in worker threads; the event loop never waits on disk."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> Any | None:
        value = await asyncio.to_thread(self.store.get_result, key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    async def put(self, key: str, value: Any) -> None:
        kind = {"EditResult": "editor", "Verdict": "judge", "Critique": "critic",
                "ControllerDecision": "controller"}.get(type(value).__name__, "?")
        await asyncio.to_thread(self.store.put_result, key, kind, value)
