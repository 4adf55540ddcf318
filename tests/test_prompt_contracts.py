"""Judge/critic output contracts: schema -> prompt instructions, strict JSON schema and parser stay in step."""

from __future__ import annotations

import json
import math

import pytest
from refine_agent.tools.judges.prompts import (
    KNOWN_VALUES,
    MODES,
    CriticAnswer,
    IECriticRating,
    JudgeCritic,
    PerceptualQuality,
    SemanticConsistency,
    TemplateError,
    VieScore,
    YesNo,
    builtin_templates,
    field_specs,
    format_history,
    format_instructions,
    format_verdict,
    iecritic_to_10,
    json_schema,
    load_template,
    parse_reply,
    parse_structured,
    to_critique,
)

from refine_agent.types import Critique, Round, Verdict

SCHEMAS = sorted({s for m in MODES.values() for s in m.schemas}, key=lambda s: s.__name__)
SC = SemanticConsistency
_ALLOWED_KEYS = {"type", "description", "enum", "properties", "required", "additionalProperties", "minimum", "maximum"}


# -- schema -> instructions / JSON schema ------------------------------------------------------------------------
@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_json_schema_is_strict_and_matches_the_fields(schema):
    js = json_schema(schema)
    names = [s.name for s in field_specs(schema)]
    assert js["type"] == "object" and js["additionalProperties"] is False
    assert list(js["properties"]) == names == js["required"]  # strict: every property required, in order
    assert set(js) <= _ALLOWED_KEYS
    for name, prop in js["properties"].items():
        assert set(prop) <= _ALLOWED_KEYS, name  # no title/default/examples
        assert prop["type"] in ("number", "integer", "boolean", "string") and prop["description"]
    json.dumps(js)


def test_ranges_are_bounds_and_live_in_descriptions_too():
    js = json_schema(SC)
    assert "0 to 10" in js["properties"]["success"]["description"]
    assert (js["properties"]["success"]["minimum"], js["properties"]["success"]["maximum"]) == (0, 10)
    assert json_schema(IECriticRating)["properties"]["rating"]["minimum"] == 1
    from refine_agent.tools.api.backend import without_bounds

    stripped = without_bounds(js)
    assert "minimum" not in stripped["properties"]["success"] and "0 to 10" in stripped["properties"]["success"][
        "description"]
    assert "1 to 5" in json_schema(IECriticRating)["properties"]["rating"]["description"]
    assert json_schema(CriticAnswer)["properties"]["base"]["enum"] == ["current", "source", "best"]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_format_instructions_name_every_field_and_their_example_parses(schema):
    text = format_instructions(schema)
    for spec in field_specs(schema):
        if schema.reply_format == "json":
            assert f'"{spec.name}"' in text and spec.kind_text in text
    example = text.split("give your own):\n", 1)[1]
    parsed = parse_reply(schema, example)
    assert parsed.ok, parsed.error
    for spec in field_specs(schema):
        if spec.type != "string":
            assert getattr(parsed.value, spec.name) == spec.example


def test_iecritic_instructions_describe_tags():
    text = format_instructions(IECriticRating)
    assert "<think>" in text and "<answer>" in text and "1 to 5" in text and "JSON" not in text


def test_modes_pair_schemas_templates_and_images():
    assert set(MODES) == {"viescore", "viescore_single", "yesno", "iecritic", "critic", "judge+critic"}
    assert MODES["viescore"].images == ("both", "edited")
    assert MODES["viescore"].schemas == (SemanticConsistency, PerceptualQuality)
    assert MODES["iecritic"].structured is False
    for mode in MODES.values():
        for _, template, _ in mode.calls:
            assert template in builtin_templates()


# -- parsing: what is accepted -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    '{"reasoning": "car is blue", "success": 8, "overediting": 9}',
    'Sure.\n```json\n{"reasoning": "car is blue", "success": 8, "overediting": 9}\n```\nDone.',
    'The {car} looks right. {"reasoning": "car is blue", "success": 8, "overediting": 9} That is all.',
    '{"reasoning": "car is blue", "success": "8/10", "overediting": "9"}',
    '{"score": [8, 9], "reasoning": "car is blue"}',
])
def test_parse_json_forms(text):
    r = parse_reply(SC, text)
    assert r.error is None and r.raw == text
    assert (r.value.success, r.value.overediting) == (8, 9) and r.value.reasoning == "car is blue"


@pytest.mark.parametrize("text,expected", [
    ("[8, 9]", (8, 9)),
    ("Scores: [7.5, 10]", (7.5, 10)),
    ("<answer>[6, 4]</answer>", (6, 4)),
    ("Success: 8/10\nOverediting: 7/10", (8, 7)),
])
def test_parse_score_lists_and_named_scores(text, expected):
    r = parse_reply(SC, text)
    assert r.ok, r.error
    assert (r.value.success, r.value.overediting) == expected


def test_parse_four_score_list_for_single_call_viescore():
    r = parse_reply(VieScore, "[1, 2, 3, 4]")
    assert [r.value.success, r.value.overediting, r.value.naturalness, r.value.artifacts] == [1, 2, 3, 4]


@pytest.mark.parametrize("text,rating,reasoning", [
    ("<think>The sky was changed {a lot}.</think>\n<answer>4</answer>", 4, "The sky was changed {a lot}."),
    ("<think>ok</think><answer>2.5</answer>", 2.5, "ok"),
    ("<think>ok</think><answer>Rating: 3/5</answer>", 3, "ok"),
    ("The opening tag was in the template.</think><answer>5</answer>", 5, "The opening tag was in the template."),
    ("I would rate it 4/5.", 4, "I would rate it 4/5."),
])
def test_parse_iecritic_tags(text, rating, reasoning):
    r = parse_reply(IECriticRating, text)
    assert r.ok, r.error
    assert r.value.rating == rating and r.value.reasoning == reasoning
    mode = MODES["iecritic"]
    j = mode.judgment([r.value])
    assert j.overall == pytest.approx((rating - 1) / 4 * 10) and j.extra["rating"] == rating


@pytest.mark.parametrize("text,passed", [
    ("<answer>yes</answer>", True), ("<think>checked</think><answer>No</answer>", False),
    ("Yes. The car is blue and nothing else changed.", True), ("No, the car is still red.", False),
    ("The car is blue.\nVerdict: pass", True), ('{"reasoning": "r", "passed": "false"}', False),
    ("<answer>true</answer>", True),
])
def test_parse_yes_no(text, passed):
    r = parse_reply(YesNo, text)
    assert r.ok, r.error
    assert r.value.passed is passed


def test_parse_critic_and_map_to_critique():
    r = parse_reply(CriticAnswer, '{"analysis": "still red", "satisfied": false, '
                                  '"instruction": "paint the {car} blue", "base": "source"}')
    assert r.ok, r.error
    c = to_critique(r.value)
    assert isinstance(c, Critique) and c.instruction == "paint the {car} blue" and c.base == "source"
    done = parse_reply(CriticAnswer, '{"analysis": "good", "satisfied": true, "instruction": "", "base": "current"}')
    assert to_critique(done.value).instruction is None


def test_judge_critic_one_call_gives_verdict_and_critique():
    text = json.dumps({"reasoning": "r", "success": 4, "overediting": 9, "naturalness": 9, "artifacts": 8,
                       "analysis": "a", "satisfied": False, "instruction": "make it bluer", "base": "current"})
    r = parse_reply(JudgeCritic, text)
    j = MODES["judge+critic"].judgment([r.value])
    assert j.scores == {"SC": [4, 9], "PQ": [9, 8]} and j.overall == pytest.approx(math.sqrt(4 * 8))
    assert j.critique["instruction"] == "make it bluer"
    v = Verdict(scores=j.scores, reasoning=j.reasoning)
    assert v.overall == pytest.approx(j.overall)


def test_viescore_two_calls_combine_and_to_answer():
    sc = parse_reply(SC, '{"reasoning": "s", "success": 9, "overediting": 4}').value
    pq = parse_reply(PerceptualQuality, '{"reasoning": "p", "naturalness": 6, "artifacts": 7}').value
    answer = MODES["viescore"].to_answer([sc, pq], dict, raw="x")
    assert answer["status"] == "ok" and answer["raw"] == "x"
    assert answer["scores"] == {"SC": [9, 4], "PQ": [6, 7]} and answer["overall"] == pytest.approx(math.sqrt(24))


def test_parse_structured_is_range_checked():
    assert parse_structured(SC, {"reasoning": "r", "success": 3, "overediting": 7}).ok
    bad = parse_structured(SC, {"reasoning": "r", "success": 3, "overediting": 12})
    assert bad.value is None and "overediting" in bad.error
    assert parse_structured(SC, ["not", "a", "dict"]).error


# -- parsing: what is refused ------------------------------------------------------------------------------------
@pytest.mark.parametrize("schema,text,message", [
    (SC, "", "empty"),
    (SC, "I cannot evaluate these images.", "no answer"),
    (SC, "scores: [8, 9, 3]", "expected 2 scores"),
    (SC, '{"score": [8, 9, 3], "reasoning": "r"}', "expected 2 scores"),
    (SC, '{"reasoning": "r", "success": 11, "overediting": 9}', "success"),
    (SC, '{"reasoning": "r", "success": -1, "overediting": 9}', "success"),
    (SC, '{"reasoning": "r", "success": 8}', "overediting"),
    (SC, '{"reasoning": "r", "success": true, "overediting": 9}', "success"),
    (SC, "Success: 8", "overediting"),
    (SC, "[8, 9] or maybe [7, 9]", "different score lists"),
    (IECriticRating, "<answer>6</answer>", "rating"),
    (IECriticRating, "<answer>8/10</answer>", "scale"),
    (IECriticRating, "<answer>between 3 and 4</answer>", "numbers"),
    (IECriticRating, "<think>still thinking", "truncated"),
    (YesNo, "<answer>maybe</answer>", "passed"),
    (YesNo, "No changes were visible, so it is hard to say.", "no answer"),
    (YesNo, "Answer: yes\nFinal answer: no", "both"),
    (CriticAnswer, '{"analysis": "a", "satisfied": false, "instruction": " "}', "re-edit instruction"),
    (CriticAnswer, '{"analysis": "a", "satisfied": false, "instruction": "x", "base": "elsewhere"}', "base"),
])
def test_parse_failures_are_errors_not_guesses(schema, text, message):
    r = parse_reply(schema, text)
    assert r.value is None and not r.ok
    assert message in r.error
    assert r.raw == text


def test_invalid_json_candidate_is_not_rescued_by_weaker_forms():
    r = parse_reply(SC, '{"success": 12, "overediting": 9}\nsuccess: 8, overediting: 9')
    assert r.value is None and "success" in r.error


def test_iecritic_mapping():
    assert iecritic_to_10(1) == 0 and iecritic_to_10(5) == 10 and iecritic_to_10(3) == 5
    with pytest.raises(ValueError):
        iecritic_to_10(0)


# -- templates ---------------------------------------------------------------------------------------------------
def test_builtin_templates_load_and_render():
    assert set(builtin_templates()) >= {"viescore_sc", "viescore_pq", "viescore_single", "yesno", "iecritic",
                                        "critic", "judge_critic"}
    for mode in MODES.values():
        for schema, name, _ in mode.calls:
            t = load_template(name)
            assert t.placeholders <= set(KNOWN_VALUES)
            text = t.render(instruction="make the car blue", format_instructions=format_instructions(schema),
                            verdict="V", history="H")
            assert format_instructions(schema) in text
            assert "{" + "format_instructions}" not in text


def test_instruction_with_braces_is_inserted_verbatim():
    t = load_template("viescore_sc")
    instruction = 'write {"a": 1} and {instruction} and {{x}} on the sign'
    text = t.render(instruction=instruction, format_instructions="FMT")
    assert f"Instruction: {instruction}\n" in text
    assert text.count("FMT") == 1


def test_empty_context_leaves_no_line_and_given_context_appears():
    t = load_template("yesno")
    without = t.render(instruction="X", format_instructions="F")
    assert "Instruction: X\n\n" in without
    with_ctx = t.render(instruction="X", context="rationale: the sign reads OPEN", format_instructions="F")
    assert "Instruction: X\nrationale: the sign reads OPEN\n" in with_ctx


def test_user_template_file_id_and_appended_format_instructions(tmp_path):
    path = tmp_path / "my_prompt.txt"
    path.write_text('Rate the edit for "{instruction}". Output {{"score": [a, b]}} or {"score": [..]}.\n')
    t = load_template(str(path))
    assert t.name == "my_prompt" and t.id.startswith("my_prompt@") and t.id == load_template(path).id
    text = t.render(instruction="add a hat", format_instructions="FORMAT")
    assert text.startswith('Rate the edit for "add a hat". Output {"score": [a, b]} or {"score": [..]}.')
    assert text.rstrip().endswith("FORMAT")
    path.write_text("Rate the edit for {instruction}, please.\n")
    assert load_template(path).id != t.id


def test_builtin_id_is_stable():
    assert load_template("viescore_sc").id == load_template("viescore_sc").id
    assert load_template("viescore_sc").id != load_template("viescore_pq").id


def test_template_errors(tmp_path):
    with pytest.raises(TemplateError, match="neither a built-in"):
        load_template("no_such_template")
    bad = tmp_path / "bad.md"
    bad.write_text("Judge {instruction} with {rubric}.")
    with pytest.raises(TemplateError, match="rubric"):
        load_template(bad)
    t = load_template("critic")
    with pytest.raises(TemplateError, match="history"):
        t.render(instruction="x", verdict="v", format_instructions="f")
    with pytest.raises(TemplateError, match="instrucion"):
        t.render(instrucion="x", verdict="v", history="h", format_instructions="f")


# -- critic values -----------------------------------------------------------------------------------------------
def test_format_verdict_and_history():
    v = Verdict(scores={"SC": [6, 9], "PQ": [8, 7]}, reasoning="the car is half blue", passed=False)
    text = format_verdict(v)
    assert "SC (success, overediting): 6, 9" in text and "the car is half blue" in text
    failed = Verdict.failed("parse_error", "no JSON")
    assert "parse_error" in format_verdict(failed)
    rounds = [Round(index=0, instruction="make the car blue", base="source", image="a", verdict=v),
              Round(index=1, instruction="paint the whole car blue", base="current", image="b",
                    verdict=Verdict(scores={"SC": [9, 9], "PQ": [8, 8]}))]
    h = format_history(rounds)
    assert 'Round 0 (edited from: source): "make the car blue"' in h and "best so far" in h.splitlines()[1]
    assert format_history([]) == "(none)"


def test_one_context_formatter_for_every_role():
    from refine_agent.tools.judges.prompts import context_items, format_context

    ctx = {"masked_instruction": "make the masked thing red", "rationale": "keep the sky", "note": "", "n": None}
    assert context_items(ctx) == [("rationale", "keep the sky")]  # RefEdit's masked instruction is not context
    assert format_context(ctx) == "rationale: keep the sky" and format_context(None) == ""
    assert format_context({"a_b": 1, "c": "d"}, sep="; ") == "a b: 1; c: d"


def test_parse_answer_prefers_valid_structured_output_then_the_text_with_split_out_reasoning():
    from refine_agent.tools.judges.prompts import parse_answer

    sc = {"reasoning": "r", "success": 9, "overediting": 8}
    assert parse_answer(SemanticConsistency, sc, "garbage").value.success == 9
    text = json.dumps({**sc, "success": 7})
    assert parse_answer(SemanticConsistency, {"success": 99}, text).value.success == 7  # invalid: the text
    assert parse_answer(SemanticConsistency, None, text).value.success == 7
    value = parse_answer(IECriticRating, None, "<answer>4</answer>", reasoning="it looks right").value
    assert value.rating == 4 and "it looks right" in value.reasoning
    assert parse_answer(SemanticConsistency, None, "no scores here").error
