"""``benchmarks.report``: outcome rules, the improvement-rate CI, and report.html checked statically and in a
real headless Chromium (selenium + chromedriver). Without a browser the browser test skips, except under CI."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from refine_agent.benchmarks.metrics import Score, bootstrap_ci
from refine_agent.benchmarks.report import collect_report, pick_cards, write_report
from refine_agent.benchmarks.report_views import OUTCOMES, classify, cost_per_point, improvement_rate_ci95
from typer.testing import CliRunner

from refine_agent.cli import app
from refine_agent.store import RunStore

from .browser import browser_paths, chromium_driver  # noqa: F401  (the driver fixture)

PWN = "<script>window.__pwned=1</script>"
BAD_CATEGORY = 'x"><img src=nope onerror="window.__pwned=1">'
N_SYNTHETIC = 12


# -- outcome rules and helpers --------------------------------------------------------------------------------
def s(overall: float | None, passed: bool | None = None, status: str = "ok") -> Score:
    return Score(status=status, overall=overall, passed=passed)


@pytest.mark.parametrize("one, final, expected", [
    (s(3, False), s(8, True), "improved"),  # fail -> pass
    (s(8, True), s(7.9, False), "regressed"),  # pass -> fail
    (s(8, True), s(9, False), "regressed"),  # pass/fail decides before the score
    (s(2, False), s(1, True), "improved"),
    (s(5, False), s(6, False), "improved"),  # same pass/fail: the higher overall wins
    (s(9, True), s(8, True), "regressed"),
    (s(6, True), s(6 + 1e-9, True), "unchanged"),  # within TIE_EPS
    (s(5), s(5.5), "improved"),  # no pass/fail at all
    (s(None, False), s(None, False), "unchanged"),  # pass/fail only
    (s(None, False), s(None, True), "improved"),
    (s(None, status="parse_error"), s(8, True), "error"),  # a failed judgment is never scored
    (s(3, False), s(None, status="refused"), "error"),
    (s(3, False), Score("missing"), "error"),
    (s(5), s(None, True), "error"),  # nothing in common to compare
])
def test_classify(one: Score, final: Score, expected: str) -> None:
    assert classify(one, final) == expected


def test_improvement_rate_ci95_is_the_seeded_bootstrap_of_fail_to_pass() -> None:
    transitions = [(False, True)] * 3 + [(True, True)] * 4 + [(True, False)] + [(False, False)] * 2
    lo, hi = improvement_rate_ci95(transitions)  # type: ignore[misc]
    assert lo <= 0.3 <= hi and 0.0 <= lo < hi <= 1.0
    assert [lo, hi] == bootstrap_ci([1.0] * 3 + [0.0] * 7) == improvement_rate_ci95(iter(transitions))
    assert improvement_rate_ci95([]) is None
    assert improvement_rate_ci95([(False, True)]) == [1.0, 1.0]


def test_cost_per_point() -> None:
    assert cost_per_point(2.0, 8.0) == 0.25
    assert cost_per_point(0.0, 8.0) is None  # no cost reported
    assert cost_per_point(1.0, 0.0) is None and cost_per_point(1.0, -2.0) is None  # no gain


# -- a real run directory -------------------------------------------------------------------------------------
def invoke(*args: str) -> None:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    invoke("datasets", "make", "synthetic", "--out", str(data), "--n", str(N_SYNTHETIC))
    manifest = data / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows[1]["instruction"] += f" {PWN} see https://example.com/ref.png"
    rows[2]["category"] = BAD_CATEGORY
    rows.append({"id": "missing", "source": "images/does-not-exist.png", "instruction": "make it blue",
                 "category": "color_alter"})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = root / "run"
    invoke("bench", f"jsonl:{manifest}", "--run-dir", str(run), "--max-rounds", "2")
    write_report(run)
    return run


def test_outcomes_agree_with_summary(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    store = RunStore(run_dir, writer=False)
    try:
        data = collect_report(store, store.read_run_info() or {}, summary["budget"], max_samples=5)
    finally:
        store.close()
    assert data.n_total == summary["n_samples"] == N_SYNTHETIC + 1 and len(data.samples) == 5
    assert sum(data.counts.values()) == data.n_total and set(data.counts) <= set(OUTCOMES)
    assert data.counts["error"] >= 2  # the missing image and the instruction the editor cannot parse
    assert sum(data.deltas) / len(data.deltas) == pytest.approx(summary["mean_delta"])
    fail_to_pass = sum(1 for a, b in data.transitions if not a and b)
    assert fail_to_pass / len(data.transitions) == pytest.approx(summary["improvement_rate"])
    assert data.counts["improved"] >= fail_to_pass


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "poster", "data", "action", "formaction", "background"):
                self.refs.append((tag, name, value or ""))


def test_page_is_self_contained_and_escaped(run_dir: Path) -> None:
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(html)
    assert parser.refs and all(v.startswith("data:image/") for _, _, v in parser.refs), parser.refs[:3]
    assert not {"link", "iframe", "object", "embed", "base", "frame"} & set(parser.tags)
    assert parser.tags.count("script") == 1 and "url(" not in html and "@import" not in html
    # the only URL on the page is the dataset's text, in no attribute
    assert {html[m.start():m.start() + 27] for m in re.finditer(r"https?://", html)} == {"https://example.com/ref.png"}
    assert PWN not in html and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert BAD_CATEGORY not in html and "x&quot;&gt;&lt;img src=nope" in html
    for name in ("budget", "gain_by_category", "deltas"):
        assert (run_dir / "plots" / f"{name}.png").stat().st_size > 1000
    assert 'id="optimistic"' in html  # the evaluation judge is the loop judge


def test_max_samples_caps_the_browser_and_says_so(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    store = RunStore(copy, writer=False)
    first = next(store.iter_samples())
    assert first.trajectory is not None and first.trajectory.rounds[0].image
    store.image_path(first.trajectory.rounds[0].image).unlink()  # a damaged run still gets a page
    store.close()
    html = write_report(copy, max_samples=3).read_text(encoding="utf-8")
    assert html.count('class="sample"') == 3
    assert f"Showing 3 of {N_SYNTHETIC + 1} samples (max_samples=3), shared evenly between the outcomes" in html
    shown = re.findall(r'class="sample" data-category="[^"]*" data-outcome="(\w+)"', html)
    assert len(set(shown)) == 3  # one card per outcome, not the first three samples
    assert "image unreadable" in write_report(copy, max_samples=100).read_text(encoding="utf-8")


def test_cards_are_shared_between_outcomes() -> None:
    ids = {"improved": [f"i{k}" for k in range(50)], "regressed": ["r0", "r1"],
           "unchanged": [f"u{k}" for k in range(9)], "error": []}
    chosen = pick_cards(ids, 10)
    assert len(chosen) == 10 and {"r0", "r1"} <= chosen
    assert sum(c.startswith("u") for c in chosen) == 4 and sum(c.startswith("i") for c in chosen) == 4
    assert pick_cards(ids, 1000) == {x for v in ids.values() for x in v} and pick_cards(ids, 0) == set()


def test_independent_eval_judge_drops_the_warning(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    invoke("rejudge", str(copy), "--eval-judge", "verify", "-V", "noise=1")
    html = write_report(copy).read_text(encoding="utf-8")
    assert 'id="optimistic"' not in html and "(independent of the loop)" in html
    assert "noise=1.0" in html and "eval " in html  # per-round evaluation scores beside the loop's


# -- in a real browser ------------------------------------------------------------------------------------------
def test_a_missing_browser_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        browser_paths()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have a browser"):
        browser_paths()


def test_report_in_headless_chromium(run_dir: Path, driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    html = (run_dir / "report.html").read_text(encoding="utf-8")
    driver.get((run_dir / "report.html").resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"

    def severe() -> list[Any]:
        return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]

    assert not severe()

    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
    assert len(images) == html.count("<img ") > 10
    assert all(complete and width > 0 for complete, width, _ in images), [i for i in images if not i[1]]
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(r.startswith("data:") for r in resources), resources

    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    texts = [el.text for el in driver.find_elements(By.CSS_SELECTOR, ".sample .instr")]
    assert any(PWN in t for t in texts)  # shown as text, not run
    assert driver.find_element(By.ID, "optimistic").is_displayed()

    def visible() -> list[Any]:
        return [c for c in driver.find_elements(By.CSS_SELECTOR, ".sample") if c.is_displayed()]

    cards = visible()
    total = len(cards)
    assert total == N_SYNTHETIC + 1
    by_cat: dict[str, int] = {}
    by_out: dict[str, int] = {}
    pairs: dict[tuple[str, str], int] = {}
    for c in cards:
        cat, out = c.get_attribute("data-category"), c.get_attribute("data-outcome")
        by_cat[cat] = by_cat.get(cat, 0) + 1
        by_out[out] = by_out.get(out, 0) + 1
        pairs[(cat, out)] = pairs.get((cat, out), 0) + 1
    assert BAD_CATEGORY in by_cat and "error" in by_out

    category = Select(driver.find_element(By.ID, "f-category"))
    outcome = Select(driver.find_element(By.ID, "f-outcome"))
    category.select_by_value(BAD_CATEGORY)
    assert len(visible()) == by_cat[BAD_CATEGORY] == 1
    category.select_by_value("subject-add")
    assert len(visible()) == by_cat["subject-add"] < total
    outcome.select_by_value("error")
    assert len(visible()) == pairs[("subject-add", "error")] == 1  # the editor could not parse its instruction
    category.select_by_value("")
    assert len(visible()) == by_out["error"]
    assert driver.find_element(By.ID, "f-count").text == f"{by_out['error']} of {total} shown"
    driver.find_element(By.ID, "f-reset").click()
    assert len(visible()) == total

    assert not severe()
