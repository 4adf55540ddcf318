"""The classic editor's instruction grammar: parse text into a PhotoPlan, and render ops back to text.

Grammar (clauses joined by "and", "then", commas or semicolons; case and colour/color, grey/gray spellings free):

- tone: brighter / darker (brighten, lighten, darken, more/less brightness or exposure); more / less contrast
- colour: more / less saturated (saturate, desaturate, vivid, vibrant, colourful, muted, boost/mute the colours);
  warmer / cooler (warm it up, cool it down, colder); black and white (grayscale, monochrome, remove the colour);
  sepia
- detail: blur (blurry, blurrier, soften, out of focus, more blur) / sharpen (sharper, crisper, less blurry)
- geometry: rotate [by] 90/180/270 [degrees] [clockwise | counterclockwise | left | right], turn it upside down;
  flip / mirror [horizontally | vertically | upside down]
- colour replacement: make/turn/change/paint the <colour> <anything> [to/into] <colour2>, replace <colour> ...
  with <colour2>; colours are red, orange, yellow, green, cyan (teal, turquoise), blue, purple (violet), magenta,
  pink (hue-based: not white, black, grey or brown)
- strength words: "very slightly", "a tiny bit", "a touch" (0.25x); "slightly", "a bit", "a little", "somewhat"
  (0.5x); none (1x); "much", "a lot", "very", "strongly", "significantly", "considerably" (2x);
  "very much", "dramatically", "extremely", "drastically" (3x). Geometry, black and white, sepia and colour
  replacement ignore strength.
- stacking: clauses of one adjustment add up ("brighter and much brighter" is 3x); a total past 3x is capped
  to one 3x edit, and the plan's ``notes`` say so. At most 16 edits in one instruction.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from refine_agent.errors import UnsupportedInstructionError

OpName = Literal["brightness", "contrast", "saturation", "warmth", "sharpness", "grayscale", "sepia", "rotate",
                 "flip", "recolor"]
GRADED_OPS: tuple[str, ...] = ("brightness", "contrast", "saturation", "warmth", "sharpness")
GEOMETRY_OPS: tuple[str, ...] = ("rotate", "flip")
STRENGTH_LEVELS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 3.0)
MAX_STRENGTH = STRENGTH_LEVELS[-1]  # one op kind's total ("dramatically"): stacked clauses are capped here
MAX_OPS = 16  # edits in one instruction, after repeated ones are merged
GRAMMAR_HELP = ('it supports brighter/darker, contrast, saturation, black and white, sepia, warmer/cooler, '
                'blur/sharpen, rotate, flip, and "make the <colour> ... <colour2>"')

# name -> (hue centre in degrees, full-weight half width, zero-weight half width)
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.0, 15.0, 30.0), "orange": (30.0, 10.0, 20.0), "yellow": (55.0, 12.0, 25.0),
    "green": (115.0, 35.0, 55.0), "cyan": (180.0, 12.0, 25.0), "blue": (220.0, 25.0, 40.0),
    "purple": (275.0, 18.0, 32.0), "magenta": (305.0, 12.0, 25.0), "pink": (330.0, 12.0, 25.0),
}
_COLOUR_ALIASES = {"teal": "cyan", "turquoise": "cyan", "aqua": "cyan", "violet": "purple",
                   "crimson": "red", "scarlet": "red"}
_UNSUPPORTED_COLOURS = {"white", "black", "gray", "brown", "beige", "silver", "gold", "golden", "tan"}


class PhotoOp(BaseModel):
    """One edit. ``direction`` is +1 (more/up/clockwise-free) or -1 for graded ops, 0 for absolute ones."""

    model_config = ConfigDict(frozen=True)

    op: OpName
    direction: int = Field(default=0, ge=-1, le=1, description="+1 more, -1 less; 0 for absolute ops")
    strength: float = Field(default=1.0, gt=0, le=10, description="1 = plain wording, 0.5 slightly, 2 much")
    params: dict[str, Any] = Field(default_factory=dict, description="angle, axis, source/target colour")

    @property
    def graded(self) -> bool:
        return self.op in GRADED_OPS


class PhotoPlan(BaseModel):
    ops: list[PhotoOp]
    text: str = ""
    notes: list[str] = Field(default_factory=list, description="what the parser changed, e.g. a capped strength")


def _quote(what: str, limit: int = 80) -> str:
    """User text for an error line: a 10,000-character clause must not become a 10,000-character error."""
    return what if len(what) <= limit else what[:limit - 1].rstrip() + "…"


def unsupported(what: str) -> UnsupportedInstructionError:
    return UnsupportedInstructionError(f'classic editor does not understand "{_quote(what)}": {GRAMMAR_HELP}')


# -- normalisation --------------------------------------------------------------------------------------------

# Phrases become single tokens before clauses are split ("black and white" must survive the split on "and").
_PHRASES: list[tuple[str, str]] = [
    (r"colour", "color"), (r"\bgrey", "gray"), (r"\bgray[\s-]+scale\b", "grayscale"),
    (r"\bblack[\s-]*(?:and|&|n)?[\s-]*white\b|\bb\s*&\s*w\b", "blackwhite"), (r"'s\b", ""),
    (r"\b(?:remove|drop|strip|drain|take out)\s+(?:all\s+)?(?:of\s+)?(?:the\s+)?colors?\b|\bcolorless\b",
     "grayscale"),
    (r"\b(?:counter|anti)[\s-]*clockwise\b", "counterclockwise"), (r"\bupside[\s-]*down\b", "upsidedown"),
    (r"\bout\s+of\s+focus\b", "blurry"), (r"\bleft[\s-]+(?:to[\s-]+)?right\b", "horizontally"),
    (r"\btop[\s-]+(?:to[\s-]+)?bottom\b", "vertically"), (r"°", " degrees"),
    (r"\b(?:very\s+very|ever\s+so|very)\s+slightly\b|\ba\s+(?:tiny|wee)\s+bit\b|\ba\s+(?:touch|tad|hint)\b"
     r"|\bbarely\b", "@s025"),
    (r"\ba\s+little\s+bit\b|\ba\s+bit\b|\ba\s+little\b|\bslightly\b|\bsomewhat\b|\bmildly\b|\bgently\b"
     r"|\bmarginally\b|\bsubtly\b", "@s05"),
    (r"\bvery\s+much\b|\bmuch\s+much\b|\bdramatically\b|\bextremely\b|\bdrastically\b|\bhugely\b"
     r"|\bmassively\b", "@s3"),
    (r"\ba\s+lot\b|\bmuch\b|\bvery\b|\bstrongly\b|\bsignificantly\b|\bconsiderably\b|\bsubstantially\b"
     r"|\bheavily\b|\bhighly\b|\bfar\b|\bway\b|\breally\b|\blots\b|\ba\s+great\s+deal\b", "@s2"),
]
_STRENGTH_TOKENS = {"@s025": 0.25, "@s05": 0.5, "@s2": 2.0, "@s3": 3.0}
_PRETTY = {"@s025": "very slightly", "@s05": "slightly", "@s2": "much", "@s3": "very much",
           "blackwhite": "black and white", "upsidedown": "upside down"}
_SPLIT = re.compile(r"[,;&]|\band\b|\bthen\b|\balso\b|\bplus\b")


def normalise(text: str) -> str:
    t = text.lower().replace("’", "'")
    for pattern, repl in _PHRASES:
        t = re.sub(pattern, repl, t)
    # Letters of any script stay, so an error quotes "ünïcödé", not "n c d"; symbols and markup go.
    return re.sub(r"[^\w@,;&\s]|_", " ", t)


def _pretty(tokens: list[str]) -> str:
    return " ".join(_PRETTY.get(t, t) for t in tokens)


# -- word tables ----------------------------------------------------------------------------------------------

_FILLER = set("""make it its the image photo photograph picture pic shot whole entire overall look looks looking
a an please can could would you i want like should be is are to so that this everything scene convert into turn
give have tone toned tones version some of in feel appear apply effect filter style mode just all bit little
slight let us me my""".split())
# (op, sign) -> words; sign None marks a noun that needs a direction ("more contrast", "boost the colours")
_OP_TABLE: dict[tuple[str, int | None], str] = {
    ("brightness", 1): "brighter brighten brightened bright lighter lighten lightened",
    ("brightness", -1): "darker darken darkened dark dim dimmer dimmed darkness",
    ("brightness", None): "brightness exposure",
    ("contrast", 1): "contrasty", ("contrast", None): "contrast",
    ("saturation", 1): "saturate saturated vivid vibrant colorful pop",
    ("saturation", -1): "desaturate desaturated muted mute",
    ("saturation", None): "saturation vibrance color colors",
    ("warmth", 1): "warmer warm warmed", ("warmth", -1): "cooler cool cooled colder cold",
    ("warmth", None): "warmth",
    ("sharpness", 1): "sharper sharpen sharpened sharp crisper crisp deblur unblur",
    ("sharpness", -1): "blur blurry blurrier blurred soften softer defocus defocused",
    ("sharpness", None): "sharpness",
    ("grayscale", 1): "blackwhite grayscale monochrome monochromatic bw", ("sepia", 1): "sepia",
}
_OP_WORDS: dict[str, tuple[str, int | None]] = {w: key for key, words in _OP_TABLE.items() for w in words.split()}
_MODIFIERS = {w: 1 for w in "more increase increased boost boosted raise add higher enhance amplify intensify "
              "strengthen stronger extra greater heighten pump crank bump".split()}
_MODIFIERS.update({w: -1 for w in "less decrease decreased reduce reduced lower lessen weaker cut drop remove "
                   "fewer".split()})
_PARTICLES = {"up": 1, "down": -1}
_GEO_WORDS = set("""rotate rotated rotation spin turn flip flipped mirror mirrored reflect reflected upsidedown
by degrees degree deg clockwise cw counterclockwise ccw left right horizontally horizontal vertically vertical
sideways over around axis along on 90 180 270 ninety""".split())
_RECOLOR_PREFIX = set("make turn change paint recolor color replace switch all every any the of please".split())
_RECOLOR_SUFFIX = set("color colored instead one ones too".split())


# -- clause parsers -------------------------------------------------------------------------------------------

def _colour_name(token: str) -> str | None:
    name = _COLOUR_ALIASES.get(token, token)
    if name in COLOURS or name in _UNSUPPORTED_COLOURS:
        return name
    return None


def _parse_recolor(tokens: list[str]) -> PhotoOp | None:
    idx = [i for i, t in enumerate(tokens) if _colour_name(t)]
    if len(idx) < 2:
        return None
    first, last = idx[0], idx[-1]
    if len(idx) > 2 or any(t not in _RECOLOR_PREFIX for t in tokens[:first]):
        raise unsupported(_pretty(tokens))
    if any(t not in _RECOLOR_SUFFIX for t in tokens[last + 1:]) or last - first > 8:
        raise unsupported(_pretty(tokens))
    source, target = _colour_name(tokens[first]), _colour_name(tokens[last])
    assert source is not None and target is not None
    for name in (source, target):
        if name not in COLOURS:
            raise UnsupportedInstructionError(
                f'classic editor cannot recolour with "{name}": it recolours by hue and knows '
                f'{", ".join(COLOURS)} (not white, black, gray or brown)')
    if source == target:
        raise UnsupportedInstructionError(f'classic editor cannot make {source} into {target}: same colour')
    return PhotoOp(op="recolor", params={"source": source, "target": target})


def _is_geometry(tokens: list[str]) -> bool:
    words = set(tokens)
    if words & {"rotate", "rotated", "rotation", "spin", "flip", "flipped", "mirror", "mirrored", "reflect",
                "reflected", "upsidedown"}:
        return True
    return "turn" in words and bool(words & {"90", "180", "270", "ninety", "left", "right", "clockwise",
                                             "counterclockwise", "cw", "ccw"})


def _parse_geometry(tokens: list[str]) -> PhotoOp:
    words = set(tokens)
    numbers = [t for t in tokens if t.isdigit()]
    leftover = [t for t in tokens if t not in _GEO_WORDS and t not in _FILLER and not t.isdigit()]
    if leftover:
        raise unsupported(_pretty(tokens))
    if words & {"flip", "flipped", "mirror", "mirrored", "reflect", "reflected"}:
        if words & {"rotate", "rotated", "rotation", "spin"} or numbers:
            raise unsupported(_pretty(tokens))
        vertical = bool(words & {"vertically", "vertical", "upsidedown"})
        return PhotoOp(op="flip", params={"axis": "vertical" if vertical else "horizontal"})
    angle = 180 if "upsidedown" in words else 90
    if numbers or "ninety" in words:
        if len(numbers) > 1 or (numbers and numbers[0] not in ("90", "180", "270")):
            raise UnsupportedInstructionError(
                f'classic editor rotates only by 90, 180 or 270 degrees, not "{_quote(_pretty(tokens))}"')
        angle = int(numbers[0]) if numbers else 90
    ccw = bool(words & {"counterclockwise", "ccw", "left"})
    cw = bool(words & {"clockwise", "cw", "right"})
    if ccw and cw:
        raise unsupported(_pretty(tokens))
    if ccw:
        angle = (360 - angle) % 360
    return PhotoOp(op="rotate", params={"angle": angle, "explicit": cw or ccw or angle == 180})


class _Group:
    """One graded/absolute op being read: its words' signs, modifiers and strength."""

    def __init__(self) -> None:
        self.op: str | None = None
        self.sign = 1
        self.signed_word = False
        self.modified = False
        self.particle = 0
        self.strength: float | None = None

    def absorb(self, other: _Group) -> None:
        self.sign *= other.sign
        self.modified = self.modified or other.modified
        self.particle = other.particle or self.particle
        if other.strength is not None:
            self.strength = max(self.strength or 0.0, other.strength)


def _parse_graded(tokens: list[str], previous: PhotoOp | None) -> list[PhotoOp]:
    groups: list[_Group] = []
    pending = _Group()  # modifiers and strength words seen since the last op word
    for t in tokens:
        if t in _FILLER:
            continue
        if t in _STRENGTH_TOKENS:
            pending.strength = max(pending.strength or 0.0, _STRENGTH_TOKENS[t])
        elif t in _MODIFIERS:
            pending.sign *= _MODIFIERS[t]
            pending.modified = True
        elif t in _PARTICLES:
            pending.particle = _PARTICLES[t]
        elif t in _OP_WORDS:
            op, sign = _OP_WORDS[t]
            last = groups[-1] if groups else None
            if last is not None and last.op == op and (not pending.modified or not (last.signed_word
                                                                                     or last.modified)):
                last.absorb(pending)  # "the colours more vivid": two words, one op
                group = last
            else:
                group = pending
                group.op = op
                groups.append(group)
            pending = _Group()
            if sign is not None:
                group.sign *= sign
                group.signed_word = True
        else:
            raise unsupported(_pretty(tokens))
    if not groups:
        raise unsupported(_pretty(tokens))
    groups[-1].absorb(pending)  # trailing words: "turn the brightness down a bit"
    ops: list[PhotoOp] = []
    for g in groups:
        ops.append(_group_op(g, tokens, ops[-1] if ops else previous))
    return ops


def _group_op(g: _Group, tokens: list[str], previous: PhotoOp | None) -> PhotoOp:
    assert g.op is not None
    sign = g.sign
    if not g.signed_word:  # a bare noun: "more contrast", "turn the brightness down"
        if g.particle:
            sign *= g.particle
        elif not g.modified:
            # "increase the brightness and contrast": a bare noun takes the previous op's direction.
            if previous is None or not previous.graded:
                raise UnsupportedInstructionError(
                    f'classic editor cannot tell which way to change "{_quote(_pretty(tokens))}" (say more/less or '
                    f"increase/decrease): {GRAMMAR_HELP}")
            return PhotoOp(op=g.op, direction=previous.direction,  # type: ignore[arg-type]
                           strength=g.strength or previous.strength)
    if g.op in ("grayscale", "sepia"):
        if sign < 0:
            raise unsupported(_pretty(tokens))
        return PhotoOp(op=g.op)  # type: ignore[arg-type]
    return PhotoOp(op=g.op, direction=sign, strength=g.strength or 1.0)  # type: ignore[arg-type]


def parse_photo_instruction(text: str) -> PhotoPlan:
    """Parse an instruction into ops, or raise UnsupportedInstructionError naming what was not understood."""
    clauses = [c.split() for c in _SPLIT.split(normalise(text or ""))]
    clauses = [c for c in clauses if c]
    if not clauses:
        raise UnsupportedInstructionError(f"classic editor got an empty instruction: {GRAMMAR_HELP}")
    ops: list[PhotoOp] = []
    for tokens in clauses:
        recolor = _parse_recolor(tokens)
        if recolor is not None:
            ops.append(recolor)
        elif _is_geometry(tokens):
            ops.append(_parse_geometry(tokens))
        else:
            ops.extend(_parse_graded(tokens, ops[-1] if ops else None))
    ops, notes = _cap_strengths(ops)
    if len(ops) > MAX_OPS:
        raise UnsupportedInstructionError(
            f"classic editor applies at most {MAX_OPS} edits in one instruction, not {len(ops)}: "
            "split it into several instructions")
    return PhotoPlan(ops=ops, text=text, notes=notes)


def _cap_strengths(ops: list[PhotoOp]) -> tuple[list[PhotoOp], list[str]]:
    """Stacked clauses of one graded op add up ("brighter and much brighter" is 3x), as the checker reads them.
    A total past MAX_STRENGTH becomes one op at MAX_STRENGTH, where its first clause was, with a note saying
    so; so do the repeats when there are too many clauses to apply one by one. Other plans are unchanged."""
    total: dict[str, float] = {}
    count: dict[str, int] = {}
    for op in ops:
        if op.graded:
            total[op.op] = total.get(op.op, 0.0) + op.direction * op.strength
            count[op.op] = count.get(op.op, 0) + 1
    merge = {k for k, v in total.items() if abs(v) > MAX_STRENGTH + 1e-9 or (len(ops) > MAX_OPS and count[k] > 1)}
    if not merge:
        return ops, []
    out: list[PhotoOp] = []
    notes: list[str] = []
    for op in ops:
        if op.op not in merge:
            out.append(op)
        elif op.op in total:  # the first clause of a merged kind stands for all of them
            value = total.pop(op.op)
            strength = min(abs(value), MAX_STRENGTH)
            if strength > 1e-9:
                out.append(PhotoOp(op=op.op, direction=1 if value > 0 else -1, strength=strength))
            notes.append(_cap_note(op.op, count[op.op], value, strength))
    return out, notes


def _cap_note(name: str, clauses: int, value: float, strength: float) -> str:
    said = f"{clauses} {name} clauses add up to {abs(value):g}x the plain strength"
    if strength <= 1e-9:
        return f"{said}: they cancel out"
    op = render_op(PhotoOp(op=name, direction=1 if value > 0 else -1, strength=strength))  # type: ignore[arg-type]
    if strength < abs(value):
        return f'{said}: capped at {strength:g}x, the most the classic editor applies ("{op}")'
    return f'{said}: applied as one edit ("{op}")'


# -- rendering ------------------------------------------------------------------------------------------------

def strength_level(strength: float) -> float:
    """The grammar's nearest strength level (log scale), so rendered text parses back to it."""
    return min(STRENGTH_LEVELS, key=lambda lv: abs(math.log(max(strength, 1e-6) / lv)))


_STRENGTH_WORDS = {0.25: "very slightly ", 0.5: "slightly ", 1.0: "", 2.0: "much ", 3.0: "dramatically "}
_STRENGTH_ADVERBS = {0.25: " very slightly", 0.5: " slightly", 1.0: "", 2.0: " a lot", 3.0: " dramatically"}
# Phrasings per graded op, (more, less): the first is the canonical one; the others say the same thing in other
# words, so a critic can ask again without repeating itself ({w} strength word before, {a} adverb after).
_GRADED_TEXT: dict[str, tuple[tuple[str, str], ...]] = {
    "brightness": (("make it {w}brighter", "make it {w}darker"), ("brighten it{a}", "darken it{a}"),
                   ("increase the brightness{a}", "decrease the brightness{a}")),
    "contrast": (("give it {w}more contrast", "give it {w}less contrast"),
                 ("increase the contrast{a}", "decrease the contrast{a}"),
                 ("boost the contrast{a}", "lower the contrast{a}")),
    "saturation": (("make it {w}more saturated", "make it {w}less saturated"), ("saturate it{a}", "desaturate it{a}"),
                   ("increase the saturation{a}", "decrease the saturation{a}")),
    "warmth": (("make it {w}warmer", "make it {w}cooler"), ("warm it up{a}", "cool it down{a}"),
               ("increase the warmth{a}", "decrease the warmth{a}")),
    "sharpness": (("make it {w}sharper", "make it {w}blurrier"), ("sharpen it{a}", "blur it{a}"),
                  ("increase the sharpness{a}", "decrease the sharpness{a}")),
}
_ABSOLUTE_TEXT = {
    "grayscale": ("make it black and white", "make it grayscale", "remove the color"),
    "sepia": ("make it sepia", "give it a sepia tone", "apply a sepia effect"),
    "flip": ("flip it {axis}ly", "mirror it {axis}ly", "flip the image {axis}ly"),
    "rotate": ("rotate it {angle}", "turn it {angle}", "rotate the image by {angle}"),
    "recolor": ("make the {source} areas {target}", "turn the {source} areas {target}",
                "change the {source} areas to {target}"),
}
STYLES = 3  # phrasings of every op; style k picks phrasing k


def _angle_text(op: PhotoOp) -> str:
    angle = int(op.params.get("angle", 90))
    if angle == 180:
        return "180 degrees"
    if not op.params.get("explicit", False):
        return f"{angle} degrees"
    return "90 degrees " + ("clockwise" if angle == 90 else "counterclockwise")


def render_op(op: PhotoOp, style: int = 0) -> str:
    """Instruction text for one op that ``parse_photo_instruction`` turns back into it (strength rounded to a
    grammar level). ``style`` picks another phrasing of the same op (0 is the canonical one)."""
    if op.op in _GRADED_TEXT:
        up, down = _GRADED_TEXT[op.op][style % STYLES]
        level = strength_level(op.strength)
        return (up if op.direction >= 0 else down).format(w=_STRENGTH_WORDS[level], a=_STRENGTH_ADVERBS[level])
    template = _ABSOLUTE_TEXT[op.op][style % STYLES]
    return template.format(axis=op.params.get("axis", "horizontal"), angle=_angle_text(op) if op.op == "rotate"
                           else "", source=op.params.get("source", ""), target=op.params.get("target", ""))


def render_plan(ops: list[PhotoOp] | PhotoPlan, style: int = 0) -> str:
    items = ops.ops if isinstance(ops, PhotoPlan) else ops
    return " and ".join(render_op(op, style) for op in items)
