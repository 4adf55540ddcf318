import math

import pytest
from refine_agent.benchmarks.metrics import (
    Outcome,
    Score,
    bootstrap_ci,
    budget_stats,
    by_category,
    category_averages,
    compare,
    count_errors,
    score_of,
    wilcoxon_p,
)

from refine_agent.types import Verdict


def o(a: float | None, b: float | None, pa: bool | None = None, pb: bool | None = None, cat: str = "x",
      status: tuple[str, str] = ("ok", "ok"), final_round: int = 1) -> Outcome:
    return Outcome(sample_id=f"{a}{b}", category=cat, final_round=final_round,
                   one_shot=Score(status[0], a, pa if pa is not None else (a is not None and a >= 7)),
                   final=Score(status[1], b, pb if pb is not None else (b is not None and b >= 7)))


def test_transition_rates_follow_re_edit() -> None:
    outs = [o(3, 8), o(3, 9), o(8, 9), o(8, 2), o(2, 2), o(1, 1)]
    c = compare(outs)
    assert c["n_pairs"] == 6
    assert c["improvement_rate"] == pytest.approx(2 / 6)
    assert c["maintained_rate"] == pytest.approx(1 / 6)
    assert c["regression_rate"] == pytest.approx(1 / 6)
    assert c["unchanged_rate"] == pytest.approx(2 / 6)
    assert c["win_rate"] == pytest.approx(3 / 6) and c["tie_rate"] == pytest.approx(2 / 6)
    assert c["loss_rate"] == pytest.approx(1 / 6)
    assert c["mean_delta"] == pytest.approx((5 + 6 + 1 - 6 + 0 + 0) / 6)


def test_failed_judgments_are_excluded_and_counted_never_scored() -> None:
    outs = [o(3, 8), o(None, None, status=("parse_error", "ok")), o(None, None, status=("ok", "refused"))]
    c = compare(outs)
    assert c["n_pairs"] == 1 and c["improvement_rate"] == 1.0 and c["mean_delta"] == 5
    assert count_errors(outs, __import__("collections").Counter({"load_error": 2})) == {
        "eval_final_refused": 1, "eval_one_shot_parse_error": 1, "load_error": 2}
    assert score_of(Verdict.failed("parse_error", "x")).overall is None
    # when the final round is round 0, its one failed judgment is counted once
    same = o(None, None, status=("refused", "refused"), final_round=0)
    assert count_errors([same], __import__("collections").Counter()) == {"eval_one_shot_refused": 1}


def test_bootstrap_ci_is_seeded_and_brackets_the_mean() -> None:
    xs = [0.0, 1.0, 2.0, 3.0, 10.0]
    lo, hi = bootstrap_ci(xs)  # type: ignore[misc]
    assert lo <= sum(xs) / 5 <= hi and bootstrap_ci(xs) == [lo, hi]
    assert bootstrap_ci([]) is None and bootstrap_ci([4.0]) == [4.0, 4.0]


def test_wilcoxon() -> None:
    from scipy.stats import wilcoxon

    tied = [1.0, 1.0, 2.0, 2.0, 2.0, 3.0, -1.0, 1.0]  # tied |differences|: the normal approximation applies
    assert wilcoxon_p(tied) == pytest.approx(wilcoxon(tied, method="approx").pvalue)
    assert wilcoxon_p([0, 0, 0]) is None
    assert wilcoxon_p([1.0] * 12) < 0.01
    p = wilcoxon_p([1, -1, 2, -2, 0.5, -0.5])
    assert p is not None and p > 0.5


def test_budget_stats_and_categories() -> None:
    outs = [o(3, 8, cat="a"), o(9, 9, cat="a"), o(2, 7, cat="b"), o(1, 1, cat="b"), o(1, 1, cat="b")]
    for out in outs:
        out.calls, out.rounds_used, out.cost_usd = {"editor": 2, "judge": 2, "critic": 1}, 1, 0.01
    s = budget_stats(outs)
    assert s["n"] == 5 and s["pass_rate"] == pytest.approx(3 / 5) and s["mean_rounds"] == 1
    assert s["tool_calls_per_sample"] == {"critic": 1.0, "editor": 2.0, "judge": 2.0}
    assert s["cost_per_sample"] == pytest.approx(0.01) and s["mean_overall_ci95"] is not None
    cats = by_category(outs, order=["b", "a"])
    assert list(cats) == ["b", "a"] and cats["a"]["n_samples"] == 2
    avg = category_averages(cats, outs)
    assert avg["macro"]["improvement_rate"] == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert avg["micro"]["improvement_rate"] == pytest.approx(2 / 5)
    assert "GEdit" in avg["note"]


def test_empty_inputs_give_nulls_not_crashes() -> None:
    s = budget_stats([])
    assert s["n"] == 0 and s["mean_overall"] is None and s["pass_rate"] is None
    c = compare([o(None, None, status=("error", "error"))])
    assert c["improvement_rate"] is None and c["p_value"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in c.values())
