"""The HTML of ``compare.html``: one self-contained page (inline CSS, JS and SVG, images as data URIs, no
network). Every piece of run or dataset text goes through ``e()`` (``html.escape``) into element text or quoted
attributes; the one script is a constant that reads ``data-*`` attributes and never sees text."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .compare import show_identity
from .compare_browser import Browser, Card, SideView
from .compare_svg import cost_axis, curves_svg, editor_calls, legend
from .compare_tables import money, p_value, wtl
from .metrics import TIE_EPS, Score
from .report_html import CSS as REPORT_CSS
from .report_html import e, score_html
from .tables import ci, num, pct

CSS = REPORT_CSS + """
.plotgrid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.plotgrid figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px}
svg.plot{width:100%;height:auto;display:block}.plot text{fill:var(--fg)}
ul.legend{list-style:none;padding:0;margin:8px 0;display:flex;flex-wrap:wrap;gap:6px 18px}
.runs{display:flex;gap:12px;align-items:flex-start}
.run{flex:0 0 auto;border:1px solid var(--line);border-radius:6px;padding:5px}
.run h3{font-size:13px;margin:0 0 4px}.run .pair{display:flex;gap:6px}
.strip .run figure{margin:0;flex:none;width:168px;border:none;padding:0;font-size:12px}
.run img{display:block;max-width:160px;max-height:160px}
.strip figure.src{flex:0 0 172px}
.w-b{background:var(--good)}.w-a{background:var(--bad)}.w-tie{background:var(--neutral)}.w-na{background:var(--err)}
"""

JS = """
(function () {
  var cat = document.getElementById('f-category');
  var wins = Array.prototype.slice.call(document.querySelectorAll('select.f-win'));
  var count = document.getElementById('f-count');
  var cards = Array.prototype.slice.call(document.querySelectorAll('.sample'));
  function apply() {
    var n = 0;
    cards.forEach(function (el) {
      var show = !cat.value || el.dataset.category === cat.value;
      wins.forEach(function (s) { show = show && (!s.value || el.getAttribute(s.dataset.attr) === s.value); });
      el.hidden = !show;
      if (show) { n += 1; }
    });
    count.textContent = n + ' of ' + cards.length + ' shown';
  }
  if (cat) {
    cat.addEventListener('change', apply);
    wins.forEach(function (s) { s.addEventListener('change', apply); });
    document.getElementById('f-reset').addEventListener('click', function () {
      cat.value = ''; wins.forEach(function (s) { s.value = ''; }); apply();
    });
    apply();
  }
})();
"""


def table(cols: Sequence[str], rows: Sequence[Sequence[Any]], left: Sequence[int] = (0,), tid: str = "") -> str:
    head = "".join(f'<th class="{"l" if i in left else ""}">{e(c)}</th>' for i, c in enumerate(cols))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i in left else ""}">{e(v)}</td>' for i, v in enumerate(r))
                   + "</tr>" for r in rows)
    id_attr = f' id="{e(tid)}"' if tid else ""
    return f'<div class="tablewrap"><table{id_attr}><tr>{head}</tr>{body}</table></div>'


def warnings(result: dict[str, Any]) -> str:
    out = []
    for w in result["warnings"]:
        kind = ("judges-differ" if w.startswith("the runs' evaluation judges differ") else
                "optimistic" if w.startswith("optimistic:") else "run")
        out.append(f'<div class="warn" data-kind="{kind}">Warning: {e(w)}</div>')
    return "".join(out)


def runs_section(result: dict[str, Any]) -> str:
    rows = [(r["label"], r["name"], r["depth"], r["width"], show_identity(r["eval_judge"]),
             show_identity(r["loop_judge"]), r["n_records"], r["n_scored"], r["n_unscored"], r["n_missing"],
             num(r["mean_overall"]), ci(r["mean_overall_ci95"]), pct(r["pass_rate"]),
             ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none") for r in result["runs"]]
    cols = ("run", "directory", "depth", "width", "evaluation judge", "loop judge", "samples", "scored",
            "not scored", "missing", "mean overall", "95% CI", "pass rate", "errors")
    dirs = "".join(f"<dt>{e(r['label'])}</dt><dd>{e(r['dir'])}</dd>" for r in result["runs"])
    return (f'<h2>Runs</h2><p class="sub">Run {e(result["baseline"])} is the baseline. Depth: re-edit rounds after '
            f"the one-shot edit; width: edits per round (best-of-N). Mean overall and pass rate: the run's final "
            f"results at its own budget, by its own evaluation judge.</p>{table(cols, rows, (0, 1, 4, 5, 13), 'runs')}"
            f'<details><summary>directories</summary><dl class="kv">{dirs}</dl></details>')


def _pair_rows(pair: dict[str, Any]) -> list[tuple[Any, ...]]:
    def row(name: str, s: dict[str, Any]) -> tuple[Any, ...]:
        return (name, s.get("n_scored_pairs", 0), num((s.get("a") or {}).get("mean_overall")),
                num((s.get("b") or {}).get("mean_overall")), num(s.get("mean_delta")), ci(s.get("mean_delta_ci95")),
                p_value(s.get("p_value")), wtl(s), pct((s.get("a") or {}).get("pass_rate")),
                pct((s.get("b") or {}).get("pass_rate")))

    return [row("all", pair["overall"])] + [row(c, s) for c, s in pair["by_category"].items()]


def pair_section(pair: dict[str, Any]) -> str:
    a, b, o = pair["a"], pair["b"], pair["overall"]
    tiles = [("mean delta (B - A)", num(o.get("mean_delta")), f"95% CI {ci(o.get('mean_delta_ci95'))}, Wilcoxon p "
              f"{p_value(o.get('p_value'))}, n={o.get('n_scored_pairs')}"),
             ("mean final overall", f"{num(o['a'].get('mean_overall'))} → {num(o['b'].get('mean_overall'))}",
              f"{a} → {b}, each over its scored samples of the {pair['n_aligned']} both have"),
             (f"{b} wins / tie / {a} wins", wtl(o), f"by final overall, ties within {TIE_EPS:g}"),
             ("pass rate", f"{pct(o['a'].get('pass_rate'))} → {pct(o['b'].get('pass_rate'))}",
              f"{a} → {b}; {b} passes where {a} failed: {pct(o.get('improvement_rate'))}")]
    tile_html = "".join(f'<div class="tile"><div class="k">{e(k)}</div><div class="v">{e(v)}</div>'
                        f'<div class="n">{e(n)}</div></div>' for k, v, n in tiles)
    counts = (f"{pair['n_aligned']} samples in both runs; missing from {a}: {pair['missing_in_a']}, from {b}: "
              f"{pair['missing_in_b']}; not scored in {a}: {pair['unscored_in_a']}, in {b}: {pair['unscored_in_b']}")
    cols = ("category", "n", f"{a} overall", f"{b} overall", "mean delta", "95% CI", "Wilcoxon p",
            f"{b} wins / tie / {a} wins", f"{a} pass", f"{b} pass")
    return (f'<h2>{e(b)} vs {e(a)}</h2><section class="card pair" id="pair-{e(b)}"><div>Per-sample delta = '
            f"{e(b)}'s final overall − {e(a)}'s, paired over samples scored in both; CIs are seeded paired "
            f'bootstrap 95% intervals.</div><div class="tiles">{tile_html}</div><p class="sub">{e(counts)}</p>'
            f"</section>{table(cols, _pair_rows(pair), tid=f'cats-{b}')}")


def points_section(result: dict[str, Any]) -> str:
    points = result["points"]
    runs = [r["label"] for r in result["runs"]]
    cost_of, cost_label = cost_axis(points)
    calls = curves_svg(points, editor_calls, "editor calls per sample", "plot-calls", runs)
    cost = curves_svg(points, cost_of, cost_label, "plot-cost", runs)
    plots = f'<div class="plotgrid"><figure>{calls}</figure><figure>{cost}</figure></div>'
    rows = [(p["run"], p["strategy"], p["depth"], p["width"], num(p["calls_per_sample"].get("editor")),
             num(p["calls_per_sample"].get("judge")), num(p["calls_per_sample"].get("critic")),
             money(p["cost_per_sample"]), num(p["seconds_per_sample"], 3), num(p["mean_overall"]),
             ci(p["mean_overall_ci95"]), pct(p["pass_rate"])) for p in points]
    cols = ("run", "strategy", "depth", "width", "editor/sample", "judge/sample", "critic/sample", "cost/sample",
            "s/sample", "mean overall", "95% CI", "pass rate")
    return (f'<h2>Compute-matched</h2><p class="sub">Each run\'s depth curve (at most d re-edit rounds, solid, '
            f"circles) and width curve (best of N edits, dashed, squares), replayed from its records: at equal "
            f"editor calls per sample, the higher curve is the better strategy.</p>{plots}"
            f"{legend(points, runs)}{table(cols, rows, (0, 1), 'points')}")


def _fig(img: str | None, alt: str, caption: str, missing: str) -> str:
    pic = f'<img src="{e(img)}" alt="{e(alt)}">' if img else f'<div class="noimg">{e(missing)}</div>'
    return f"<figure>{pic}<figcaption>{caption}</figcaption></figure>"


def _score(s: Score | None) -> str:
    return score_html(s) if s is not None else ""


def side_html(s: SideView) -> str:
    if s.status == "missing":
        body = '<div class="noimg">not in this run</div>'
    elif s.one_shot is None and s.round0_thumb is None:
        body = '<div class="noimg">no image</div>'  # the reason follows
    elif s.final_round == 0:
        body = _fig(s.round0_thumb, f"{s.label} round 0", f"<b>round 0 = final</b> {_score(s.final)}",
                    "no image")
    else:
        final = "" if s.final_round is None else _fig(
            s.final_thumb, f"{s.label} final", f"<b>final (round {e(s.final_round)})</b> {_score(s.final)}", "no image")
        body = _fig(s.round0_thumb, f"{s.label} round 0", f"<b>round 0</b> {_score(s.one_shot)}", "no image") + final
    reason = f'<div class="txt bad">{e(s.reason)}</div>' if s.reason and s.status != "missing" else ""
    stop = f'<div class="txt">stopped: {e(s.stop_reason)}</div>' if s.stop_reason else ""
    return (f'<div class="run" data-run="{e(s.label)}" data-status="{e(s.status)}"><h3>{e(s.label)}</h3>'
            f'<div class="pair">{body}</div>{reason}{stop}</div>')


WIN_TEXT = {"b": "{b} wins", "a": "{a} wins", "tie": "tie", "na": "not comparable"}


def _delta(card: Card, i: int) -> str:
    a, b = card.sides[0], card.sides[i]
    if a.status != "ok" or b.status != "ok":
        return ""
    return f" ({b.final.overall - a.final.overall:+.2f})"  # type: ignore[union-attr,operator]


def card_html(card: Card, labels: Sequence[str]) -> str:
    attrs = "".join(f' data-win{i}="{e(w)}"' for i, w in enumerate(card.wins, start=1))
    badges = "".join(f'<span class="badge w-{e(w)}">{e(labels[i])} vs {e(labels[0])}: '
                     f'{e(WIN_TEXT[w].format(a=labels[0], b=labels[i]))}{e(_delta(card, i))}</span>'
                     for i, w in enumerate(card.wins, start=1))
    src = (f'<figure class="src"><img src="{e(card.source_thumb)}" alt="source"><figcaption><b>source</b>'
           f"</figcaption></figure>" if card.source_thumb else "")
    return (f'<article class="sample" data-category="{e(card.category)}"{attrs}><header><span class="sid">'
            f'#{card.index} {e(card.sample_id)}</span><span class="cat">{e(card.category)}</span>{badges}</header>'
            f'<p class="instr">{e(card.instruction)}</p><div class="strip">{src}<div class="runs">'
            f'{"".join(side_html(s) for s in card.sides)}</div></div></article>')


def browser_section(browser: Browser, labels: Sequence[str]) -> str:
    if browser.max_samples == 0:
        return '<h2>Samples</h2><p class="sub">The sample browser is off (max_samples=0).</p>'
    cats: dict[str, int] = {}
    for c in browser.cards:
        cats[c.category] = cats.get(c.category, 0) + 1
    cat_opts = "".join(f'<option value="{e(c)}">{e(c)} ({n})</option>' for c, n in cats.items())
    selects = ""
    for i in range(1, len(labels)):
        counts = {w: sum(1 for c in browser.cards if c.wins[i - 1] == w) for w in WIN_TEXT}
        opts = "".join(f'<option value="{w}">{e(t.format(a=labels[0], b=labels[i]))} ({counts[w]})</option>'
                       for w, t in WIN_TEXT.items())
        selects += (f'<label>{e(labels[i])} vs {e(labels[0])} <select class="f-win" id="f-win{i}" '
                    f'data-attr="data-win{i}"><option value="">all</option>{opts}</select></label>')
    note = (f"Showing {len(browser.cards)} of {browser.n_total} samples (max_samples={browser.max_samples}), shared "
            "evenly between the win patterns; the numbers above use all of them." if browser.truncated
            else f"All {browser.n_total} samples.")
    return (f'<h2>Samples</h2><p class="sub">{e(note)} Per run: the one-shot edit (round 0) and the final result '
            "it kept, with evaluation scores. A sample wins when its final overall is higher (ties within "
            f"{TIE_EPS:g}); not comparable: missing or not scored in one of the two runs.</p>"
            f'<div class="filters"><label>category <select id="f-category"><option value="">all</option>{cat_opts}'
            f'</select></label>{selects}<button type="button" id="f-reset">reset</button><span id="f-count"></span>'
            f'</div><div id="samples">{"".join(card_html(c, labels) for c in browser.cards)}</div>')


def render(result: dict[str, Any], browser: Browser) -> str:
    labels = [r["label"] for r in result["runs"]]
    ds = result["dataset"]
    title = f"refine-agent compare: {ds['spec']}"
    opts = f" {json.dumps(ds['options'])}" if ds["options"] else ""
    names = ", ".join(f"{r['label']}: {r['name']}" for r in result["runs"])
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)}</title>'
            f"<style>{CSS}</style></head><body><main><h1>{e(title)}</h1>"
            f'<p class="sub">{e(names)} · dataset '
            f"{e(ds['spec'] + opts)} · {result['n_samples']} samples in any run · refine-agent "
            f"{e(result['refine_agent_version'])}</p>{warnings(result)}{runs_section(result)}"
            f'{"".join(pair_section(p) for p in result["pairs"])}{points_section(result)}'
            f"{browser_section(browser, labels)}<footer>Generated by refine-agent compare.</footer>"
            f"</main><script>{JS}</script></body></html>\n")
