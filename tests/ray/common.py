"""Helpers for the Ray tests: bench runs to compare, the actors and processes of ours that are left."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from refine_agent.cli import app

NAMESPACE = "refine-agent"
COMPARED = ("improvement_rate", "mean_delta", "mean_delta_ci95", "p_value", "errors", "by_category", "n_samples")


def cli(*args: str) -> str:
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def same_numbers(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...] = COMPARED) -> None:
    """Two summaries agree on every number but timings."""
    def untimed(by_budget: dict[str, Any]) -> dict[str, Any]:
        return {k: {f: v for f, v in row.items() if f != "seconds_per_sample"} for k, row in by_budget.items()}

    assert untimed(a["by_budget"]) == untimed(b["by_budget"])
    for key in keys:
        assert a[key] == b[key], key


def records(run: Path) -> tuple[dict[str, int], int]:
    """Samples by status, and how many (sample, round) pairs are stored more than once."""
    with sqlite3.connect(run / "records.sqlite") as con:
        status = dict(con.execute("SELECT status, COUNT(*) FROM samples GROUP BY status").fetchall())
        dup = con.execute("SELECT COUNT(*) FROM (SELECT sample_id, round FROM rounds GROUP BY 1, 2 "
                          "HAVING COUNT(*) > 1)").fetchone()[0]
    return status, dup


def our_actors(ray: Any) -> list[str]:
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == NAMESPACE)


def no_actors_left(ray: Any, timeout: float = 20) -> None:
    """Every actor refine-agent created is gone (a kill takes a moment to reach the cluster's directory)."""
    deadline = time.monotonic() + timeout
    while our_actors(ray) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not our_actors(ray), our_actors(ray)


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie waiting for its parent is not)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            out.add(pid)
    return out
