"""Tool specs to tools: ``name``, ``name:model`` or ``pkg.module:Class``, resolved lazily.

Built-in and entry-point tools are registered by import path, so listing them imports nothing heavy. A
factory is a class or callable; if it has ``from_spec(model, options)`` that is used, otherwise it is
called with the options as keyword arguments.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from .errors import ConfigError, MissingExtraError, UnknownToolError
from .protocols import check_tool
from .types import ToolKind

ENTRY_POINT_GROUPS: dict[str, str] = {
    "editor": "refine_agent.editors",
    "judge": "refine_agent.judges",
    "critic": "refine_agent.critics",
    "controller": "refine_agent.controllers",
}
KINDS: tuple[ToolKind, ...] = ("editor", "judge", "critic", "controller")


@dataclass(frozen=True)
class ToolEntry:
    kind: ToolKind
    name: str
    target: str  # "package.module:attribute"
    summary: str = ""
    extra: str | None = None  # the pip extra that provides its dependencies
    origin: str = "built-in"


BUILTINS: tuple[ToolEntry, ...] = (
    ToolEntry("editor", "sim", "refine_agent.tools.editors.sim:SimEditor",
              "simulated editor for synthetic scenes, with realistic seeded failures"),
    ToolEntry("editor", "classic", "refine_agent.tools.editors.classic:ClassicEditor",
              "classical photo editor: tone, colour, blur/sharpen, rotate/flip, hue recolouring"),
    ToolEntry("judge", "verify", "refine_agent.tools.judges.verify:VerifyJudge",
              "reference-free verifier for synthetic scenes and classic photo edits"),
    ToolEntry("critic", "rule", "refine_agent.tools.critics.rule:RuleCritic",
              "turns the verifier's findings into a re-edit instruction and base"),
    ToolEntry("critic", "repeat", "refine_agent.tools.critics.repeat:RepeatCritic",
              "baseline: re-run the original instruction from the source with a new seed"),
    ToolEntry("editor", "openai", "refine_agent.tools.editors.openai_images:OpenAIImageEditor",
              "OpenAI Images edit endpoint (openai:gpt-image-1) or a compatible server", extra="api"),
    ToolEntry("editor", "diffusers", "refine_agent.tools.editors.diffusion.editor:DiffusersEditor",
              "open-weight editing pipeline on your GPUs (diffusers:PATH), with dynamic batching", extra="local"),
    ToolEntry("judge", "openai", "refine_agent.tools.judges.vlm:OpenAIJudge",
              "VLM judge over the OpenAI-compatible Chat API (OpenAI, vLLM, DashScope, ...)", extra="api"),
    ToolEntry("judge", "anthropic", "refine_agent.tools.judges.vlm:AnthropicJudge",
              "VLM judge over the Anthropic Messages API", extra="api"),
    ToolEntry("judge", "transformers", "refine_agent.tools.judges.vlm:TransformersJudge",
              "VLM judge in this process (transformers:PATH): Qwen-VL, IE-Critic-R1; batched, constrained output",
              extra="local"),
    ToolEntry("judge", "vllm", "refine_agent.tools.judges.vlm:VLLMJudge",
              "VLM judge on managed vllm serve replicas (vllm:PATH), started and stopped for the run (GPU)",
              extra="vllm"),
    ToolEntry("critic", "openai", "refine_agent.tools.critics.vlm:OpenAICritic",
              "VLM critic over the OpenAI-compatible Chat API", extra="api"),
    ToolEntry("critic", "anthropic", "refine_agent.tools.critics.vlm:AnthropicCritic",
              "VLM critic over the Anthropic Messages API", extra="api"),
    ToolEntry("critic", "transformers", "refine_agent.tools.critics.vlm:TransformersCritic",
              "VLM critic in this process (transformers:PATH); batched, constrained output", extra="local"),
    ToolEntry("critic", "vllm", "refine_agent.tools.critics.vlm:VLLMCritic",
              "VLM critic on managed vllm serve replicas (vllm:PATH) (GPU)", extra="vllm"),
    ToolEntry("critic", "from-judge", "refine_agent.tools.critics.vlm:FromJudgeCritic",
              "reads the critique a judge+critic judge already wrote: no extra call"),
    ToolEntry("controller", "llm", "refine_agent.tools.controllers.llm:LLMController",
              "a tool-calling LLM drives the refinement (llm:openai:MODEL or llm:anthropic:MODEL)", extra="api"),
)


def parse_spec(spec: str) -> tuple[str, str | None]:
    spec = spec.strip()
    if not spec:
        raise ConfigError("empty tool spec; use a name such as 'sim' or 'name:model'")
    head, sep, tail = spec.partition(":")
    return head, (tail if sep else None)


class Registry:
    def __init__(self, entries: tuple[ToolEntry, ...] = BUILTINS, *, use_entry_points: bool = True) -> None:
        self._entries: dict[tuple[str, str], ToolEntry] = {}
        for entry in entries:
            self.register(entry)
        self._use_entry_points = use_entry_points
        self._entry_points_loaded = False

    def register(self, entry: ToolEntry) -> None:
        self._entries[(entry.kind, entry.name)] = entry

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or not self._use_entry_points:
            return
        self._entry_points_loaded = True
        for kind, group in ENTRY_POINT_GROUPS.items():
            for ep in entry_points(group=group):
                if (kind, ep.name) not in self._entries:
                    dist = getattr(getattr(ep, "dist", None), "name", None) or "a plugin"
                    self.register(ToolEntry(kind, ep.name, ep.value, origin=f"plugin ({dist})"))  # type: ignore[arg-type]

    def entries(self, kind: ToolKind | None = None) -> list[ToolEntry]:
        self._load_entry_points()
        # Built-ins in the order they are declared, then plugins by name.
        order = {key: i for i, key in enumerate(self._entries)}
        return sorted((e for e in self._entries.values() if kind is None or e.kind == kind),
                      key=lambda e: (KINDS.index(e.kind), e.origin != "built-in",
                                     order[(e.kind, e.name)] if e.origin == "built-in" else 0, e.name))

    def names(self, kind: ToolKind) -> list[str]:
        return [e.name for e in self.entries(kind)]

    def resolve(self, kind: ToolKind, spec: str) -> tuple[Any, str | None, ToolEntry | None]:
        """The factory for ``spec`` and the model part (for ``name:model``)."""
        self._load_entry_points()
        head, model = parse_spec(spec)
        entry = self._entries.get((kind, head))
        if entry is not None:
            return load_target(entry.target, entry), model, entry
        if model is not None and ("." in head or _module_exists(head)):
            return load_target(spec), None, None
        known = ", ".join(self.names(kind)) or "none"
        raise UnknownToolError(
            f"unknown {kind} '{spec}'; known {kind}s: {known} "
            "(or give an import path such as my_pkg.module:MyTool)"
        )

    def create(self, kind: ToolKind, spec: str, options: dict[str, Any] | None = None) -> Any:
        factory, model, entry = self.resolve(kind, spec)
        options = dict(options or {})
        from_spec = getattr(factory, "from_spec", None)
        try:
            if callable(from_spec):
                tool = from_spec(model, options)
            else:
                tool = factory(**options)
        except TypeError as exc:
            raise ConfigError(f"{kind} '{spec}': cannot be built with options {sorted(options)}: {exc}") from None
        check_tool(kind, tool)
        return tool


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def load_target(target: str, entry: ToolEntry | None = None) -> Any:
    """Import ``module:attribute``. A missing optional package becomes an install hint."""
    module_name, _, attr = target.partition(":")
    if not attr:
        raise ConfigError(f"tool import path '{target}' needs the form package.module:Attribute")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if entry is not None and entry.extra and missing and not module_name.startswith(missing):
            raise MissingExtraError(missing, entry.extra, f"{entry.kind} '{entry.name}'") from None
        raise ConfigError(f"cannot import '{module_name}' for tool '{target}': {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module '{module_name}' has no attribute '{attr}' (from tool path '{target}')") from None


_default: Registry | None = None


def default_registry() -> Registry:
    global _default
    if _default is None:
        _default = Registry()
    return _default


def create_tool(kind: ToolKind, spec: str, options: dict[str, Any] | None = None) -> Any:
    return default_registry().create(kind, spec, options)
