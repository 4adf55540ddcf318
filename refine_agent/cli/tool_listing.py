"""``refine-agent tools``: what editors, judges and critics exist, and which options each takes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..errors import InputError, RefineAgentError, describe
from ..registry import KINDS, default_registry, load_target

SIMULATION_OPTIONS = ("latency_ms", "max_concurrency", "fail_rate")


def option_lines(options_model: type[BaseModel] | None) -> list[str]:
    if options_model is None:
        return []
    lines = []
    fields = options_model.model_fields
    for name, f in fields.items():
        if name in SIMULATION_OPTIONS:
            continue
        default = f.default if f.default_factory is None else f.default_factory()  # type: ignore[call-arg]
        lines.append(f"{name}={default!r}  {f.description or ''}".rstrip())
    if all(name in fields for name in SIMULATION_OPTIONS):
        lines.append("+ simulation options: " + ", ".join(SIMULATION_OPTIONS))
    return lines


def describe_entry(entry: Any) -> tuple[str, list[str]]:
    """The tool's summary and options, importing it (lightly) if needed."""
    try:
        target = load_target(entry.target, entry)
    except RefineAgentError as exc:
        return entry.summary or "", [f"(unavailable: {exc})"]
    except Exception as exc:  # a broken plugin must not break the listing
        return entry.summary or "", [f"(unavailable: {describe(exc)})"]
    summary = entry.summary or getattr(target, "summary", "") or (target.__doc__ or "").strip().split("\n")[0]
    return summary, option_lines(getattr(target, "Options", None))


def print_tools(console: Console, kind: str | None = None) -> None:
    if kind is not None and kind not in KINDS:
        raise InputError(f"--kind must be one of {', '.join(KINDS)}, not '{kind}'")
    reg = default_registry()
    for k in KINDS:
        if kind is not None and k != kind:
            continue
        table = Table(title=f"{k}s", title_justify="left", show_lines=True)
        table.add_column("spec")
        table.add_column("what it is", max_width=48)
        table.add_column("options (-E/-J/-C key=value)")
        for entry in reg.entries(k):  # type: ignore[arg-type]
            summary, options = describe_entry(entry)
            name = Text(entry.name)
            if entry.origin != "built-in":
                name.append(f"\n{entry.origin}", style="dim")
            table.add_row(name, summary, "\n".join(options) or "-")
        console.print(table)
    console.print("Simulation options of built-in tools: latency_ms (service time per call, holding one "
                  "capacity slot), max_concurrency (capacity), fail_rate (seeded transient failures, retried).",
                  style="dim")
    console.print("Also: any my_pkg.module:Class that implements the protocol, and plugins registered under "
                  "the entry-point groups refine_agent.editors / .judges / .critics / .controllers.", style="dim")
