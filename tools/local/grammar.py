"""Constrained decoding for in-process models: xgrammar grammars from the output contracts.

A reply is constrained to the mode's JSON schema (or, for tag formats such as IE-Critic's, a regular
expression), so even a weak model gives a parseable answer, as vLLM's structured outputs do. Lessons built in:

- the token mask is sized from the model's logits width, which is often larger than ``len(tokenizer)``;
- each ``generate`` gets a new logits processor (its matchers hold per-call state);
- free-text fields are bounded by a pattern that excludes control characters, quotes and backslashes (a
  ``maxLength`` would still let escaped control characters through), and no free whitespace is allowed;
- special tokens are never allowed inside the reply (xgrammar masks every token that is not grammar text,
  except the stop tokens once the grammar is complete).

A row whose matcher rejects a token (it should not happen) stops being constrained instead of failing the
batch; the judge's parser then decides what the reply is worth.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass
from typing import Any

from refine_agent.tools.judges.prompts.contracts import text_budget

FREE_TEXT = r"[^\x00-\x1f\"\\]{0,%d}"
"""Bounded free text inside a JSON string: no control characters, quotes or backslashes."""


@dataclass(frozen=True)
class Constraint:
    """What a reply must match: a JSON schema (the structured output) or a regular expression."""

    json_schema: str | None = None  # canonical JSON text, so constraints compare and hash
    regex: str | None = None

    @classmethod
    def from_schema(cls, schema: dict[str, Any], max_tokens: int) -> Constraint:
        """The schema, its free text bounded so the whole reply fits in ``max_tokens`` (``text_budget``)."""
        limit = text_budget(max_tokens, max(1, len(_free_text_fields(schema))), _fixed_length(schema))
        # key order kept: properties are generated in the schema's order (reasoning before scores)
        return cls(json_schema=json.dumps(bounded_text(schema, limit)))


def _fixed_length(schema: dict[str, Any]) -> int:
    """Characters of a reply to ``schema`` other than its free text: keys, punctuation, enums, numbers."""
    total = 2
    for name, prop in (schema.get("properties") or {}).items():
        total += len(name) + 6  # "name": ..., with the separators xgrammar emits
        if "enum" in prop:
            total += max(len(str(e)) for e in prop["enum"]) + 2
        elif prop.get("type") in ("number", "integer"):
            total += 8
        elif prop.get("type") == "boolean":
            total += 5
        elif prop.get("type") == "string":
            total += 2
        elif prop.get("type") == "object":
            total += _fixed_length(prop)
    for option in schema.get("anyOf") or []:
        total = max(total, _fixed_length(option))
    return total


def _free_text_fields(schema: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "string" and not {"enum", "const", "pattern"} & node.keys():
                found.append(node)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return found


def bounded_text(schema: dict[str, Any], limit: int) -> dict[str, Any]:
    """The schema with a pattern on every free-text string (one without an enum, const or pattern)."""
    out = copy.deepcopy(schema)
    for node in _free_text_fields(out):
        node["pattern"] = "^" + FREE_TEXT % limit + "$"
        node.pop("maxLength", None)
    return out


class Grammars:
    """Compiles constraints for one tokenizer and logits width; compiled grammars are cached."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int] | None = None) -> None:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids)
        self.vocab_size = vocab_size
        self._compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._lock = threading.Lock()
        self._compiled: dict[Constraint, Any] = {}

    def compile(self, constraint: Constraint) -> Any:
        with self._lock:
            if constraint not in self._compiled:
                if constraint.json_schema is not None:
                    compiled = self._compiler.compile_json_schema(constraint.json_schema, any_whitespace=False,
                                                                  strict_mode=True)
                else:
                    assert constraint.regex is not None
                    compiled = self._compiler.compile_regex(constraint.regex)
                self._compiled[constraint] = compiled
            return self._compiled[constraint]

    def processor(self, constraints: list[Constraint | None]) -> RowConstrained:
        """A new logits processor for one ``generate`` over rows with these constraints (None: free)."""
        return RowConstrained([self.compile(c) if c is not None else None for c in constraints], self.vocab_size)


class RowConstrained:
    """A transformers logits processor applying each row's grammar (rows without one are left free)."""

    def __init__(self, compiled: list[Any | None], vocab_size: int) -> None:
        import xgrammar as xgr

        self.matchers = [xgr.GrammarMatcher(c) if c is not None else None for c in compiled]
        self.vocab_size = vocab_size
        self.bitmask = xgr.allocate_token_bitmask(len(compiled), vocab_size)
        self.started = False
        self.broken: list[int] = []  # rows whose matcher rejected a token: left free from then on

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import xgrammar as xgr

        if self.started:  # accept what each constrained row sampled last step
            for i, matcher in enumerate(self.matchers):
                if matcher is not None and not matcher.is_terminated():
                    if not matcher.accept_token(int(input_ids[i, -1])):
                        self.matchers[i] = None
                        self.broken.append(i)
        self.started = True
        rows = [i for i, m in enumerate(self.matchers) if m is not None and not m.is_terminated()]
        if not rows:
            return scores
        self.bitmask.fill_(-1)  # every token allowed; the constrained rows overwrite theirs
        for i in rows:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)  # type: ignore[union-attr]
        if scores.shape[-1] != self.vocab_size:
            raise RuntimeError(f"logits are {scores.shape[-1]} wide, the grammar's mask {self.vocab_size}")
        xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device))
        return scores
