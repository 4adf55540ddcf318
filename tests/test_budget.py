import pytest
from pydantic import ValidationError

from refine_agent.budget import Budget, BudgetTracker, CallLimits
from refine_agent.types import StopReason, Usage

ROUND = {"critic": 1, "editor": 1, "judge": 1}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rounds() -> None:
    tr = BudgetTracker(Budget(max_rounds=2))
    assert tr.stop_before_round(1, ROUND) is None
    assert tr.stop_before_round(2, ROUND) is None
    assert tr.stop_before_round(3, ROUND) is StopReason.max_rounds


@pytest.mark.parametrize("limits", [CallLimits(editor=2), CallLimits(judge=2), CallLimits(critic=1),
                                    CallLimits(total=5)])
def test_tool_calls_per_kind_and_total(limits: CallLimits) -> None:
    tr = BudgetTracker(Budget(max_rounds=10, max_calls=limits))
    tr.charge("editor", Usage())
    tr.charge("judge", Usage())
    assert tr.stop_before_round(1, ROUND) is None
    for kind in ROUND:
        tr.charge(kind, Usage())  # type: ignore[arg-type]
    assert tr.stop_before_round(2, ROUND) is StopReason.max_tool_calls


def test_seconds() -> None:
    clock = Clock()
    tr = BudgetTracker(Budget(max_seconds=10), clock=clock)
    clock.t += 9.9
    assert tr.stop_before_round(1, ROUND) is None
    clock.t += 0.1
    assert tr.stop_before_round(1, ROUND) is StopReason.max_seconds


def test_cost() -> None:
    tr = BudgetTracker(Budget(max_cost=1.0))
    tr.charge("editor", Usage(cost_usd=0.6))
    assert tr.stop_before_round(1, ROUND) is None
    tr.charge("judge", Usage(cost_usd=0.4))
    assert tr.stop_before_round(1, ROUND) is StopReason.max_cost


def test_rounds_are_checked_first_so_replays_agree() -> None:
    tr = BudgetTracker(Budget(max_rounds=0, max_cost=0.0))
    assert tr.stop_before_round(1, ROUND) is StopReason.max_rounds


def test_round_zero_cannot_be_budgeted_away() -> None:
    with pytest.raises(ValidationError):
        Budget(max_calls=CallLimits(editor=0))
    with pytest.raises(ValidationError):
        Budget(max_rounds=-1)
    with pytest.raises(ValidationError):
        Budget(unknown=1)  # type: ignore[call-arg]
