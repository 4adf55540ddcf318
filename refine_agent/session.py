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

    def identities(self) -> dict[str, Any]:
        from .protocols import tool_identity

        return {k: tool_identity(v) for k, v in vars(self).items()}


def build_tools(config: RunConfig, registry: Registry | None = None) -> Toolset:
    """Create the run's tools. A refine editor equal to the editor is the same instance (one limiter)."""
    reg = registry or default_registry()

    def make(kind: str, spec: ToolSpec) -> Any:
        return reg.create(kind, spec.spec, spec.options)  # type: ignore[arg-type]

    editor = make("editor", config.editor)
    same = config.refine_editor is None or config.refine_editor == config.editor
    refine_editor = editor if same else make("editor", config.refine_editor)  # type: ignore[arg-type]
    return Toolset(editor=editor, refine_editor=refine_editor, judge=make("judge", config.judge),
                   critic=make("critic", config.critic))


async def run_one(config: RunConfig, tools: Toolset, source: Image, instruction: str, *,
                  edited: Image | None = None, sample_id: str = "sample",
                  runtime: Runtime | None = None, on_round: RoundCallback | None = None) -> RefineResult:
    return await refine(
        source, instruction, editor=tools.editor, refine_editor=tools.refine_editor, judge=tools.judge,
        critic=tools.critic, edited=edited, budget=config.budget, policy=config.policy, seed=config.seed,
        sample_id=sample_id, runtime=runtime or Runtime(config.runtime), on_round=on_round,
    )
