"""The instruction language of synthetic scenes: parse, render and resolve referring expressions.

One grammar serves the dataset generator (render), the ``sim`` editor and the ``verify`` judge (parse,
resolve) and the ``rule`` critic (render). A referring expression names a shape, optionally with a colour,
a size, a relative position among look-alikes ("on the left") and an absolute area ("in the top-left
area"). Emphasis phrases ("changing nothing else", "completely", "without leaving marks") ask an editor to
be careful; the sim editor fails less when they are present.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from .palette import BACKGROUND_COLOURS, SHAPE_COLOURS
from .scene import COLS, ROWS, SHAPES, cell_name

Category = Literal["color_alter", "subject-add", "subject-remove", "subject-replace", "size_change",
                   "background_change", "cleanup"]
TASK_CATEGORIES: tuple[str, ...] = ("color_alter", "subject-add", "subject-remove", "subject-replace",
                                    "size_change", "background_change")
Relative = Literal["left", "right", "top", "bottom"]
Emphasis = Literal["only", "completely", "cleanly"]

EMPHASIS_TEXT: dict[str, str] = {
    "only": "changing nothing else",
    "completely": "completely",
    "cleanly": "without leaving marks",
}


class ParseError(ValueError):
    """The text is not an instruction of the synthetic-scene grammar."""


class RefExpr(BaseModel):
    shape: str
    colour: str | None = None
    size: str | None = None
    relative: Relative | None = None
    cell: tuple[int, int] | None = None

    def qualifiers(self) -> int:
        return sum(x is not None for x in (self.size, self.relative, self.cell))


class SceneInstruction(BaseModel):
    category: Category
    ref: RefExpr | None = None
    colour: str | None = None  # new colour (color_alter, add, replace) or background colour
    shape: str | None = None  # new shape (add, replace)
    size: str | None = None  # size of an added object
    direction: Literal["larger", "smaller"] | None = None
    cell: tuple[int, int] | None = None  # where to add, or where to clean up
    emphasis: list[Emphasis] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------- parsing
def _alt(words: Sequence[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_COLOR = _alt(list(SHAPE_COLOURS))
_BG = _alt(list(BACKGROUND_COLOURS))
_SHAPE = _alt(SHAPES)
_SIZE = "small|large"
_CELLS = {cell_name((r, c)): (r, c) for r in range(3) for c in range(3)}
_CELLN = _alt(list(_CELLS))
_REL_PRE = {"leftmost": "left", "rightmost": "right", "topmost": "top", "uppermost": "top",
            "bottommost": "bottom", "lowest": "bottom", "lowermost": "bottom"}
_REL_POST = {"on the left": "left", "on the right": "right", "at the top": "top", "at the bottom": "bottom",
             "on the top": "top", "on the bottom": "bottom"}
_AREA = r"(?: (?:area|corner|region|part|side))?"


def _ref(p: str) -> str:
    return (rf"the (?:(?P<{p}rel1>{_alt(list(_REL_PRE))}) )?(?:(?P<{p}size>{_SIZE}) )?"
            rf"(?:(?P<{p}color>{_COLOR}) )?(?P<{p}shape>{_SHAPE})"
            rf"(?: (?P<{p}rel2>{_alt(list(_REL_POST))})(?!-))?"
            rf"(?: (?:in|at) the (?P<{p}cell>{_CELLN}){_AREA})?"
            rf"(?: (?P<{p}rel3>{_alt(list(_REL_POST))})(?!-))?")


_OBJ = rf"an? (?:(?P<osize>{_SIZE}) )?(?:(?P<ocolor>{_COLOR}) )?(?P<oshape>{_SHAPE})"
_R = _ref("r")
_TEMPLATES: list[tuple[Category, re.Pattern[str]]] = [(cat, re.compile(rf"^{pat}$")) for cat, pat in [
    ("cleanup", rf"(?:remove|clean up|erase|delete|get rid of) (?:all )?the (?:stray )?"
                rf"(?:marks?|artifacts?|smudges?|patch(?:es)?|blotch(?:es)?|noise)"
                rf"(?: (?:near|in|at|around) the (?P<cell>{_CELLN}){_AREA})?"),
    ("background_change", rf"(?:change|make|turn|set|paint|recolor) the background(?: color)? "
                          rf"(?:to |into )?(?P<bg>{_BG})"),
    ("background_change", rf"replace the background with (?:a |an )?(?P<bg>{_BG})(?: one| background)?"),
    ("subject-add", rf"(?:add|put|place|draw|insert) {_OBJ} (?:in|at|into) the (?P<cell>{_CELLN}){_AREA}"),
    ("subject-remove", rf"(?:remove|delete|erase|take away|get rid of) {_R}"),
    ("subject-replace", rf"(?:replace|swap) {_R} (?:with|for) {_OBJ}"),
    ("subject-replace", rf"(?:change|turn) {_R} into {_OBJ}"),
    ("size_change", rf"make {_R} (?P<dir>larger|smaller)"),
    ("size_change", rf"(?P<verb>enlarge|shrink|grow) {_R}"),
    ("color_alter", rf"(?:make|turn|paint|color|recolor) {_R} (?:to |in )?(?P<newc>{_COLOR})"),
    ("color_alter", rf"change the color of {_R} to (?P<newc>{_COLOR})"),
    ("color_alter", rf"change {_R} to (?P<newc>{_COLOR})"),
]]

_EMPHASIS_PATTERNS: list[tuple[Emphasis, str]] = [
    ("only", r"\b(?:and nothing else|changing nothing else|nothing else|leave everything else unchanged|"
             r"keep(?:ing)? everything else(?: the same| unchanged)?)\b"),
    ("only", r"\bonly\b"),
    ("completely", r"\b(?:completely|entirely|fully)\b"),
    ("completely", r"(?<=\bthe )(?:whole|entire) "),
    ("cleanly", r"\b(?:without leaving (?:any )?marks|without (?:any )?artifacts|cleanly)\b"),
]


def normalise(text: str) -> str:
    t = text.lower().strip()
    t = t.replace("colour", "color").replace("grey", "gray").replace("centre", "center")
    t = re.sub(r"[\u2014\u2013]|\s-\s", " ", t)
    t = re.sub(r"[,;:.!?\"']", " ", t)
    t = re.sub(r"\bbig(?:ger)?\b", lambda m: "larger" if m.group(0) == "bigger" else "large", t)
    t = re.sub(r"\b(?:little|tiny)\b", "small", t)
    t = re.sub(r"\b(top|middle|bottom)[ -](left|middle|right|center)\b", r"\1-\2", t)
    t = re.sub(r"\b(top|bottom)-center\b", r"\1-middle", t)
    t = re.sub(r"\bcenter[ -](left|right)\b", r"middle-\1", t)
    t = re.sub(r"\bmiddle-(?:middle|center)\b", "center", t)
    t = re.sub(r"(?<!-)\bmiddle\b(?!-)", "center", t)
    return re.sub(r"\s+", " ", t).strip()


def _strip_emphasis(t: str) -> tuple[str, list[Emphasis]]:
    found: list[Emphasis] = []
    for name, pattern in _EMPHASIS_PATTERNS:
        t, n = re.subn(pattern, " ", t)
        if n and name not in found:
            found.append(name)
    t = re.sub(r"\s+", " ", t).strip()
    t = re.sub(r"\band\s*$", "", t).strip()
    return t, found


def _make_ref(m: re.Match[str], p: str = "r") -> RefExpr:
    g = m.groupdict()
    rel = g.get(f"{p}rel1")
    relative = _REL_PRE[rel] if rel else None
    for key in (f"{p}rel2", f"{p}rel3"):
        if g.get(key):
            relative = _REL_POST[g[key]]
    cell = g.get(f"{p}cell")
    return RefExpr(shape=g[f"{p}shape"], colour=g.get(f"{p}color"), size=g.get(f"{p}size"),
                   relative=relative, cell=_CELLS[cell] if cell else None)


def parse_scene_instruction(text: str) -> SceneInstruction:
    """Parse an instruction of the synthetic-scene grammar, or raise ParseError."""
    core, emphasis = _strip_emphasis(normalise(text))
    for category, pattern in _TEMPLATES:
        m = pattern.match(core)
        if m is None:
            continue
        g = m.groupdict()
        out = SceneInstruction(category=category, emphasis=emphasis)
        if "rshape" in g:
            out.ref = _make_ref(m)
        if g.get("cell"):
            out.cell = _CELLS[g["cell"]]
        if category == "background_change":
            out.colour = g["bg"]
        elif category in ("subject-add", "subject-replace"):
            out.shape, out.colour, out.size = g["oshape"], g.get("ocolor"), g.get("osize")
        elif category == "color_alter":
            out.colour = g["newc"]
        elif category == "size_change":
            verb = g.get("verb")
            out.direction = g.get("dir") or ("smaller" if verb == "shrink" else "larger")  # type: ignore[assignment]
        return out
    raise ParseError(f"not a synthetic-scene instruction: {text!r}")


# -------------------------------------------------------------------------------------------- rendering
def area_phrase(cell: tuple[int, int]) -> str:
    name = cell_name(cell)
    return "in the center" if name == "center" else f"in the {name} area"


def describe_ref(ref: RefExpr) -> str:
    words = ["the"]
    if ref.size:
        words.append(ref.size)
    if ref.colour:
        words.append(ref.colour)
    words.append(ref.shape)
    if ref.relative:
        words.append({"left": "on the left", "right": "on the right", "top": "at the top",
                      "bottom": "at the bottom"}[ref.relative])
    if ref.cell is not None:
        words.append(area_phrase(ref.cell))
    return " ".join(words)


def describe_object(shape: str, colour: str | None, size: str | None) -> str:
    words = [w for w in (size, colour, shape) if w]
    article = "an" if words[0][0] in "aeiou" else "a"
    return f"{article} {' '.join(words)}"


_STYLES: dict[str, list[str]] = {
    "color_alter": ["make {ref} {c}", "change the color of {ref} to {c}", "turn {ref} {c}", "paint {ref} {c}"],
    "subject-add": ["add {obj} {area}", "put {obj} {area}", "place {obj} {area}", "draw {obj} {area}"],
    "subject-remove": ["remove {ref}", "delete {ref}", "erase {ref}", "take away {ref}"],
    "subject-replace": ["replace {ref} with {obj}", "swap {ref} for {obj}", "turn {ref} into {obj}"],
    "size_change": ["make {ref} {d}", "make {ref} {d}", "{verb} {ref}"],
    "background_change": ["change the background to {c}", "make the background {c}",
                          "replace the background with {c}"],
    "cleanup": ["remove the stray marks{near}", "clean up the artifacts{near}"],
}


def phrasings(category: str) -> int:
    """How many phrasings ``render_instruction`` has for a category (its ``style`` cycles through them)."""
    return len(_STYLES[category])


def render_instruction(instr: SceneInstruction, style: int = 0) -> str:
    """Text for ``instr``; ``style`` picks one of several phrasings (0 is the canonical one)."""
    options = _STYLES[instr.category]
    template = options[style % len(options)]
    ref = describe_ref(instr.ref) if instr.ref is not None else ""
    obj = describe_object(instr.shape, instr.colour, instr.size) if instr.shape else ""
    d = instr.direction or "larger"
    near = f" near the {cell_name(instr.cell)} area" if instr.cell is not None else ""
    text = template.format(ref=ref, c=instr.colour or "", obj=obj, area=area_phrase(instr.cell or (1, 1)),
                           d=d, verb="enlarge" if d == "larger" else "shrink", near=near)
    if instr.emphasis:
        text += ", " + ", ".join(EMPHASIS_TEXT[e] for e in instr.emphasis)
    return text[0].upper() + text[1:]


# ------------------------------------------------------------------------------------------- resolving
class Referent(Protocol):
    shape: str
    colour: str
    size: str

    @property
    def cell(self) -> tuple[int, int]: ...


ALL_ATTRIBUTES = frozenset({"colour", "size", "relative", "cell"})


def resolve(ref: RefExpr, objects: Sequence[Referent], attend: frozenset[str] = ALL_ATTRIBUTES) -> list[int]:
    """Indices of the objects ``ref`` can mean, reading only the ``attend``-ed qualifiers.

    The verifier reads all qualifiers; the sim editor sometimes overlooks some, which is how it grabs a
    look-alike. A relative qualifier picks the extreme among the objects matching everything else.
    """
    idx = [i for i, o in enumerate(objects) if o.shape == ref.shape]
    if ref.colour and "colour" in attend:
        idx = [i for i in idx if objects[i].colour == ref.colour]
    if ref.size and "size" in attend:
        idx = [i for i in idx if objects[i].size == ref.size]
    if ref.cell is not None and "cell" in attend:
        idx = [i for i in idx if tuple(objects[i].cell) == tuple(ref.cell)]
    if ref.relative and "relative" in attend and len(idx) > 1:
        axis, sign = {"left": (1, 1), "right": (1, -1), "top": (0, 1), "bottom": (0, -1)}[ref.relative]
        best = min(sign * objects[i].cell[axis] for i in idx)
        idx = [i for i in idx if sign * objects[i].cell[axis] == best]
    return idx


def unique_qualifier(target: int, objects: Sequence[Referent]) -> RefExpr | None:
    """The shortest expression that picks ``objects[target]`` uniquely, as a generator would write it:
    colour + shape if that is unique, else with the size, else with a relative position."""
    t = objects[target]
    base = RefExpr(shape=t.shape, colour=t.colour)
    if resolve(base, objects) == [target]:
        return base
    with_size = base.model_copy(update={"size": t.size})
    if resolve(with_size, objects) == [target]:
        return with_size
    for rel in ("left", "right", "top", "bottom"):
        cand = base.model_copy(update={"relative": rel})
        if resolve(cand, objects) == [target]:
            return cand
    return None


def full_ref(target: Referent, objects: Sequence[Referent] | None = None) -> RefExpr:
    """The most specific expression for an object: colour, shape, size, area, and a relative position
    among look-alikes when there are any."""
    ref = RefExpr(shape=target.shape, colour=target.colour, size=target.size, cell=tuple(target.cell))
    if objects:
        idx = next((i for i, o in enumerate(objects) if o is target), None)
        same = [o for o in objects if o.shape == target.shape and o.colour == target.colour]
        if idx is not None and len(same) > 1:
            for rel in ("left", "right", "top", "bottom"):
                plain = RefExpr(shape=target.shape, colour=target.colour, relative=rel)  # type: ignore[arg-type]
                if resolve(plain, objects) == [idx]:
                    ref.relative = rel  # type: ignore[assignment]
                    break
    return ref


__all__ = ["COLS", "ROWS", "ParseError", "RefExpr", "SceneInstruction", "TASK_CATEGORIES", "describe_ref",
           "full_ref", "parse_scene_instruction", "render_instruction", "resolve", "unique_qualifier"]
