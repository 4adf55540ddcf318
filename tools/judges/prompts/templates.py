"""Prompt templates: built-in ones by name, or a user's own file; and the text values that fill them.

A template is plain text with ``{name}`` placeholders for the known values (``KNOWN_VALUES``). ``{{`` and
``}}`` are literal braces; any other brace (a JSON example, say) is left as written. Values are inserted
verbatim in one pass, so braces or ``{placeholders}`` inside an instruction are never interpreted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from refine_agent.errors import ConfigError
from refine_agent.textio import read_text
from refine_agent.types import Round, Verdict, best_round_index

from .contracts import field_specs

TEMPLATE_DIR = Path(__file__).with_name("templates")
KNOWN_VALUES = ("instruction", "context", "history", "verdict", "format_instructions")
_OPTIONAL = {"context": ""}  # values that default to empty when the caller has none
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateError(ConfigError):
    """A prompt template that cannot be loaded or rendered."""


@dataclass(frozen=True)
class Template:
    """A prompt template. ``id`` (file stem + short sha256 of the text) identifies the exact wording."""

    name: str
    text: str
    source: str = "builtin"
    placeholders: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        found = frozenset(m.group(1) for m in _TOKEN.finditer(self.text) if m.group(1))
        unknown = sorted(found - set(KNOWN_VALUES))
        if unknown:
            raise TemplateError(f"prompt template {self.source}: unknown placeholder(s) "
                                f"{', '.join('{' + u + '}' for u in unknown)}; known: "
                                f"{', '.join('{' + k + '}' for k in KNOWN_VALUES)} (write {{{{ and }}}} for a "
                                f"literal brace)")
        object.__setattr__(self, "placeholders", found)

    @property
    def id(self) -> str:
        return f"{self.name}@{hashlib.sha256(self.text.encode('utf-8')).hexdigest()[:12]}"

    def render(self, **values: str | None) -> str:
        """Fill the placeholders. Every placeholder the template uses needs a value (``context`` defaults to
        empty); values the template does not use are ignored, except ``format_instructions``: a template
        without ``{format_instructions}`` (e.g. a benchmark's own wording) still gets them, appended at the end.
        A line holding only a placeholder whose value is empty is dropped."""
        unknown = sorted(set(values) - set(KNOWN_VALUES))
        if unknown:
            raise TemplateError(f"prompt template {self.name}: no such value(s) {', '.join(unknown)}; "
                                f"known: {', '.join(KNOWN_VALUES)}")
        vals = {**_OPTIONAL, **{k: "" if v is None else v for k, v in values.items()}}
        for k, v in vals.items():
            if not isinstance(v, str):
                raise TemplateError(f"prompt template {self.name}: value {k} must be text, not {type(v).__name__}")
        missing = sorted(self.placeholders - set(vals))
        if missing:
            raise TemplateError(f"prompt template {self.name} needs a value for {', '.join(missing)}")
        lines = [ln for ln in self.text.splitlines()
                 if not ((m := re.fullmatch(r"\s*\{([A-Za-z_]\w*)\}\s*", ln)) and not vals[m.group(1)].strip())]
        text = _TOKEN.sub(lambda m: vals[m.group(1)] if m.group(1) else m.group(0)[0], "\n".join(lines))
        extra = vals.get("format_instructions", "")
        if "format_instructions" not in self.placeholders and extra.strip():
            text = text.rstrip() + "\n\n" + extra
        return text.strip() + "\n"


def builtin_templates() -> list[str]:
    """The names of the built-in templates."""
    return sorted(p.stem for p in TEMPLATE_DIR.glob("*.md"))


def load_template(name_or_path: str | Path) -> Template:
    """A built-in template by name (``viescore_sc``) or a template file (UTF-8 text) by path."""
    key = str(name_or_path)
    builtin = TEMPLATE_DIR / f"{key}.md"
    if "/" not in key and "\\" not in key and builtin.is_file():
        return Template(key, builtin.read_text(encoding="utf-8"))
    path = Path(key).expanduser()
    if not path.is_file():
        raise TemplateError(f"prompt template '{key}' is neither a built-in ({', '.join(builtin_templates())}) "
                            f"nor a file")
    try:
        text = read_text(path)  # a BOM, as Windows editors write, is dropped
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read prompt template {path}: {exc}") from None
    if not text.strip():
        raise TemplateError(f"prompt template {path} is empty")
    return Template(path.stem, text, source=str(path))


# -- values -----------------------------------------------------------------------------------------------------
def format_instructions(schema: type[BaseModel]) -> str:
    """The reply-format part of a prompt, written from the schema the parser validates against."""
    specs = field_specs(schema)
    if getattr(schema, "reply_format", "json") == "tags":
        by_name = {s.name: s for s in specs}
        tags = getattr(schema, "tags", {})
        steps = [f"<{tag}> ... </{tag}>: " + ("" if by_name[f].type == "string" else f"{by_name[f].kind_text}. ")
                 + f"{by_name[f].description}." for tag, f in tags.items()]
        example = "\n".join(f"<{tag}>{_example(by_name[f])}</{tag}>" for tag, f in tags.items())
        return ("Reply in exactly this form, with the tags in this order and nothing after the last one:\n"
                + "\n".join(f"- {s}" for s in steps)
                + f"\nExample of the form (the values are placeholders; give your own):\n{example}")
    lines = [f'- "{s.name}": {s.kind_text}. {s.description}.' for s in specs]
    example = json.dumps({s.name: _example(s) for s in specs}, ensure_ascii=False)
    return ("Reply with one JSON object and nothing else, with exactly these fields, in this order:\n"
            + "\n".join(lines)
            + f"\nExample of the form (the values are placeholders; give your own):\n{example}")


def _example(spec: Any) -> Any:
    if spec.example is not None:
        return spec.example
    if spec.enum:
        return spec.enum[0]
    return {"boolean": True, "string": "..."}.get(spec.type, spec.minimum if spec.minimum is not None else 0)


_SCORE_NAMES = {"SC": "success, overediting", "PQ": "naturalness, artifacts"}


# Per-sample context that is not for the model's eyes: the judge uses RefEdit's masked instruction in place
# of the instruction (with masked images); no role sees it as context.
HIDDEN_CONTEXT = frozenset({"masked_instruction"})


def context_items(context: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    """The per-sample context a VLM role may see (e.g. RE-Edit's rationale): labelled, empty values dropped."""
    return [(k.replace("_", " "), v) for k, v in (context or {}).items()
            if k not in HIDDEN_CONTEXT and v not in (None, "")]


def format_context(context: Mapping[str, Any] | None, sep: str = "\n") -> str:
    """Per-sample context as prompt text: one ``label: value`` per line (``sep``); the same for every role."""
    return sep.join(f"{k}: {v}" for k, v in context_items(context))


def format_verdict(verdict: Verdict | None) -> str:
    """A judge's verdict as prompt text for a critic."""
    if verdict is None:
        return "(no judgment yet)"
    if not verdict.ok:
        return f"The judge could not score it ({verdict.status}): {verdict.reasoning.strip() or 'no reason given'}"
    parts = [] if verdict.overall is None else [f"overall {verdict.overall:.1f}/10"]
    for k, v in verdict.scores.items():
        label = f"{k} ({_SCORE_NAMES[k]})" if k in _SCORE_NAMES else k
        parts.append(f"{label}: " + ", ".join(f"{x:g}" for x in v))
    if verdict.passed is not None:
        parts.append("passed" if verdict.passed else "not passed")
    text = ("Judgment (scores 0-10): " + "; ".join(parts)) if parts else "No scores."
    if verdict.reasoning.strip():
        text += f"\nJudge's reasoning: {verdict.reasoning.strip()}"
    for f in verdict.findings:
        text += f"\n- {f.kind}: {f.message}"
    return text


def format_history(rounds: list[Round]) -> str:
    """Earlier rounds as prompt text for a critic: each round's instruction, base image and scores."""
    if not rounds:
        return "(none)"
    best = best_round_index(rounds)
    lines = []
    for r in rounds:
        v = r.verdict
        if r.error or v is None:
            outcome = f"failed: {r.error}" if r.error else "not judged"
        elif not v.ok:
            outcome = f"the judge could not score it ({v.status})"
        else:
            scores = ", ".join(f"{k} " + "/".join(f"{x:g}" for x in xs) for k, xs in v.scores.items())
            overall = "" if v.overall is None else f"overall {v.overall:.1f}"
            passed = "" if v.passed is None else ("passed" if v.passed else "not passed")
            outcome = "; ".join(p for p in (overall, scores, passed) if p)
        mark = " (best so far)" if r.index == best and len(rounds) > 1 else ""
        lines.append(f'Round {r.index} (edited from: {r.base}): "{r.instruction}" -> {outcome}{mark}')
    return "\n".join(lines)
