"""How a run's SQLite store is opened: who may write it, how readers read it without changing a file, and
what a SQLite error means for the user.

- One writer at a time (bench, rejudge) holds an exclusive lock on ``RUN_DIR/.lock``.
- A reader (report, export, ablate) holds a shared lock while it reads, so it can open the database as
  immutable, which creates no file at all. A writer that finds readers waits a little for them.
- Where a writer is at work, or a killed one left results in the WAL, a reader goes through the WAL
  read-only, as SQLite requires (SQLite may then add its ``-shm`` file).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path
from typing import IO
from urllib.parse import quote

from .errors import InputError

FIX = "restore it from a backup, or start a new run with another --run-dir"
WRITER_WAIT_S = 10.0  # how long a writer waits for readers (report, export, ablate) to finish


class RunInUse(InputError):
    """Another process is writing or reading the same run directory."""


class StoreError(InputError):
    """A run directory whose store or run.json is missing, empty, damaged or unusable. Nothing was changed."""


def connect(db: Path, mode: str = "rw") -> sqlite3.Connection:
    """``rw``: a writer's connection. ``ro``: read-only through the WAL. ``immutable``: read-only, touching no
    file, for a store no writer can change meanwhile."""
    if mode == "rw":
        return sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    query = "mode=ro" if mode == "ro" else "immutable=1"
    return sqlite3.connect(f"file:{quote(str(db.resolve()))}?{query}", uri=True, check_same_thread=False,
                           isolation_level=None)


def pending_wal(db: Path) -> Path | None:
    """The WAL file when it holds commits not yet merged into the database (a writer at work, or killed)."""
    wal = db.with_name(db.name + "-wal")
    return wal if wal.exists() and wal.stat().st_size > 0 else None


def reader_lock(folder: Path) -> IO[str] | None:
    """A shared lock that keeps writers out while we read; None when a writer holds the run, or when there
    is no lock file to share (a copied run), since then a writer could start without seeing us."""
    try:
        f = open(folder / ".lock")  # noqa: SIM115 (held open until the store closes)
    except OSError:
        return None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def writer_lock(folder: Path, wait_s: float = WRITER_WAIT_S) -> IO[str]:
    """The exclusive lock of the one writer. Readers hold the lock only while they read, so wait for them a
    little; another writer is refused at once."""
    f = open(folder / ".lock", "a+")  # noqa: SIM115 (held open until the store closes)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            readers_only = _only_readers(f)
            if not readers_only or time.monotonic() >= deadline:
                f.close()
                who = ("being read by report, export or ablate" if readers_only
                       else "in use by another refine-agent process (bench or rejudge)")
                raise RunInUse(f"{folder} is {who}; wait for it to finish or stop it first") from None
            time.sleep(0.1)


def _only_readers(f: IO[str]) -> bool:
    """True when the lock is held shared (readers), not exclusively (a writer)."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return True


_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_UNUSABLE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")


def store_error(exc: sqlite3.Error, db: Path) -> StoreError | None:
    """What a SQLite error means for the user, or None for one that is our bug (let it surface as such)."""
    name = getattr(exc, "sqlite_errorname", "") or ""  # Python 3.11+
    text = str(exc).lower()
    if name.startswith(_DAMAGED) or "malformed" in text or "not a database" in text:
        return StoreError(f"{db} is damaged ({exc}); {FIX}")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        return StoreError(f"{db} is locked by another program ({exc}); try again once it is done")
    if name.startswith(_UNUSABLE) or any(w in text for w in ("disk is full", "disk i/o", "readonly",
                                                               "unable to open")):
        return StoreError(f"cannot use {db} ({exc}); free disk space or fix its permissions, then run the command "
                          "again (bench with --resume: nothing finished is lost)")
    return None


def folder_writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)
