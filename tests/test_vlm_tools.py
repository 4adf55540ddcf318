"""VLM judges, critics and the LLM controller against the loopback server, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from refine_agent.tools.synthetic.generate import make_sample
from typer.testing import CliRunner

from refine_agent import Budget, Runtime, RuntimeConfig, refine
from refine_agent.agent import refine_with_controller
from refine_agent.budget import BudgetTracker
from refine_agent.cli import app
from refine_agent.images import Image
from refine_agent.registry import create_tool
from refine_agent.runtime import RetryPolicy
from refine_agent.types import CritiqueRequest, JudgeRequest, Round, StopReason, Verdict

from .fake_api import FakeAPI, Fault, anthropic_reply, chat_reply, fake_api_fixture, images_reply  # noqa: F401

KEY = "sk-test-very-secret-0123456789"
FAST = RuntimeConfig(retry=RetryPolicy(max_attempts=3, initial_wait=0, max_wait=0, jitter=0))
SC = '{"reasoning": "the circle is blue now", "success": 9, "overediting": 8}'
PQ = '{"reasoning": "clean", "naturalness": 10, "artifacts": 9}'
_open: list = []


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture(autouse=True)
async def _close():  # type: ignore[no-untyped-def]
    yield
    while _open:
        await _open.pop().aclose()


def tool(kind: str, spec: str, api: FakeAPI, **options):  # type: ignore[no-untyped-def]
    url = api.anthropic_base_url if spec.startswith("anthropic") else api.openai_base_url
    t = create_tool(kind, spec, {"base_url": url, "price_in": 1.0, "price_out": 2.0, **options})
    _open.append(t)
    return t


def img(v: int) -> Image:
    return Image(np.full((12, 16, 3), v, np.uint8))


def jreq(**kw) -> JudgeRequest:  # type: ignore[no-untyped-def]
    return JudgeRequest(source=img(10), edited=img(200), instruction="make it {brighter}", seed=5, **kw)


async def test_viescore_two_calls(fake_api: FakeAPI) -> None:
    fake_api.script("chat", chat_reply(SC, model="gpt-served"), chat_reply(PQ, model="gpt-served"))
    v = await tool("judge", "openai:gpt-x", fake_api).judge(jreq())
    assert v.ok and v.scores == {"SC": [9.0, 8.0], "PQ": [10.0, 9.0]} and v.overall == pytest.approx(np.sqrt(72))
    assert v.passed is True and v.info["model"] == "gpt-served" and v.info["temperature"] == 0.0
    assert v.info["seeds"] == [5] and len(v.info["templates"]) == 2 and v.usage.cost_usd > 0
    sc, pq = fake_api.requests("chat")
    assert [i.sha256 for i in sc.images] == [img(10).sha256, img(200).sha256]
    assert [i.sha256 for i in pq.images] == [img(200).sha256]
    assert "make it {brighter}" in json.dumps(sc.json)  # braces in the instruction arrive verbatim
    assert sc.json["response_format"]["type"] == "json_schema"


async def test_prose_wrapped_json_parses_and_garbage_is_a_parse_error_not_a_score(fake_api: FakeAPI) -> None:
    fake_api.script("chat", chat_reply(f"Here you go:\n```json\n{SC}\n```"), chat_reply("Scores: [10, 9] and done"),
                    chat_reply("I think it is fine overall."),
                    chat_reply('{"success": 8, "overediting": 9, "extra": [1, 2, 3]}'), chat_reply("[7, 8, 9]"))
    judge = tool("judge", "openai:gpt-x", fake_api, structured=False)
    assert (await judge.judge(jreq())).overall == pytest.approx(np.sqrt(8 * 9))
    bad = await judge.judge(jreq())
    assert bad.status == "parse_error" and bad.overall is None and bad.passed is None
    assert "fine overall" in (bad.raw or "")
    wrong = await judge.judge(jreq())  # the right SC, then a PQ with the wrong number of scores
    assert wrong.status == "parse_error" and "[7, 8, 9]" in (wrong.raw or "")


async def test_refusals_are_refused_verdicts(fake_api: FakeAPI) -> None:
    fake_api.script("chat", chat_reply(None, refusal="I can't judge this image."), Fault.content_policy())
    judge = tool("judge", "openai:gpt-x", fake_api)
    assert (await judge.judge(jreq())).status == "refused"
    v = await judge.judge(jreq())
    assert v.status == "refused" and v.overall is None


async def test_yesno_with_context_and_repeats_with_majority(fake_api: FakeAPI) -> None:
    fake_api.script("chat", chat_reply('{"reasoning": "yes", "passed": true}'),
                    chat_reply('{"reasoning": "no", "passed": false}'), chat_reply("Yes, it passes."))
    judge = tool("judge", "openai:gpt-x", fake_api, mode="yesno", repeats=3, aggregate="majority")
    v = await judge.judge(jreq(context={"rationale": "the sky must stay blue"}))
    assert v.passed is True and v.overall is None and v.info["valid"] == 3 and v.info["seeds"] == [5, 6, 7]
    assert "the sky must stay blue" in json.dumps(fake_api.requests("chat")[0].json)


async def test_min_valid_turns_too_few_answers_into_a_failed_judgment(fake_api: FakeAPI) -> None:
    fake_api.script("chat", chat_reply("???"), chat_reply('{"reasoning": "ok", "passed": true}'))
    judge = tool("judge", "openai:gpt-x", fake_api, mode="yesno", repeats=2, min_valid=2)
    v = await judge.judge(jreq())
    assert v.status == "parse_error" and "1 of 2" in v.reasoning


async def test_iecritic_maps_the_rating_and_keeps_it(fake_api: FakeAPI) -> None:
    fake_api.script("chat", chat_reply("<think>looks good</think><answer>4</answer>"))
    v = await tool("judge", "openai:gpt-x", fake_api, mode="iecritic").judge(jreq())
    assert v.overall == pytest.approx(7.5) and v.info["rating"] == 4
    assert "response_format" not in fake_api.requests("chat")[0].json
    fake_api.script("chat", chat_reply("<answer>4</answer>"), chat_reply("<answer>2</answer>"))
    v = await tool("judge", "openai:gpt-x", fake_api, mode="iecritic", repeats=2).judge(jreq())
    assert v.info["rating"] == [4, 2] and v.info["rating_scale"] == "1-5"  # every repeat's raw rating is kept


async def test_anthropic_judge_uses_a_forced_tool(fake_api: FakeAPI) -> None:
    fake_api.script("messages", anthropic_reply(tool_use=("semanticconsistency", json.loads(SC)), model="claude-v"),
                    anthropic_reply(tool_use=("perceptualquality", json.loads(PQ)), model="claude-v"))
    v = await tool("judge", "anthropic:claude-x", fake_api).judge(jreq())
    assert v.overall == pytest.approx(np.sqrt(72)) and v.info["model"] == "claude-v"
    assert fake_api.requests("messages")[0].json["tool_choice"]["type"] == "tool"


async def test_a_refedit_mask_blacks_out_everything_else_for_the_sc_call(fake_api: FakeAPI) -> None:
    fake_api.script("chat", chat_reply(SC), chat_reply(PQ))
    mask = Image(np.zeros((12, 16, 3), np.uint8))
    await tool("judge", "openai:gpt-x", fake_api, mask_dilation=0).judge(
        jreq(mask=mask, context={"masked_instruction": "brighten the masked thing"}))
    sc, pq = fake_api.requests("chat")
    assert all(float(i.array.max()) == 0 for i in sc.images)  # nothing of interest outside the (empty) mask
    assert pq.images[0].sha256 == img(200).sha256  # PQ sees the whole edit
    assert "brighten the masked thing" in json.dumps(sc.json)


async def test_the_vlm_critic_and_judge_plus_critic(fake_api: FakeAPI) -> None:
    crit = '{"analysis": "too dark", "satisfied": false, "instruction": "brighten more", "base": "current"}'
    fake_api.script("chat", chat_reply(crit))
    verdict = Verdict(scores={"SC": [3, 9], "PQ": [9, 9]}, passed=False, reasoning="dim")
    req = CritiqueRequest(source=img(10), edited=img(60), instruction="make it brighter", verdict=verdict, seed=1,
                          history=[Round(index=0, instruction="make it brighter", base="source", verdict=verdict)])
    c = await tool("critic", "openai:gpt-x", fake_api).critique(req)
    assert (c.satisfied, c.instruction, c.base) == (False, "brighten more", "current")
    body = json.dumps(fake_api.requests("chat")[0].json)
    assert "dim" in body and "make it brighter" in body  # the verdict and the instruction reach the critic

    both = json.dumps({**json.loads(SC), **json.loads(PQ), "analysis": "nearly", "satisfied": False,
                       "instruction": "a bit brighter", "base": "best"})
    fake_api.script("chat", chat_reply(both))
    v = await tool("judge", "openai:gpt-x", fake_api, mode="judge+critic").judge(jreq())
    assert v.info["critique"]["instruction"] == "a bit brighter"
    fc = await create_tool("critic", "from-judge").critique(req.model_copy(update={"verdict": v}))
    assert fc.instruction == "a bit brighter" and fc.base == "best"
    assert len(fake_api.requests("chat")) == 2  # one call for the judgment and the critique together


async def test_a_full_loop_and_retries_against_the_server(fake_api: FakeAPI) -> None:
    s = make_sample(1, 0)
    fake_api.script("chat", Fault.rate_limited(retry_after="0"), chat_reply(SC), chat_reply(PQ))
    res = await refine(s.image(), s.instruction, editor=create_tool("editor", "sim", {"skill": 1.0}),
                       judge=tool("judge", "openai:gpt-x", fake_api), critic=create_tool("critic", "rule"),
                       runtime=Runtime(FAST))
    t = res.trajectory
    assert t.stop_reason is StopReason.passed and t.usage.retries == 1 and t.usage.cost_usd > 0


async def test_the_llm_controller_drives_the_loop(fake_api: FakeAPI) -> None:
    s = make_sample(0, 0)
    fake_api.script("chat", chat_reply(SC), chat_reply(PQ))  # the judge of round 0
    fake_api.script("chat", chat_reply("Let me try again.", tool_calls=[("edit", {"instruction": s.instruction,
                                                                                  "base": "source"})]))
    fake_api.script("chat", chat_reply(None, tool_calls=[("judge", {"image": "1"})]))
    fake_api.script("chat", chat_reply(SC), chat_reply(PQ))  # the judge of round 1
    fake_api.script("chat", chat_reply(None, tool_calls=[("finish", {"image": "1", "reason": "good"})]))
    res = await refine_with_controller(s.image(), s.instruction,
                                       controller=tool("controller", "llm:openai:ctrl", fake_api),
                                       editor=create_tool("editor", "sim"),
                                       judge=tool("judge", "openai:judge", fake_api),
                                       budget=Budget(max_rounds=2), runtime=Runtime(FAST))
    t = res.trajectory
    assert t.stop_reason is StopReason.controller_finished and t.best_round == 1 and len(t.rounds) == 2
    assert t.controller == "llm:openai:ctrl" and [e.name for e in t.controller_log] == ["edit", "judge", "finish"]
    assert t.usage.calls["controller"] == 3 and t.rounds[0].critique.analysis == "Let me try again."
    ctrl_reqs = [r for r in fake_api.requests("chat") if r.json.get("tools")]
    assert [t["function"]["name"] for t in ctrl_reqs[0].json["tools"]] == ["edit", "judge", "finish"]
    assert s.image().sha256 in [i.sha256 for i in ctrl_reqs[0].images]  # it sees the source
    assert ctrl_reqs[1].images  # and the image its edit produced


def _cli(*args: str, env: dict[str, str]):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env)


def test_edit_and_bench_from_the_cli_with_openai_base_url(fake_api: FakeAPI, tmp_path: Path) -> None:
    env = {"OPENAI_BASE_URL": fake_api.openai_base_url, "OPENAI_API_KEY": KEY}
    crit = '{"analysis": "fine", "satisfied": true, "instruction": "", "base": "current"}'
    fake_api.on("chat", lambda r: chat_reply(crit if "critique" in json.dumps(r.json.get("response_format"))
                                             else (SC if len(r.images) == 2 else PQ)))
    fake_api.on("images", lambda r: images_reply([r.images[0]], usage=(10, 10, 10)))
    s = make_sample(3, 0)
    s.image().save(tmp_path / "scene.png")
    r = _cli("edit", str(tmp_path / "scene.png"), s.instruction, "--editor", "openai:gpt-image-1", "--judge",
             "openai:gpt-4o", "--critic", "openai:gpt-4o", "--out", str(tmp_path / "out"), env=env)
    assert r.exit_code == 0, r.output
    traj = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    assert traj["usage"]["cost_usd"] > 0 and traj["rounds"][0]["verdict"]["info"]["model"] == "fake-model"
    both = json.dumps({**json.loads(SC), **json.loads(PQ), "analysis": "fine", "satisfied": True, "instruction": "",
                       "base": "current"})
    fake_api.on("chat", lambda r: chat_reply(both))  # judge+critic: one reply holds the judgment and the critique
    r = _cli("bench", "synthetic", "--limit", "3", "--run-dir", str(tmp_path / "run"), "--judge", "openai:gpt-4o",
             "-J", f"api_key={KEY}", "--critic", "from-judge", "-J", "mode=judge+critic", "--max-rounds", "1",
             env=env)
    assert r.exit_code == 0, r.output
    for path in list((tmp_path / "run").rglob("*")) + list((tmp_path / "out").rglob("*")):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path  # keys never reach a run dir or an output dir
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["judge"]["options"]["api_key"] == "***"
    assert all(k == KEY for k in fake_api.received_keys())  # but the server did get it


def test_a_rejected_key_is_one_clear_line(fake_api: FakeAPI, tmp_path: Path) -> None:
    fake_api.on("chat", Fault.unauthorized())
    s = make_sample(3, 0)
    s.image().save(tmp_path / "scene.png")
    r = _cli("edit", str(tmp_path / "scene.png"), s.instruction, "--judge", "openai:gpt-4o", "--out",
             str(tmp_path / "o"), env={"OPENAI_BASE_URL": fake_api.openai_base_url, "OPENAI_API_KEY": KEY})
    assert r.exit_code == 1 and "OPENAI_API_KEY is not set or was rejected by http://127.0.0.1" in r.output
    assert KEY not in r.output and "Traceback" not in r.output


def test_edit_with_anthropic_judge_and_critic(fake_api: FakeAPI, tmp_path: Path) -> None:
    crit = {"analysis": "fine", "satisfied": True, "instruction": "", "base": "current"}

    def answer(r):  # type: ignore[no-untyped-def]
        name = r.json["tool_choice"]["name"]
        data = {"semanticconsistency": json.loads(SC), "perceptualquality": json.loads(PQ), "critique": crit}[name]
        return anthropic_reply(tool_use=(name, data), model="claude-served")

    fake_api.on("messages", answer)
    s = make_sample(3, 0)
    s.image().save(tmp_path / "scene.png")
    r = _cli("edit", str(tmp_path / "scene.png"), s.instruction, "--judge", "anthropic:claude-x", "--critic",
             "anthropic:claude-x", "--keep-going", "--out", str(tmp_path / "out"),
             env={"ANTHROPIC_BASE_URL": fake_api.anthropic_base_url, "ANTHROPIC_API_KEY": KEY})
    assert r.exit_code == 0, r.output
    traj = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    assert traj["stop_reason"] == "critic_satisfied" and traj["tools"]["judge"]["name"] == "anthropic:claude-x"


def test_edit_with_an_llm_controller_from_the_cli(fake_api: FakeAPI, tmp_path: Path) -> None:
    def answer(r):  # type: ignore[no-untyped-def]
        if r.json.get("tools"):  # the controller: finish with the one-shot round
            return chat_reply(None, tool_calls=[("finish", {"image": "0", "reason": "good enough"})])
        return chat_reply(SC if len(r.images) == 2 else PQ)

    fake_api.on("chat", answer)
    s = make_sample(3, 0)
    s.image().save(tmp_path / "scene.png")
    r = _cli("edit", str(tmp_path / "scene.png"), s.instruction, "--judge", "openai:j", "--controller",
             "llm:openai:c", "--out", str(tmp_path / "out"),
             env={"OPENAI_BASE_URL": fake_api.openai_base_url, "OPENAI_API_KEY": KEY})
    assert r.exit_code == 0, r.output
    traj = json.loads((tmp_path / "out" / "trajectory.json").read_text())
    assert traj["stop_reason"] == "controller_finished" and traj["controller"] == "llm:openai:c"
    assert traj["controller_log"][0]["name"] == "finish"


async def test_a_garbled_http_body_is_retried_not_scored(fake_api: FakeAPI) -> None:
    from .fake_api import Malformed

    fake_api.script("chat", Malformed(), chat_reply(SC), chat_reply(PQ))
    judge = tool("judge", "openai:gpt-x", fake_api)
    res = await Runtime(FAST).call("judge", judge, lambda: judge.judge(jreq()))
    assert res.record.attempts == 2 and res.value.ok


async def test_a_retried_viescore_judgment_costs_every_answered_request(fake_api: FakeAPI) -> None:
    """SC is answered (and billed), PQ fails with a 500, the runtime retries both: all three answers cost."""
    fake_api.script("chat", chat_reply(SC, usage=(1000, 0)), Fault.server_error(500), chat_reply(SC, usage=(1000, 0)),
                    chat_reply(PQ, usage=(1000, 0)))
    judge = tool("judge", "openai:gpt-x", fake_api)
    tracker = BudgetTracker(Budget())
    out = await Runtime(FAST).call("judge", judge, lambda: judge.judge(jreq()), tracker=tracker)
    assert out.value.ok and out.record.attempts == 2 and out.value.usage.cost_usd == pytest.approx(0.002)
    assert out.record.usage.cost_usd == pytest.approx(0.003) and tracker.usage.cost_usd == pytest.approx(0.003)
    assert out.record.usage.input_tokens == 3000
