"""Output contracts and prompt templates of the VLM judges and critics.

One pydantic schema per call is the single source of its reply format: ``json_schema`` (structured output),
``format_instructions`` (the prompt's format section) and ``parse_reply``/``parse_structured`` (the parser)
all come from it, so the prompt and the parser cannot drift. ``MODES`` lists the ways to ask (``viescore``,
``viescore_single``, ``yesno``, ``iecritic``, ``critic``, ``judge+critic``); ``load_template`` gives a
built-in template or the user's own file, with a stable ``id`` to record in every verdict.
"""

from .contracts import (
    MODES,
    Contract,
    CriticAnswer,
    FieldSpec,
    IECriticRating,
    JudgeCritic,
    Judgment,
    Mode,
    PerceptualQuality,
    SemanticConsistency,
    VieScore,
    YesNo,
    critique_fields,
    field_specs,
    iecritic_to_10,
    json_schema,
    reply_pattern,
    text_budget,
    to_critique,
    viescore_scores,
)
from .parsing import ParseResult, parse_answer, parse_reply, parse_structured
from .templates import (
    KNOWN_VALUES,
    Template,
    TemplateError,
    builtin_templates,
    context_items,
    format_context,
    format_history,
    format_instructions,
    format_verdict,
    load_template,
)

__all__ = [
    "Contract", "CriticAnswer", "FieldSpec", "IECriticRating", "JudgeCritic", "Judgment", "KNOWN_VALUES", "MODES",
    "Mode", "ParseResult", "PerceptualQuality", "SemanticConsistency", "Template", "TemplateError", "VieScore",
    "YesNo", "builtin_templates", "context_items", "critique_fields", "field_specs", "format_context",
    "format_history", "format_instructions", "format_verdict", "iecritic_to_10", "json_schema",
    "reply_pattern",
    "text_budget",
    "load_template",
    "parse_answer", "parse_reply", "parse_structured", "to_critique", "viescore_scores",
]
