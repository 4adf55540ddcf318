"""The options shared by ``edit`` and ``refine``, and how flags become a RunConfig.

Every option defaults to None so that only what the user gave overrides the config file. Each also reads
a ``REFINE_AGENT_*`` environment variable.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ..config import SEED_MAX, RunConfig, parse_key_values, read_config_file, validate_config
from ..errors import ConfigError
from ..loop import MAX_CANDIDATES
from ..types import TOOL_KINDS

TOOLS = "Tools"
LOOP = "Loop and budget"
RUN = "Run"

EditorOpt = Annotated[str | None, typer.Option(
    "--editor", "-e", envvar="REFINE_AGENT_EDITOR", rich_help_panel=TOOLS,
    help="Editor spec: sim, classic, provider:model or my_pkg.module:MyEditor \\[default: sim]")]
RefineEditorOpt = Annotated[str | None, typer.Option(
    "--refine-editor", envvar="REFINE_AGENT_REFINE_EDITOR", rich_help_panel=TOOLS,
    help="Editor for re-edits, if not the editor (RE-Edit style: a fixed executor refines another's edit)")]
JudgeOpt = Annotated[str | None, typer.Option(
    "--judge", "-j", envvar="REFINE_AGENT_JUDGE", rich_help_panel=TOOLS, help="Judge spec \\[default: verify]")]
CriticOpt = Annotated[str | None, typer.Option(
    "--critic", "-c", envvar="REFINE_AGENT_CRITIC", rich_help_panel=TOOLS, help="Critic spec \\[default: rule]")]
EditorKV = Annotated[list[str] | None, typer.Option(
    "--editor-opt", "-E", rich_help_panel=TOOLS, help="Editor option key=value (repeatable), e.g. -E skill=0.8")]
RefineEditorKV = Annotated[list[str] | None, typer.Option(
    "--refine-editor-opt", "-R", rich_help_panel=TOOLS, help="Refine-editor option key=value (repeatable)")]
JudgeKV = Annotated[list[str] | None, typer.Option(
    "--judge-opt", "-J", rich_help_panel=TOOLS, help="Judge option key=value (repeatable), e.g. -J noise=1")]
ControllerOpt = Annotated[str | None, typer.Option(
    "--controller", envvar="REFINE_AGENT_CONTROLLER", rich_help_panel=TOOLS,
    help="Let an LLM drive the rounds (agentic mode), e.g. llm:openai:gpt-4o; the critic is then unused")]
ControllerKV = Annotated[list[str] | None, typer.Option(
    "--controller-opt", "-K", rich_help_panel=TOOLS, help="Controller option key=value (repeatable)")]
CriticKV = Annotated[list[str] | None, typer.Option(
    "--critic-opt", "-C", rich_help_panel=TOOLS, help="Critic option key=value (repeatable)")]
MaxRoundsOpt = Annotated[int | None, typer.Option(
    "--max-rounds", envvar="REFINE_AGENT_MAX_ROUNDS", min=0, rich_help_panel=LOOP,
    help="Re-edit rounds after the one-shot round 0 (0 = one-shot only) \\[default: 3]")]
ThresholdOpt = Annotated[float | None, typer.Option(
    "--threshold", envvar="REFINE_AGENT_THRESHOLD", min=0, max=10, rich_help_panel=LOOP,
    help="Stop once the overall score reaches this (0-10)")]
PatienceOpt = Annotated[int | None, typer.Option(
    "--patience", envvar="REFINE_AGENT_PATIENCE", min=1, rich_help_panel=LOOP,
    help="Stop after this many rounds without beating the best")]
MaxSecondsOpt = Annotated[float | None, typer.Option(
    "--max-seconds", envvar="REFINE_AGENT_MAX_SECONDS", rich_help_panel=LOOP, help="Wall-clock budget (s)")]
MaxCostOpt = Annotated[float | None, typer.Option(
    "--max-cost", envvar="REFINE_AGENT_MAX_COST", rich_help_panel=LOOP, help="Cost budget (USD)")]
MaxCallsOpt = Annotated[list[str] | None, typer.Option(
    "--max-calls", rich_help_panel=LOOP, help="Tool-call budget kind=N, kind in editor/judge/critic/total")]
CandidatesOpt = Annotated[int | None, typer.Option(
    "--candidates", envvar="REFINE_AGENT_CANDIDATES", min=1, max=MAX_CANDIDATES, rich_help_panel=LOOP,
    help="Edits per round (best-of-N): each with its own seed and judged; the round keeps the best "
    "\\[default: 1]")]
BaseOpt = Annotated[str | None, typer.Option(
    "--base", rich_help_panel=LOOP,
    help="Always re-edit this image: current, source or best (default: the critic's choice)")]
KeepGoingOpt = Annotated[bool, typer.Option(
    "--keep-going", rich_help_panel=LOOP, help="Do not stop when the judge passes the edit; go on until the "
    "critic is satisfied or the budget runs out")]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", envvar="REFINE_AGENT_SEED", min=0, max=SEED_MAX, rich_help_panel=RUN, help="Run seed \\[default: 0]")]


def seed_option(help: str) -> Any:
    """The one seed option of the commands outside the run options: same name, same range, checked at parse."""
    return typer.Option("--seed", min=0, max=SEED_MAX, help=help)
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", envvar="REFINE_AGENT_CONFIG", rich_help_panel=RUN, help="Run config file (.yaml, .toml or .json)")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", "-o", envvar="REFINE_AGENT_OUT", rich_help_panel=RUN,
    help="Output directory \\[default: refine-agent-out/<source name>]")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", rich_help_panel=RUN,
    help="Write into a --out folder that holds files refine-agent did not write: files named like ours are "
    "replaced; no other file is touched")]
MaxPixelsOpt = Annotated[int | None, typer.Option(
    "--max-pixels", rich_help_panel=RUN, help="Largest image accepted, in pixels (decompression-bomb guard)")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", rich_help_panel=RUN, help="Per-call timeout in seconds")]
RetriesOpt = Annotated[int | None, typer.Option(
    "--max-attempts", min=1, rich_help_panel=RUN, help="Attempts per tool call for transient errors")]
RayOpt = Annotated[str | None, typer.Option(
    "--ray", envvar="REFINE_AGENT_RAY", rich_help_panel=RUN,
    help="Run the tools given -E/-J/-C workers=N as Ray actors on this cluster: local (started here, stopped at "
    "the end), auto (the running one) or ray://HOST:PORT (needs refine-agent[ray])")]


def _run_options(
    editor: EditorOpt = None, refine_editor: RefineEditorOpt = None, judge: JudgeOpt = None,
    critic: CriticOpt = None, editor_opt: EditorKV = None, refine_editor_opt: RefineEditorKV = None,
    judge_opt: JudgeKV = None, critic_opt: CriticKV = None, controller: ControllerOpt = None,
    controller_opt: ControllerKV = None, max_rounds: MaxRoundsOpt = None, threshold: ThresholdOpt = None,
    patience: PatienceOpt = None, max_seconds: MaxSecondsOpt = None,
    max_cost: MaxCostOpt = None, max_calls: MaxCallsOpt = None, candidates: CandidatesOpt = None,
    base: BaseOpt = None, keep_going: KeepGoingOpt = False, seed: SeedOpt = None, config: ConfigOpt = None,
    max_pixels: MaxPixelsOpt = None, timeout: TimeoutOpt = None, max_attempts: RetriesOpt = None,
    ray: RayOpt = None,
) -> None:
    """The options every run command takes; ``with_run_options`` copies them onto a command."""


F = TypeVar("F", bound=Callable[..., Any])


def with_run_options(command: F) -> F:
    """Add the shared run options to a command's signature; the command receives them as ``**flags``.

    One list of options for ``edit``, ``refine`` and the commands that follow, so they cannot drift.
    """
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    shared = list(inspect.signature(_run_options, eval_str=True).parameters.values())
    params = own + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in shared]
    command.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _tool(data: dict[str, Any], key: str, spec: str | None, kv: list[str] | None, source: str = "config") -> None:
    """Apply a tool flag: a new spec replaces the file's tool (and its options); -E/-J/... add options."""
    options = parse_key_values(kv, f"--{key.replace('_', '-')}-opt")
    current = data.get(key)
    if current is not None and not isinstance(current, (str, dict)):
        raise ConfigError(f"{source}: field '{key}' must be a tool spec such as 'sim', or a mapping with 'spec' "
                          f"and 'options', not {current!r}")
    if isinstance(current, str):
        current = {"spec": current}
    if spec is not None and (not isinstance(current, dict) or current.get("spec") != spec):
        current = {"spec": spec}
    if current is None:
        if not options:
            return
        default = RunConfig().model_dump()[key] if key != "refine_editor" else None
        if default is None:
            raise ConfigError("--refine-editor-opt needs --refine-editor")
        current = {"spec": default["spec"]}
    current = {**current, "options": {**current.get("options", {}), **options}}
    data[key] = current


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    if value is None:
        return
    *parents, leaf = path.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config field '{p}' must be a mapping")
    node[leaf] = value


def config_from_flags(*, config: Path | None, editor: str | None = None, refine_editor: str | None = None,
                      judge: str | None = None, critic: str | None = None, editor_opt: list[str] | None = None,
                      refine_editor_opt: list[str] | None = None, judge_opt: list[str] | None = None,
                      critic_opt: list[str] | None = None, controller: str | None = None,
                      controller_opt: list[str] | None = None, max_rounds: int | None = None,
                      threshold: float | None = None, patience: int | None = None,
                      max_seconds: float | None = None, max_cost: float | None = None,
                      max_calls: list[str] | None = None, candidates: int | None = None,
                      base: str | None = None, keep_going: bool = False,
                      seed: int | None = None, max_pixels: int | None = None, timeout: float | None = None,
                      max_attempts: int | None = None, ray: str | None = None) -> RunConfig:
    data = read_config_file(config) if config else {}
    source = f"config file {config}"
    _tool(data, "editor", editor, editor_opt, source)
    _tool(data, "refine_editor", refine_editor, refine_editor_opt, source)
    _tool(data, "judge", judge, judge_opt, source)
    _tool(data, "critic", critic, critic_opt, source)
    if controller is not None or controller_opt:
        if controller is None and not isinstance(data.get("controller"), (str, dict)):
            raise ConfigError("--controller-opt needs --controller")
        _tool(data, "controller", controller, controller_opt, source)
    for path, value in (("budget.max_rounds", max_rounds), ("budget.max_seconds", max_seconds),
                        ("budget.max_cost", max_cost), ("policy.threshold", threshold),
                        ("policy.patience", patience), ("policy.force_base", base),
                        ("policy.candidates", candidates), ("seed", seed),
                        ("max_pixels", max_pixels), ("runtime.timeout_s", timeout),
                        ("runtime.retry.max_attempts", max_attempts)):
        _set(data, path, value)
    if keep_going:
        _set(data, "policy.stop_on_pass", False)
    if ray is not None:  # the address replaces the file's; its other ray settings stay
        current = data.get("ray")
        data["ray"] = {**current, "address": ray} if isinstance(current, dict) else {"address": ray}
    for kind, n in parse_key_values(max_calls, "--max-calls").items():
        if kind not in (*TOOL_KINDS, "controller", "total"):
            raise ConfigError(f"--max-calls {kind}={n}: kind must be editor, judge, critic, controller or total")
        _set(data, f"budget.max_calls.{kind}", n)
    return validate_config(data, f"config {config} with the command-line options" if config else "options")
