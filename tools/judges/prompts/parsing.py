"""Tolerant, never-guessing parsers for judge and critic replies.

``parse_reply`` tries, in order: a JSON object (the whole reply, a fenced block, or the first balanced
``{...}`` in prose that validates; the ``{"score": [a, b]}`` shape too, for score-only schemas);
``<answer>...</answer>`` tags (a number, a ``[a, b]`` list, or yes/no); a yes/no reply; for score-only
schemas a single ``[a, b]`` list in field order, ``name: 8`` or ``8/10`` pairs. ``<think>`` blocks are set
aside (they become the reasoning when the answer has none). Whatever it finds is validated by the schema:
ranges, required fields, the count of scores. A reply that gives no unambiguous answer is an error, never a
default or a guess. Once a JSON object that names the schema's fields is found and fails validation, the
weaker forms are not tried.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .contracts import FieldSpec, field_specs

T = TypeVar("T", bound=BaseModel)
_MAX_CHARS = 200_000
_NUM = r"[-+]?\d+(?:\.\d+)?"
_TRUE = {"yes", "true", "pass", "passed", "passes"}
_FALSE = {"no", "false", "fail", "failed", "fails"}


@dataclass(frozen=True)
class ParseResult(Generic[T]):
    """``value`` when the reply validated, else ``error`` (one line). ``raw`` is the reply as received."""

    value: T | None
    error: str | None
    raw: str

    @property
    def ok(self) -> bool:
        return self.value is not None


class _Fail(Exception):
    """A definite problem with the reply: stop and report it."""


def parse_structured(schema: type[T], data: Any) -> ParseResult[T]:
    """Validate a reply that arrived already structured (OpenAI json_schema output, an Anthropic tool input)."""
    raw = data if isinstance(data, str) else json.dumps(data, default=str)
    if not isinstance(data, dict):
        return ParseResult(None, f"expected a JSON object, got {type(data).__name__}", raw)
    try:
        return ParseResult(_validate(schema, data), None, raw)
    except _Fail as exc:
        return ParseResult(None, str(exc), raw)


def parse_answer(schema: type[T], structured: Any, text: str | None, reasoning: str | None = None) -> ParseResult[T]:
    """The one way a VLM role reads a reply: the backend's structured output if it validates, else the text.

    ``reasoning`` is reasoning text the backend split out of the reply (e.g. vLLM's ``reasoning_content``); it
    is read as the reply's ``<think>`` part when the text has none."""
    if structured is not None:
        parsed = parse_structured(schema, structured)
        if parsed.value is not None:
            return parsed
    if reasoning and reasoning.strip() and "<think>" not in (text or ""):
        text = f"<think>{reasoning}</think>\n{text or ''}"
    return parse_reply(schema, text)


def parse_reply(schema: type[T], text: str | None) -> ParseResult[T]:
    """Parse a free-text reply into ``schema``; see the module docs for what is accepted."""
    raw = text or ""
    if not raw.strip():
        return ParseResult(None, "empty reply", raw)
    think, body = _split_think(raw[:_MAX_CHARS])
    try:
        value = _parse(schema, body, think)
    except _Fail as exc:
        return ParseResult(None, str(exc), raw)
    if value is None:
        names = ", ".join(s.name for s in field_specs(schema))
        where = " (the reply ends inside <think>: truncated?)" if not body.strip() and think else ""
        return ParseResult(None, f"no answer with the fields {names} found in the reply{where}", raw)
    return ParseResult(value, None, raw)


def _parse(schema: type[T], body: str, think: str) -> T | None:
    specs = {s.name: s for s in field_specs(schema)}
    failure: str | None = None
    scores = schema.score_fields()  # type: ignore[attr-defined]
    for obj in _json_objects(body):
        if not any(k in specs or (scores and k in ("score", "scores")) for k in obj):
            continue
        try:
            return _with_reasoning(_validate(schema, _normalize(schema, obj, specs)), think)
        except _Fail as exc:
            failure = failure or str(exc)
    if failure:
        raise _Fail(failure)
    answer = _answer_tag(body)
    if answer is not None:
        rest = re.sub(r"<answer>.*?</answer>", " ", body, flags=re.S | re.I).strip()
        return _from_text(schema, answer, think or rest, specs, tagged=True)
    return _from_text(schema, body, think, specs, tagged=False)


def _from_text(schema: type[T], text: str, reasoning: str, specs: dict[str, FieldSpec], *, tagged: bool) -> T | None:
    """The weaker forms: a yes/no word, a number list, named numbers or a single ``N/max``."""
    required = [n for n, f in schema.model_fields.items() if f.is_required()]
    bools = [n for n in required if specs[n].type == "boolean"]
    scores = schema.score_fields()  # type: ignore[attr-defined]
    values: dict[str, Any] | None = None
    if required == bools and len(bools) == 1:
        word = _yes_no(text, tagged)
        values = None if word is None else {bools[0]: word}
    elif schema.score_only():  # type: ignore[attr-defined]
        values = _named_scores(text, [specs[n] for n in scores]) or _score_list(text, scores)
        if values is None and len(scores) == 1:
            one = _single_number(text, specs[scores[0]], whole=tagged)
            values = None if one is None else {scores[0]: one}
    if values is None:
        if tagged:
            raise _Fail(f"could not read an answer for {', '.join(required)} in <answer>{text.strip()[:80]}</answer>")
        return None
    if "reasoning" in specs:
        values["reasoning"] = reasoning.strip() if tagged else (reasoning or text).strip()
    return _validate(schema, values)


# -- validation -------------------------------------------------------------------------------------------------
def _validate(schema: type[T], data: dict[str, Any]) -> T:
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _Fail(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:4]:
        loc = ".".join(str(x) for x in e["loc"]) or "reply"
        got = "" if e["type"] == "missing" or not e["loc"] else f" (got {e['input']!r:.40})"
        parts.append(f"{loc}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "; ".join(parts)


def _with_reasoning(value: T, think: str) -> T:
    if think and "reasoning" in type(value).model_fields and not getattr(value, "reasoning", "").strip():
        return value.model_copy(update={"reasoning": think.strip()})
    return value


def _normalize(schema: type[BaseModel], obj: dict[str, Any], specs: dict[str, FieldSpec]) -> dict[str, Any]:
    """``{"score": [a, b]}`` onto a score-only schema's fields, and ``"8/10"`` strings into numbers."""
    data = dict(obj)
    scores = schema.score_fields()  # type: ignore[attr-defined]
    packed = data.get("scores", data.get("score"))
    if scores and not any(n in data for n in scores) and isinstance(packed, (list, int, float)):
        packed = packed if isinstance(packed, list) else [packed]
        if len(packed) != len(scores):
            raise _Fail(f"expected {len(scores)} scores [{', '.join(scores)}], got {len(packed)}")
        data.update(zip(scores, packed, strict=True))
    for name in scores:
        if isinstance(data.get(name), str):
            data[name] = _fraction(data[name], specs[name]) or data[name]
    return data


# -- finding the answer in text ---------------------------------------------------------------------------------
def _split_think(text: str) -> tuple[str, str]:
    """(thinking, the rest). Handles ``<think>..</think>``, a bare leading ``..</think>`` and an unclosed one."""
    thoughts = re.findall(r"<think>(.*?)</think>", text, flags=re.S | re.I)
    body = re.sub(r"<think>.*?</think>", " ", text, flags=re.S | re.I)
    if re.search(r"</think>", body, flags=re.I):  # the opening tag was in the chat template
        head, _, body = re.split(r"(</think>)", body, maxsplit=1, flags=re.I)
        thoughts.insert(0, head)
    if re.search(r"<think>", body, flags=re.I):  # never closed: everything after it is thinking
        body, _, tail = re.split(r"(<think>)", body, maxsplit=1, flags=re.I)
        thoughts.append(tail)
    return "\n".join(t.strip() for t in thoughts if t.strip()), body


def _json_objects(text: str) -> list[dict[str, Any]]:
    """JSON objects in the text, in order: the whole text, fenced blocks, then each balanced ``{...}``."""
    chunks = [text.strip()]
    chunks += re.findall(r"```(?:json|JSON)?\s*(.*?)```", text, flags=re.S)
    chunks += _balanced(text)
    found, seen = [], set()
    for chunk in (c.strip() for c in chunks):
        obj = _load(chunk)
        if isinstance(obj, dict) and chunk not in seen:
            seen.add(chunk)
            found.append(obj)
    return found


def _balanced(text: str, limit: int = 64, starts: int = 256) -> list[str]:
    out: list[str] = []
    for start in [m.start() for m in re.finditer(r"\{", text)][:starts]:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            c = text[i]
            if in_str:
                if esc:
                    esc = False
                elif c == "\\":
                    esc = True
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    out.append(text[start:i + 1])
                    break
        if len(out) >= limit:
            break
    return out


def _load(chunk: str) -> Any:
    chunk = chunk.strip()
    if not chunk.startswith("{"):
        return None
    try:
        return json.loads(chunk)
    except ValueError:
        pass
    try:  # a Python-literal dict (single quotes, True/False)
        return ast.literal_eval(chunk)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _answer_tag(text: str) -> str | None:
    answers = {a.strip() for a in re.findall(r"<answer>(.*?)</answer>", text, flags=re.S | re.I)}
    if len(answers) > 1:
        raise _Fail(f"the reply has {len(answers)} different <answer> tags")
    return answers.pop() if answers else None


def _yes_no(text: str, tagged: bool) -> bool | None:
    def word(w: str) -> bool | None:
        w = w.lower()
        return True if w in _TRUE else False if w in _FALSE else None

    if tagged:
        m = re.match(r"\W*([A-Za-z]+)", text)
        return word(m.group(1)) if m else None
    labelled = {word(w) for w in re.findall(r"(?im)^\W*(?:final\s+)?(?:answer|verdict|decision|passed|result)\W*"
                                            r"[:=]\W*([A-Za-z]+)", text)} - {None}
    if len(labelled) > 1:
        raise _Fail("the reply answers both yes and no")
    if labelled:
        return labelled.pop()
    m = re.match(r"\W*([A-Za-z]+)\s*(?:[.,;:!\n]|$)", text)  # "Yes." / "No, because ..." but not "No changes..."
    return word(m.group(1)) if m else None


def _score_list(text: str, scores: list[str]) -> dict[str, Any] | None:
    lists = {tuple(re.findall(_NUM, m)) for m in re.findall(rf"\[\s*{_NUM}(?:\s*,\s*{_NUM})*\s*\]", text)}
    if not lists:
        bare = re.fullmatch(rf"\s*({_NUM}(?:\s*,\s*{_NUM})+)\s*", text)  # "8, 9" as a whole (an <answer>)
        lists = {tuple(re.findall(_NUM, bare.group(1)))} if bare else set()
    if not lists:
        return None
    if len(lists) > 1:
        raise _Fail(f"the reply has {len(lists)} different score lists")
    nums = lists.pop()
    if len(nums) != len(scores):
        raise _Fail(f"expected {len(scores)} scores [{', '.join(scores)}], got {len(nums)}")
    return dict(zip(scores, (float(x) for x in nums), strict=True))


def _named_scores(text: str, specs: list[FieldSpec]) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    for s in specs:
        pat = rf"(?<![A-Za-z_]){s.name}(?![A-Za-z_])[\"'*\s]*(?:score)?\s*[:=]\s*[\"'*]*\s*({_NUM}(?:\s*/\s*{_NUM})?)"
        values = {_fraction(v, s) for v in re.findall(pat, text, flags=re.I)}
        if len(values) > 1:
            raise _Fail(f"the reply gives {s.name} more than one value")
        if values:
            found[s.name] = values.pop()
    if found and len(found) < len(specs):
        missing = [s.name for s in specs if s.name not in found]
        raise _Fail(f"{', '.join(missing)}: Field required")
    return found or None


def _single_number(text: str, spec: FieldSpec, *, whole: bool) -> float | None:
    """One score from ``N/max`` (anywhere, when unambiguous) or, in an ``<answer>`` tag, a lone number."""
    fracs = {_fraction(m, spec) for m in re.findall(rf"{_NUM}\s*/\s*{_NUM}", text)}
    if len(fracs) > 1:
        raise _Fail(f"the reply gives {len(fracs)} different ratings")
    if fracs:
        return fracs.pop()
    nums = set(re.findall(_NUM, text)) if whole else set()
    if len(nums) > 1:
        raise _Fail(f"the answer holds {len(nums)} different numbers")
    return float(nums.pop()) if nums else None


def _fraction(text: str, spec: FieldSpec) -> float | None:
    """``"8"`` or ``"8/10"`` (the denominator must be the field's maximum) as a number."""
    m = re.fullmatch(rf"\s*({_NUM})\s*(?:/\s*({_NUM}))?\s*", text)
    if not m:
        return None
    if m.group(2) is not None and spec.maximum is not None and float(m.group(2)) != spec.maximum:
        raise _Fail(f"{spec.name}: {text.strip()} is not on the {spec.minimum:g}-{spec.maximum:g} scale")
    return float(m.group(1))
