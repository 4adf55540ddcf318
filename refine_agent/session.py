"""Build the tools a RunConfig names and run one refinement with them (what ``edit`` and ``refine`` do)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import RunConfig, ToolSpec
from .images import Image
from .loop import RefineResult, RoundCallback, refine
from .registry import Registry, default_registry
from .runtime import Runtime


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


def build_tools(config: RunConfig, registry: Registry | None = None) -> Toolset:
    """Create the run's tools. A refine editor equal to the editor is the same instance (one limiter)."""
    reg = registry or default_registry()

    def make(kind: str, spec: ToolSpec) -> Any:
        return reg.create(kind, spec.spec, spec.options)  # type: ignore[arg-type]

    editor = make("editor", config.editor)
    same = config.refine_editor is None or config.refine_editor == config.editor
    refine_editor = editor if same else make("editor", config.refine_editor)  # type: ignore[arg-type]
    controller = make("controller", config.controller) if config.controller is not None else None
    critic = make("critic", config.critic) if controller is None else None
    return Toolset(editor=editor, refine_editor=refine_editor, judge=make("judge", config.judge), critic=critic,
                   controller=controller)


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
