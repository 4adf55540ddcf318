"""Build the tools a RunConfig names and run one refinement with them (what ``edit`` and ``refine`` do)."""

from __future__ import annotations

import importlib.util
import warnings
from dataclasses import dataclass
from typing import Any

from .config import RunConfig, ToolSpec
from .errors import MissingExtraError
from .images import Image
from .loop import RefineResult, RoundCallback, refine
from .placement import RayConfig, split_placement
from .registry import Registry, default_registry, load_target
from .runtime import Runtime

# The driver-side stand-in for a tool run as Ray actors; by import path, as the registry names tools, so the core
# never imports tools/ (nor ray).
RAY_TOOL = "refine_agent.tools.distributed.actor_tool:remote_tool"


@dataclass
class Toolset:
    editor: Any
    refine_editor: Any
    judge: Any
    critic: Any
    controller: Any = None  # agentic mode: an LLM picks every step; the critic is then unused

    def identities(self) -> dict[str, Any]:
        from .protocols import tool_identity

        return {k: tool_identity(v) for k, v in vars(self).items() if v is not None}

    async def load(self) -> None:
        """Load local models now (``ToolHooks.load``), so a folder that cannot load fails before any sample."""
        from .protocols import load_tools

        await load_tools(*vars(self).values())

    async def aclose(self) -> None:
        from .protocols import close_tools

        await close_tools(*vars(self).values())

    def placement(self) -> dict[str, Any] | None:
        """Where the tools run as Ray actors (the cluster, and each tool's actors), for run.json; None when every
        tool runs in this process. Read after ``load()``."""
        return placement_record(vars(self))


def placement_record(tools: dict[str, Any]) -> dict[str, Any] | None:
    """The cluster and the actors of each tool (by role) that runs as Ray actors; None if none does."""
    remote = {role: tool for role, tool in tools.items() if callable(getattr(tool, "placement_record", None))}
    if not remote:
        return None
    record: dict[str, Any] = {"tools": {}}
    seen: dict[int, str] = {}
    for role, tool in remote.items():
        if id(tool) in seen:  # one tool in two roles (the refine editor is the editor): its actors once
            record["tools"][role] = {"same_as": seen[id(tool)]}
            continue
        seen[id(tool)] = role
        cluster, actors = tool.placement_record()
        record.setdefault("cluster", cluster)
        record["tools"][role] = actors
    return record


def make_tool(kind: str, spec: ToolSpec, ray: RayConfig | None, registry: Registry | None = None) -> Any:
    """One tool: built here, or, with ``workers=N`` among its options, a stand-in whose N Ray actors build it."""
    placement, options = split_placement(kind, spec.options, ray)
    if placement is None:
        return (registry or default_registry()).create(kind, spec.spec, options)  # type: ignore[arg-type]
    if importlib.util.find_spec("ray") is None:
        raise MissingExtraError("ray", "ray", f"{kind} workers={placement.workers} (Ray actors)")
    return load_target(RAY_TOOL)(kind, spec.spec, options, placement, ray)


def build_tools(config: RunConfig, registry: Registry | None = None) -> Toolset:
    """Create the run's tools. A refine editor equal to the editor is the same instance (one limiter). Tools
    given ``workers=N`` run as Ray actors (``config.ray``); their actors start on ``Toolset.load()``."""

    def make(kind: str, spec: ToolSpec) -> Any:
        return make_tool(kind, spec, config.ray, registry)

    editor = make("editor", config.editor)
    same = config.refine_editor is None or config.refine_editor == config.editor
    refine_editor = editor if same else make("editor", config.refine_editor)  # type: ignore[arg-type]
    controller = make("controller", config.controller) if config.controller is not None else None
    critic = make("critic", config.critic) if controller is None else None
    tools = Toolset(editor=editor, refine_editor=refine_editor, judge=make("judge", config.judge), critic=critic,
                    controller=controller)
    if config.ray is not None and not any(hasattr(t, "placement_record") for t in vars(tools).values()):
        warnings.warn(f"--ray {config.ray.address}: no tool was given workers=N (e.g. -E workers=2), so every tool "
                      "runs in this process", stacklevel=2)
    return tools


async def run_one(config: RunConfig, tools: Toolset, source: Image, instruction: str, *,
                  edited: Image | None = None, sample_id: str = "sample", runtime: Runtime | None = None,
                  on_round: RoundCallback | None = None, context: dict[str, Any] | None = None,
                  mask: Image | None = None) -> RefineResult:
    """One sample with the fixed-policy loop, or with the controller when the config names one."""
    common = dict(editor=tools.editor, refine_editor=tools.refine_editor, judge=tools.judge, edited=edited,
                  budget=config.budget, seed=config.seed, sample_id=sample_id,
                  runtime=runtime or Runtime(config.runtime), on_round=on_round, context=context, mask=mask)
    if tools.controller is not None:
        from .agent import refine_with_controller

        return await refine_with_controller(source, instruction, controller=tools.controller, **common)  # type: ignore[arg-type]
    return await refine(source, instruction, critic=tools.critic, policy=config.policy, **common)  # type: ignore[arg-type]
