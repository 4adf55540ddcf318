"""``bench --judge-check``: the judge check of a bench run (``RUN_DIR/judge_check.json``) and its entry in
``summary.json``.

A run is checked with the judge objects it has already loaded, on its own runtime (never a second copy of a
local model): its evaluation judge, and the loop judge too when that is another judge, since it picks the
rounds. Checks are matched to the run's judges by identity, so a resumed run does not check again, and after
``rejudge`` an old judge's check is never shown as the new judge's. The check informs; it never stops a run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from refine_agent.atomic import write_json
from refine_agent.cache import identity_hash
from refine_agent.protocols import tool_identity
from refine_agent.terminal import styled
from refine_agent.textio import read_our_json

from .datasets import load_dataset
from .judge_check import FILE_NAME, MAX_PASS_RATE, NON_EDITS, PROBES, judge_check, judged_anything, print_judge_check
from .report_html import identity as label
from .tables import pct

if TYPE_CHECKING:
    from .runner import Bench

ROLE_NAMES = {"eval": "the evaluation judge", "loop": "the loop judge"}
PROBE_WORDS = {"unchanged": "unchanged sources", "black": "black images", "noise": "noise images",
               "jpeg": "JPEG re-saves of the source", "mismatched": "edits under another sample's instruction"}
COMPACT = ("n", "pass_rate", "mean_overall", "mean_overall_ci95", "n_failed", "failed")


def _key(ident: dict[str, Any] | None) -> str:
    return identity_hash(ident or {})


def run_judges(run_info: dict[str, Any]) -> list[tuple[list[str], dict[str, Any]]]:
    """The judges a run's numbers rest on, each with its roles: one entry when the evaluation judge is the loop
    judge, else the evaluation judge, then the loop judge."""
    loop = (run_info.get("tools") or {}).get("judge") or {}
    ev = (run_info.get("eval_judge") or {}).get("identity") or loop
    return [(["eval", "loop"], loop)] if _key(ev) == _key(loop) else [(["eval"], ev), (["loop"], loop)]


def roles_text(roles: list[str]) -> str:
    return ROLE_NAMES[roles[0]] + (" (also the loop judge)" if len(roles) > 1 else "")


def read_checks(path: Path) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The checks in ``path``: (None, None) when there is none, (None, a warning) when it is damaged."""
    if not path.exists():
        return None, None

    def check(data: Any) -> list[dict[str, Any]]:
        checks = list(data["checks"])
        if not all(isinstance(c["judge"], dict) and isinstance(c["probes"], dict) for c in checks):
            raise TypeError
        return checks

    checks, why = read_our_json(path, check, "is not a judge check file (no checks list)")
    if why is None:
        return checks, None
    return None, (f"{path} {why}, so the judge check is left out; delete it and resume the run with "
                  "--judge-check to check again")


# -- the check, before a bench run's samples -------------------------------------------------------------------
def bench_judges(bench: Bench) -> list[tuple[list[str], Any]]:
    """The run's loaded judge objects with their roles (the same judges ``run_judges`` reads from run.json)."""
    ev, loop = bench.eval_tool, bench.tools.judge
    return [(["eval", "loop"], loop)] if ev is None else [(["eval"], ev), (["loop"], loop)]


def unchecked(bench: Bench) -> int:
    """How many of the run's judges have no check in judge_check.json yet."""
    kept = {_key(c["judge"]) for c in read_checks(bench.store.dir / FILE_NAME)[0] or []}
    return sum(_key(tool_identity(tool)) not in kept for _, tool in bench_judges(bench))


async def check_bench_judges(bench: Bench, limit: int, *,
                             on_sample: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Check the run's judges on the first ``limit`` samples of its dataset; a judge whose identity already has a
    check in judge_check.json (a resumed run) is not checked again. Writes the file when anything changed;
    returns the checks, each with its ``roles`` and ``reused``."""
    path = bench.store.dir / FILE_NAME
    old, _ = read_checks(path)
    kept = {_key(c["judge"]): c for c in old or []}
    checks: list[dict[str, Any]] = []
    for roles, tool in bench_judges(bench):
        done = kept.get(_key(tool_identity(tool)))
        if done is None:
            s = bench.settings
            data = await asyncio.to_thread(load_dataset, s.dataset, limit=limit, seed=bench.config.seed,
                                           options=s.dataset_options)
            cost = bench.runtime.stats.cost_usd
            # close=False: the run goes on with these very tools
            done = await judge_check(data, tool, runtime=bench.runtime, seed=bench.config.seed,
                                     max_samples=s.max_samples, max_pixels=bench.config.max_pixels,
                                     on_sample=on_sample, close=False)
            done.update(limit=limit, cost_usd=bench.runtime.stats.cost_usd - cost)
        checks.append({"roles": roles, **{k: v for k, v in done.items() if k not in ("roles", "reused")}})
    if checks != old:  # a resumed run with the same judges leaves the file as it is
        await asyncio.to_thread(write_json, path, {"checks": checks})
    for c in checks:
        c["reused"] = _key(c["judge"]) in kept
    return checks


def print_bench_checks(console: Console, checks: list[dict[str, Any]]) -> None:
    """Each judge's table, then one line: did the run's judges pass?"""
    for c in checks:
        how = "from judge_check.json (checked before)" if c.get("reused") else f"on the first {c.get('limit')} samples"
        console.print(f"Judge check of {roles_text(c['roles'])}, {how}:", style="bold", soft_wrap=True)
        print_judge_check(console, c)
    flagged = [c for c in checks if c["flagged"]]
    unclear = [c for c in checks if not c["flagged"] and not judged_anything(c)]
    if flagged:
        who = " and ".join(f"{roles_text(c['roles'])} {label(c['judge'])}" for c in flagged)
        console.print(styled(("judge check: FLAGGED:", "bold red"), f" {who}; the run goes on, and summary.json and "
                             "the report carry the warning"), soft_wrap=True)
    elif unclear:
        console.print(styled(("judge check: inconclusive", "yellow"), ": no non-edit judgment succeeded for "
                             + " and ".join(roles_text(c["roles"]) for c in unclear)), soft_wrap=True)
    else:
        console.print(styled(("judge check: passed", "green"), ": the run's judges do not reward non-edits"),
                      soft_wrap=True)


# -- summary.json ----------------------------------------------------------------------------------------------
def _status(check: dict[str, Any] | None) -> str:
    if check is None:
        return "not_checked"
    return "flagged" if check.get("flagged") else "passed" if judged_anything(check) else "inconclusive"


def judge_entry(roles: list[str], ident: dict[str, Any], check: dict[str, Any] | None) -> dict[str, Any]:
    """One judge in summary.json's ``judge_check``: compact figures of each probe that ran."""
    entry: dict[str, Any] = {"roles": roles, "identity": ident, "status": _status(check),
                             "flagged": None if check is None else bool(check.get("flagged"))}
    if check is not None:
        entry.update(n_samples=check.get("n_samples"), reasons=list(check.get("reasons") or []),
                     probes={name: {k: p.get(k) for k in COMPACT} for name in PROBES
                             if (p := check["probes"].get(name) or {}).get("n")})
    return entry


def flag_warning(entry: dict[str, Any]) -> str:
    """The warning for a flagged judge, naming what it rewards."""
    probes = entry.get("probes") or {}
    edits = (probes.get("edits") or {}).get("mean_overall")
    bad, above = [], []
    for name in NON_EDITS:
        p = probes.get(name) or {}
        if p.get("pass_rate") is not None and p["pass_rate"] > MAX_PASS_RATE:
            bad.append(f"{pct(p['pass_rate'])} of {PROBE_WORDS[name]}")
        if edits is not None and p.get("mean_overall") is not None and p["mean_overall"] > edits:
            above.append(PROBE_WORDS[name])
    what = "; ".join(([f"it passes {', '.join(bad)}"] if bad else [])
                     + ([f"it scores {', '.join(above)} above the real edits"] if above else []))
    who = roles_text(entry["roles"])
    why = "its scores may reward non-edits" if "eval" in entry["roles"] else "it picks the rounds, so the loop may " \
        "keep non-edits"
    return f"{who} {label(entry['identity'])} was flagged by the judge check: {what or 'see judge_check.json'}; {why}"


def add_judge_check(summary: dict[str, Any], run_dir: Path, run_info: dict[str, Any]) -> None:
    """Put ``judge_check`` (from RUN_DIR/judge_check.json, matched to the run's judges by identity) and its
    warnings into ``summary``; nothing when the run was never checked."""
    checks, damaged = read_checks(Path(run_dir) / FILE_NAME)
    if damaged is not None:
        summary["warnings"].append(damaged)
    if checks is None:
        return
    by_key = {_key(c["judge"]): c for c in checks}
    judges = [judge_entry(roles, ident, by_key.get(_key(ident))) for roles, ident in run_judges(run_info)]
    for j in judges:
        if j["status"] == "flagged":
            summary["warnings"].append(flag_warning(j))
        elif j["status"] == "not_checked":
            summary["warnings"].append(f"{roles_text(j['roles'])} {label(j['identity'])} was not checked: "
                                       "judge_check.json holds the check of other judges (from before a rejudge); "
                                       "resume the run with --judge-check to check it")
    summary["judge_check"] = {"file": FILE_NAME, "flagged": any(j["flagged"] for j in judges), "judges": judges}
