import math

import pytest
from pydantic import ValidationError

from refine_agent.types import Critique, Round, StopReason, Trajectory, Usage, UsageTotals, Verdict, viescore_overall


def test_overall_is_viescore_geometric_mean_of_minimums() -> None:
    v = Verdict(scores={"SC": [9, 4], "PQ": [8, 10]})
    assert v.overall == pytest.approx(math.sqrt(4 * 8))
    assert viescore_overall([10, 10], [0, 10]) == 0


@pytest.mark.parametrize("status", ["parse_error", "refused", "error", "unsupported"])
def test_a_failed_judgment_carries_no_score(status: str) -> None:
    v = Verdict.failed(status, "could not parse")  # type: ignore[arg-type]
    assert v.overall is None and v.passed is None and v.scores == {}
    with pytest.raises(ValidationError, match="not a 0"):
        Verdict(status=status, overall=0.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Verdict(status=status, passed=False)  # type: ignore[arg-type]


def test_scores_must_be_on_the_0_to_10_scale() -> None:
    with pytest.raises(ValidationError, match="outside"):
        Verdict(scores={"SC": [11, 5], "PQ": [5, 5]})
    with pytest.raises(ValidationError, match="empty"):
        Verdict(scores={"SC": [], "PQ": [5]})
    with pytest.raises(ValidationError, match="overall"):
        Verdict()  # ok status with nothing to say


def test_pass_fail_only_verdicts_are_allowed() -> None:
    v = Verdict(passed=True, reasoning="yes")
    assert v.ok and v.overall is None


def test_unsatisfied_critique_needs_an_instruction() -> None:
    with pytest.raises(ValidationError, match="instruction"):
        Critique(satisfied=False, instruction="  ")
    assert Critique(satisfied=True).instruction is None


def test_usage_totals_count_calls_retries_and_cost() -> None:
    t = UsageTotals()
    t.add_call("editor", Usage(cost_usd=0.5, input_tokens=3), attempts=3)
    t.add_call("judge", Usage(), cached=True)
    t.add_call("critic", Usage(), failed=True)
    assert t.calls == {"editor": 1, "judge": 1, "critic": 1}
    assert (t.retries, t.cached_calls, t.failed_calls, t.cost_usd, t.input_tokens) == (2, 1, 1, 0.5, 3)
    other = UsageTotals()
    other.merge(t)
    assert other.total_calls == 3 and other.cost_usd == 0.5


def test_trajectory_round_trips_through_json() -> None:
    r = Round(index=0, instruction="x", base="source", image="ab", verdict=Verdict(scores={"SC": [5, 5], "PQ": [5, 5]}))
    t = Trajectory(sample_id="s", instruction="x", source="cd", seed=1, rounds=[r], best_round=0,
                   stop_reason=StopReason.max_rounds)
    back = Trajectory.model_validate_json(t.model_dump_json())
    assert back == t and back.best is not None and back.best.scored
