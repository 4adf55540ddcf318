import pytest
from refine_agent.benchmarks.replay import Cut, NotReplayable, cut, replay, replay_budgets

from refine_agent.loop import LoopPolicy
from refine_agent.types import CallRecord, Critique, Round, StopReason, Trajectory, Verdict


def rnd(i: int, overall: float, passed: bool = False, critique: bool = True) -> Round:
    calls = [CallRecord(kind="editor", tool="e", seconds=1), CallRecord(kind="judge", tool="j", seconds=1)]
    c = None
    if critique:
        calls.append(CallRecord(kind="critic", tool="c", seconds=1))
        c = Critique(satisfied=False, instruction="again")
    s = overall
    return Round(index=i, instruction="x", base="source" if i == 0 else "current", image=f"img{i}",
                 verdict=Verdict(scores={"SC": [s, 10], "PQ": [10, 10]}, overall=s, passed=passed), critique=c,
                 calls=calls)


def traj(rounds: list[Round], reason: StopReason) -> Trajectory:
    return Trajectory(sample_id="s", instruction="x", source="src", seed=0, rounds=rounds, stop_reason=reason)


def test_a_smaller_budget_is_a_prefix_without_the_last_critique() -> None:
    t = traj([rnd(0, 3), rnd(1, 5), rnd(2, 4), rnd(3, 6, critique=False)], StopReason.max_rounds)
    r = replay(t, 1)
    assert [x.index for x in r.rounds] == [0, 1] and r.stop_reason is StopReason.max_rounds
    assert r.best_round == 1 and r.rounds[-1].critique is None
    assert r.calls_by_kind == {"editor": 2, "judge": 2, "critic": 1}
    assert replay(t, 0).calls_by_kind == {"editor": 1, "judge": 1, "critic": 0}
    assert replay(t, 3).calls_by_kind == {"editor": 4, "judge": 4, "critic": 3}


def test_an_earlier_stop_is_kept() -> None:
    t = traj([rnd(0, 3), rnd(1, 9, passed=True, critique=False)], StopReason.passed)
    r = replay(t, 3)
    assert r.stop_reason is StopReason.passed and len(r.rounds) == 2


def test_a_critic_stop_at_the_budget_becomes_max_rounds() -> None:
    last = rnd(1, 5)
    last.critique = Critique(satisfied=True)
    t = traj([rnd(0, 3), last], StopReason.critic_satisfied)
    assert replay(t, 3).stop_reason is StopReason.critic_satisfied
    assert replay(t, 3).calls_by_kind["critic"] == 2
    short = replay(t, 1)
    assert short.stop_reason is StopReason.max_rounds and short.calls_by_kind["critic"] == 1


def test_lower_thresholds_and_patience_replay() -> None:
    t = traj([rnd(0, 3), rnd(1, 6), rnd(2, 5), rnd(3, 5, critique=False)], StopReason.max_rounds)
    assert replay(t, 3, LoopPolicy(threshold=5.5)).stop_reason is StopReason.threshold
    assert len(replay(t, 3, LoopPolicy(threshold=5.5)).rounds) == 2
    assert replay(t, 3, LoopPolicy(patience=2)).stop_reason is StopReason.patience


def test_a_rule_that_would_go_on_past_the_run_s_own_stop_is_refused() -> None:
    t = traj([rnd(0, 3), rnd(1, 9, passed=True, critique=False)], StopReason.passed)
    with pytest.raises(NotReplayable, match="passed"):
        replay(t, 3, LoopPolicy(stop_on_pass=False))


def controlled(rounds: list[Round]) -> Trajectory:
    t = traj(rounds, StopReason.controller_finished)
    return t.model_copy(update={"controller": "scripted-controller", "best_round": 1})


def test_a_controller_run_is_known_at_budget_0_and_its_own_budget_only() -> None:
    """A controller plans with its whole budget in view: a run at budget 5 that finished at round 2 says
    nothing about a run at budget 2, so no budget between 0 and 5 settles it (issue 8, Medium 5)."""
    t = controlled([rnd(0, 3), rnd(1, 9), rnd(2, 6, critique=False)])
    cuts = replay_budgets(t, [0, 1, 2, 3, 5], run_budget=5)
    assert cuts.settles == 5
    one_shot = cuts.at(0)
    assert isinstance(one_shot, Cut) and one_shot.n_rounds == 1 and one_shot.calls_by_kind["critic"] == 0
    for b in (1, 2, 3):
        assert isinstance(cuts.at(b), NotReplayable), b
        with pytest.raises(NotReplayable, match="controller"):
            replay(t, b, run_budget=5)
    whole = cuts.at(5)
    assert isinstance(whole, Cut) and whole.n_rounds == 3 and whole.best_round == 1  # the controller's choice
    assert whole == cuts.at(7) == cut(t, 5, run_budget=5)
    assert replay(t, 5, run_budget=5).best_round == 1 and len(replay(t, 5, run_budget=5).rounds) == 3
