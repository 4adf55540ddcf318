"""``refine-agent compare``: runs made by the real CLI on one dataset (a jsonl copy of the synthetic world with
a hostile instruction and category), the numbers checked against each run's own records, the refusals, the
judge warnings, and compare.html statically and in a real headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from refine_agent.benchmarks.compare import compare_runs
from refine_agent.benchmarks.metrics import TIE_EPS, bootstrap_ci, wilcoxon_p

from refine_agent.store import RunStore

from .browser import chromium_driver, severe_logs  # noqa: F401  (the driver fixture)
from .hostile.conftest import cli, error_line

PWN = "<script>window.__pwned=1</script>"
BAD_CATEGORY = 'x"><img src=nope onerror="window.__pwned=1">'
N_ROWS = 11  # 10 scenes and a row whose image is missing
LIMIT_A = 8


def ok(*args: str) -> str:
    r = cli(*args)
    assert r.exit_code == 0, r.output
    return r.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A: one-shot on the first 8 samples; B: up to 3 re-edits on all; C: 1 re-edit scored by another judge;
    syn: the same scenes as the built-in synthetic dataset, which is another dataset spec."""
    root = tmp_path_factory.mktemp("compare")
    data = root / "data"
    ok("datasets", "make", "synthetic", "--out", str(data), "--n", str(N_ROWS - 1))
    manifest = data / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows[1]["instruction"] += f" {PWN}"
    rows[2]["category"] = BAD_CATEGORY
    rows.append({"id": "missing", "source": "images/does-not-exist.png", "instruction": "make it blue",
                 "category": "color_alter"})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = f"jsonl:{manifest}"
    dirs = {k: root / k for k in ("a", "b", "c", "syn")}
    ok("bench", spec, "-d", str(dirs["a"]), "--max-rounds", "0", "--limit", str(LIMIT_A))
    ok("bench", spec, "-d", str(dirs["b"]), "--max-rounds", "3")
    ok("bench", spec, "-d", str(dirs["c"]), "--max-rounds", "1", "--eval-judge", "verify", "-V", "noise=1")
    ok("bench", "synthetic", "-d", str(dirs["syn"]), "--max-rounds", "0", "--limit", "3")
    ok("compare", str(dirs["a"]), str(dirs["b"]), "--out", str(root / "ab"))
    ok("compare", str(dirs["a"]), str(dirs["b"]), str(dirs["c"]), "--out", str(root / "abc"))
    return {**dirs, "ab": root / "ab", "abc": root / "abc"}


def finals(run: Path) -> tuple[dict[str, float], dict[str, str], set[str]]:
    """From the records alone: each sample's final overall (the kept round, by the evaluation judge), its
    category, and every sample id with a record."""
    store = RunStore(run, writer=False, create=False)
    try:
        info = store.require_run_info()
        key = None if info["eval_judge"]["is_loop_judge"] else info["eval_judge"]["key"]
        scores, cats, ids = {}, {}, set()
        for rec in store.iter_samples():
            ids.add(rec.sample_id)
            t = rec.trajectory
            if rec.status != "done" or t is None or not t.rounds or t.rounds[0].image is None:
                continue
            best = t.best_round if t.best_round is not None else 0
            v = store.evals(key, rec.sample_id).get(best) if key else t.rounds[best].verdict
            if v is not None and v.ok and v.overall is not None:
                scores[rec.sample_id] = v.overall
                cats[rec.sample_id] = rec.category or "uncategorized"
    finally:
        store.close()
    return scores, cats, ids


def compare_json(out: Path) -> dict[str, Any]:
    return json.loads((out / "compare.json").read_text())


def test_deltas_and_counts_match_the_records(runs: dict[str, Path]) -> None:
    result = compare_json(runs["ab"])
    fa, cats, ids_a = finals(runs["a"])
    fb, _, ids_b = finals(runs["b"])
    a, b = result["runs"]
    assert (a["label"], b["label"], result["baseline"]) == ("A", "B", "A")
    assert a["n_records"] == len(ids_a) == LIMIT_A and b["n_records"] == len(ids_b) == N_ROWS
    assert a["n_missing"] == N_ROWS - LIMIT_A and b["n_missing"] == 0 and result["n_samples"] == N_ROWS
    assert a["n_scored"] == len(fa) and b["n_scored"] == len(fb) and b["n_unscored"] == N_ROWS - len(fb) >= 1
    assert "missing" in b["ids"]["unscored"] and "missing" in a["ids"]["missing"]
    assert b["mean_overall"] == pytest.approx(sum(fb.values()) / len(fb))

    pair = result["pairs"][0]
    assert (pair["a"], pair["b"], pair["n_aligned"]) == ("A", "B", LIMIT_A)
    assert pair["missing_in_a"] == N_ROWS - LIMIT_A and pair["missing_in_b"] == 0
    assert pair["unscored_in_a"] == LIMIT_A - len(fa)
    assert pair["unscored_in_b"] == len([s for s in ids_a if s not in fb])
    both = [s for s in fa if s in fb]  # A's dataset order
    deltas = [fb[s] - fa[s] for s in both]
    o = pair["overall"]
    assert o["n_scored_pairs"] == len(deltas) > 3
    assert o["mean_delta"] == pytest.approx(sum(deltas) / len(deltas)) and o["mean_delta"] > 0
    assert o["mean_delta_ci95"] == pytest.approx(bootstrap_ci(deltas))
    assert o["p_value"] == pytest.approx(wilcoxon_p(deltas))
    assert o["win_rate"] == pytest.approx(sum(d > TIE_EPS for d in deltas) / len(deltas))
    assert o["loss_rate"] == pytest.approx(sum(d < -TIE_EPS for d in deltas) / len(deltas))
    a_side = [fa[s] for s in fa if s in ids_b]  # A's scored samples among those both runs have
    assert o["a"]["mean_overall"] == pytest.approx(sum(a_side) / len(a_side))
    assert sum(c["n_scored_pairs"] for c in pair["by_category"].values()) == len(deltas)
    for name, c in pair["by_category"].items():
        ds = [fb[s] - fa[s] for s in both if cats[s] == name]
        assert c["mean_delta"] == pytest.approx(sum(ds) / len(ds)), name
    assert any(f"B vs A: samples {N_ROWS - LIMIT_A} missing from A" in w for w in result["warnings"])

    series = {p["series"] for p in result["points"]}
    assert "A: depth 0 (width 1)" in series and any(s.startswith("B: depth 0..") for s in series)
    summary_b = json.loads((runs["b"] / "summary.json").read_text())
    for p in (p for p in result["points"] if p["run"] == "B"):
        row = summary_b["by_budget"][str(p["depth"])]
        assert p["calls_per_sample"]["editor"] == row["tool_calls_per_sample"]["editor"]
        assert p["mean_overall"] == row["mean_overall"] and p["strategy"] == "depth" and p["width"] == 1


def test_cards_show_who_wins(runs: dict[str, Path]) -> None:
    fa, _, _ = finals(runs["a"])
    fb, _, _ = finals(runs["b"])
    html = (runs["ab"] / "compare.html").read_text(encoding="utf-8")
    cards = re.findall(r'<article class="sample" data-category="[^"]*" data-win1="(\w+)"><header>'
                       r'<span class="sid">#\d+ ([^<]*)</span>', html)
    assert len(cards) == N_ROWS
    for win, sid in cards:
        if sid in fa and sid in fb:
            d = fb[sid] - fa[sid]
            assert win == ("b" if d > TIE_EPS else "a" if d < -TIE_EPS else "tie"), sid
        else:
            assert win == "na", sid
    assert html.count('data-status="missing"') == N_ROWS - LIMIT_A  # A never ran them


def test_refusals(runs: dict[str, Path], tmp_path: Path) -> None:
    a, out = str(runs["a"]), tmp_path / "out"
    for args, expected in (([a], "two or more run directories"),
                           ([a, a], "given twice"),
                           ([a, f"{runs['b']}/../a"], "are one folder"),
                           ([a, str(runs["syn"])], "the runs are on different datasets"),
                           ([a, str(tmp_path)], "is not a run directory")):
        r = cli("compare", *args, "--out", str(out))
        line = error_line(r.output, r.exit_code, 2)
        assert expected in line, line
    assert not out.exists()  # a refusal writes nothing


def test_judge_warnings(runs: dict[str, Path]) -> None:
    result, _ = compare_runs([runs["a"], runs["c"]])
    warnings = result["warnings"]
    assert any(w.startswith("the runs' evaluation judges differ") and "noise=1.0" in w for w in warnings)
    optimistic = [w for w in warnings if w.startswith("optimistic:")]
    # A is scored by the judge that steered both loops; C (labelled B here) by its own noisy judge, which steered none
    assert len(optimistic) == 1 and optimistic[0].startswith("optimistic: A is scored by verify(noise=0.0")
    assert "the loop judge of A, B:" in optimistic[0]
    same = compare_json(runs["ab"])["warnings"]
    assert not any("judges differ" in w for w in same)
    assert any(w.startswith("optimistic: A, B are scored by") for w in same)
    html = (runs["abc"] / "compare.html").read_text(encoding="utf-8")
    assert 'data-kind="judges-differ"' in html and 'data-kind="optimistic"' in html


def test_each_runs_own_warnings_are_carried(runs: dict[str, Path], tmp_path: Path) -> None:
    cut = tmp_path / "cut"
    shutil.copytree(runs["a"], cut)
    info = json.loads((cut / "run.json").read_text())
    info["dataset"]["size"] = 99  # as if the run had stopped part-way
    (cut / "run.json").write_text(json.dumps(info))
    result, _ = compare_runs([runs["b"], cut])
    assert result["runs"][1]["complete"] is False
    assert any(w.startswith(f"B ({cut}): incomplete: {LIMIT_A} of 99 samples") for w in result["warnings"])
    assert result["runs"][1]["warnings"] and all("optimistic" not in w for w in result["runs"][1]["warnings"])


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.refs += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "poster", "data", "action",
                                                       "formaction", "background", "xlink:href")]


def test_page_is_self_contained_and_escaped(runs: dict[str, Path]) -> None:
    for out in ("ab", "abc"):
        html = (runs[out] / "compare.html").read_text(encoding="utf-8")
        parser = _Refs()
        parser.feed(html)
        assert parser.refs and all(v.startswith("data:image/") for v in parser.refs), parser.refs[:3]
        assert not {"link", "iframe", "object", "embed", "base", "frame"} & set(parser.tags)
        assert parser.tags.count("script") == 1 and "url(" not in html and "@import" not in html
        assert not re.search(r"https?://", html)
        assert PWN not in html and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
        assert BAD_CATEGORY not in html and "x&quot;&gt;&lt;img src=nope" in html
        assert 'id="plot-calls"' in html and 'id="plot-cost"' in html and 'id="points"' in html


def test_cli_writes_and_never_replaces_foreign_files(runs: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = ok("compare", str(runs["a"]), str(runs["b"]), "--max-samples", "3")
    assert "Compute-matched points" in out and "wrote compare" in " ".join(out.split())
    html = (tmp_path / "compare" / "compare.html").read_text(encoding="utf-8")
    assert html.count('class="sample"') == 3 and f"Showing 3 of {N_ROWS} samples (max_samples=3)" in html
    assert compare_json(tmp_path / "compare")["pairs"][0]["overall"]["n_scored_pairs"] > 3
    ok("compare", str(runs["a"]), str(runs["b"]), "--max-samples", "0")  # ours: replaced

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "compare.html").write_text("mine")
    r = cli("compare", str(runs["a"]), str(runs["b"]), "--out", str(theirs))
    assert "refine-agent did not write" in error_line(r.output, r.exit_code, 2)
    assert (theirs / "compare.html").read_text() == "mine" and not (theirs / "compare.json").exists()
    ok("compare", str(runs["a"]), str(runs["b"]), "--out", str(theirs), "--force")
    assert (theirs / "compare.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_compare_in_headless_chromium(runs: dict[str, Path], driver: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = runs["abc"] / "compare.html"
    html = page.read_text(encoding="utf-8")
    driver.get(page.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert not severe_logs(driver)
    images = driver.execute_script("return Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == html.count("<img ") > N_ROWS * 3
    assert all(complete and width > 0 for complete, width in images)
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(r.startswith("data:") for r in resources), resources
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert any(PWN in el.text for el in driver.find_elements(By.CSS_SELECTOR, ".sample .instr"))

    plot = driver.find_element(By.ID, "plot-calls")
    assert plot.is_displayed() and plot.size["width"] > 200
    assert len(plot.find_elements(By.CSS_SELECTOR, "g.series")) == 3  # each run's depth curve
    assert len(driver.find_elements(By.CSS_SELECTOR, "#plot-calls circle")) == len(compare_json(runs["abc"])["points"])

    def visible() -> list[Any]:
        return [c for c in driver.find_elements(By.CSS_SELECTOR, ".sample") if c.is_displayed()]

    cards = [(c.get_attribute("data-category"), c.get_attribute("data-win1"), c.get_attribute("data-win2"))
             for c in visible()]
    assert len(cards) == N_ROWS and BAD_CATEGORY in {c for c, _, _ in cards}
    assert {w for _, w, _ in cards} >= {"b", "na"}

    def count(cat: str = "", w1: str = "", w2: str = "") -> int:
        return sum(1 for c, x, y in cards if (not cat or c == cat) and (not w1 or x == w1) and (not w2 or y == w2))

    category, win1, win2 = (Select(driver.find_element(By.ID, i)) for i in ("f-category", "f-win1", "f-win2"))
    category.select_by_value(BAD_CATEGORY)
    assert len(visible()) == count(BAD_CATEGORY) == 1
    category.select_by_value("")
    win1.select_by_value("b")
    assert len(visible()) == count(w1="b") > 0
    win1.select_by_value("na")
    assert len(visible()) == count(w1="na") >= N_ROWS - LIMIT_A
    win2.select_by_value("na")
    assert len(visible()) == count(w1="na", w2="na")
    category.select_by_value("color_alter")
    assert len(visible()) == count("color_alter", "na", "na")
    assert driver.find_element(By.ID, "f-count").text == f"{count('color_alter', 'na', 'na')} of {N_ROWS} shown"
    driver.find_element(By.ID, "f-reset").click()
    assert len(visible()) == N_ROWS
    assert not severe_logs(driver)


def test_width_and_depth_curves_side_by_side(tmp_path: Path) -> None:
    """Best-of-4 one-shot (A) against up to 3 re-edits (B): A's width curve and B's depth curve share the axes."""
    wide, deep, out = tmp_path / "wide", tmp_path / "deep", tmp_path / "out"
    ok("bench", "synthetic", "-d", str(wide), "--limit", "6", "--candidates", "4", "--max-rounds", "0")
    ok("bench", "synthetic", "-d", str(deep), "--limit", "6", "--max-rounds", "3")
    printed = ok("compare", str(wide), str(deep), "--out", str(out))
    result = compare_json(out)
    assert (result["runs"][0]["width"], result["runs"][0]["depth"]) == (4, 0)
    assert (result["runs"][1]["width"], result["runs"][1]["depth"]) == (1, 3)
    width = [p for p in result["points"] if p["strategy"] == "width"]
    depth = [p for p in result["points"] if p["strategy"] == "depth"]
    assert {p["series"] for p in width} == {"A: width 1..4 (depth 0)"}
    assert [(p["width"], p["depth"], p["calls_per_sample"]["editor"]) for p in width] == \
        [(n, 0, float(n)) for n in (1, 2, 3, 4)]
    assert not [p for p in depth if p["run"] == "A"]  # its one depth point is the width curve's last
    assert any(p["series"].startswith("B: depth 0..") for p in depth) and all(p["width"] == 1 for p in depth
                                                                              if p["run"] == "B")
    summary = json.loads((wide / "summary.json").read_text())
    for p in width:
        assert p["mean_overall"] == summary["by_candidates"][str(p["width"])]["mean_overall"]
    assert "width" in printed and "depth" in printed
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert html.count('data-series="A: width 1..4 (depth 0)" data-strategy="width"') == 2  # both panels
    assert html.count('data-strategy="depth"') == 2  # B's depth curve, in both panels (A's is one point)
    assert "A: width 1..4 (depth 0)</li>" in html and "A: depth 0 (width 4)</li>" not in html
