"""``refine-agent ablate``: every budget from one stored run, with no new tool calls.

A run at budget B holds, as prefixes, the runs at every smaller budget (see ``replay``). The stop rule can
be changed too where the stored rounds decide it; otherwise the command refuses instead of guessing.
"""

from __future__ import annotations

import hashlib
from typing import Any

from refine_agent.errors import InputError
from refine_agent.loop import LoopPolicy
from refine_agent.store import RunStore

from .evaluate import budget_rows, collect, completeness, eval_key, width_rows
from .metrics import finite
from .replay import replayable_fields
from .widths import check_widths, run_depth, run_width


def parse_counts(text: str, flag: str, least: int, example: str) -> list[int]:
    """``"0, 2,1"`` -> ``[0, 1, 2]``: whole numbers of at least ``least``, sorted, each once."""
    try:
        counts = sorted({int(x) for x in text.replace(" ", "").split(",") if x != ""})
    except ValueError:
        raise InputError(f"{flag} '{text}': give whole numbers separated by commas, e.g. {example}") from None
    if not counts or counts[0] < least:
        raise InputError(f"{flag} '{text}': give whole numbers of at least {least}, e.g. {example}")
    return counts


def parse_budgets(text: str) -> list[int]:
    return parse_counts(text, "--budgets", 0, "0,1,2,3")


def parse_widths(text: str) -> list[int]:
    return parse_counts(text, "--candidates", 1, "1,2,4,8")


def ablate(store: RunStore, run_info: dict[str, Any], budgets: list[int] | None,
           overrides: dict[str, Any] | None = None, widths: list[int] | None = None) -> dict[str, Any]:
    """``ablation.json``: the same ``by_budget`` shape as ``summary.json``: one entry per budget, each one past
    the last that changes anything as ``{"same_as": k}``; with ``widths``, ``by_candidates``: one entry per
    width (best-of-n), at the run's own depth."""
    top = run_depth(run_info)
    if widths is not None:
        check_widths(run_info, widths)
    if budgets is None:
        budgets = [] if widths is not None else [top]
    if budgets and budgets[-1] > top:
        raise InputError(f"budget {budgets[-1]} is beyond the run's --max-rounds {top}; a replay cannot add rounds. "
                         f"Rerun with --max-rounds {budgets[-1]} (or 'bench --budgets ...')")
    run_policy = LoopPolicy.model_validate(run_info["config"]["policy"])
    policy = run_policy.model_copy(update=_given(overrides))
    collected = collect(store, run_info, budgets, policy)
    by_budget, not_replayable = budget_rows(collected, budgets)
    by_width: dict[str, dict[str, Any]] = {}
    if widths is not None:
        by_width, narrower = width_rows(store, run_info, widths, policy)
        not_replayable = list(dict.fromkeys([*not_replayable, *narrower]))
    if not_replayable:
        n = len(not_replayable)  # one reason per sample
        what = _describe(overrides) + (f", widths {','.join(map(str, widths))}" if widths else "")
        raise InputError(f"cannot replay {what}: {n} {'sample' if n == 1 else 'samples'} cannot be "
                         f"replayed at every budget and width asked for (first: {not_replayable[0]}). Replayable: "
                         f"{replayable_fields(run_policy)}. Rerun with the new settings instead")
    ev = run_info.get("eval_judge") or {}
    return finite({
        "budgets": budgets,
        "policy": policy.model_dump(mode="json"),
        "run_policy": run_policy.model_dump(mode="json"),
        "replayable": replayable_fields(run_policy),
        "eval_judge": ev.get("identity"),
        "eval_judge_is_loop_judge": eval_key(run_info) is None,
        "n_samples": collected.totals["n_samples"],
        **completeness(run_info, collected.totals["n_samples"]),
        "by_budget": by_budget,
        **({"widths": widths, "run_candidates": run_width(run_info), "by_candidates": by_width}
           if widths is not None else {}),
    })


def ablation_file(budgets: list[int] | None, overrides: dict[str, Any] | None = None,
                  widths: list[int] | None = None) -> str:
    """The file an ``ablate`` replay writes, named after what it replays, so replays never overwrite each other
    or the ``ablation.json`` of ``bench --budgets``."""
    parts = ["budgets", "_".join(map(str, budgets))] if budgets else []
    parts += ["candidates", "_".join(map(str, widths))] if widths else []
    parts += [f"{k.replace('_', '-')}-{str(v).lower()}" for k, v in sorted(_given(overrides).items())]
    name = "ablation-" + "-".join(parts)
    if len(name) > 120:  # a long list of budgets: a short stable name instead
        name = "ablation-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return name + ".json"


def _given(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The stop-rule overrides actually given (None means: as the run had it)."""
    return {k: v for k, v in (overrides or {}).items() if v is not None}


def _describe(overrides: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in _given(overrides).items()) or "these budgets"
