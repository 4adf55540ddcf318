"""The HTML of ``report.html``: one self-contained page (inline CSS and JS, images as data URIs, no network).

Every piece of run or dataset text goes through ``e()`` (``html.escape``) into element text or quoted
attributes. The one script is a constant: it reads ``data-*`` attributes from the DOM and never sees text.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from .metrics import Score, budget_row, one_shot_row
from .report_views import (
    OUTCOME_HELP,
    OUTCOMES,
    ReportData,
    RoundView,
    SampleView,
    cost_per_point,
    improvement_rate_ci95,
)
from .tables import budget_label, ci, num, pct, samples_label


def e(x: Any) -> str:
    return escape("" if x is None else str(x), quote=True)


def identity(ident: dict[str, Any] | None, missing: str = "-") -> str:
    """A tool's identity as ``name(param=value, ...)``."""
    if not ident:
        return missing
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in (ident.get("params") or {}).items())
    return f"{ident.get('name')}({params})"


CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--card:#fff;--good:#1a7f37;--bad:#cf222e;
--neutral:#6e7781;--err:#9a6700;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--fg);
background:var(--bg)}
main{max-width:1240px;margin:0 auto;padding:24px 20px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.sub{color:var(--muted);margin:0 0 16px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:16px 18px}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:10px 14px;margin:0 0 14px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(210px,1fr));gap:12px;margin-top:10px}
.tile{border:1px solid var(--line);border-radius:6px;padding:10px 12px}
.tile .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.tile .v{font-size:22px;font-weight:600;margin:2px 0}.tile .n{color:var(--muted);font-size:12px}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin-top:12px}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.o-improved{background:var(--good)}.o-regressed{background:var(--bad)}.o-unchanged{background:var(--neutral)}
.o-error{background:var(--err)}
.plots{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.plots figure{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px}
.plots figure.wide{grid-column:1/-1}.plots img{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;background:var(--card);font-size:12.5px}
th,td{border-bottom:1px solid var(--line);padding:5px 7px;text-align:right;white-space:nowrap}
th{background:#eef1f4;font-weight:600}td.l,th.l{text-align:left;white-space:normal}
.tablewrap{overflow-x:auto;border:1px solid var(--line);border-radius:8px}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}dl.kv dt{color:var(--muted)}
dl.kv dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;
word-break:break-word}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:6px;padding:10px;overflow:auto;font-size:12px;
max-height:420px}
.filters{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin:0 0 12px}
.filters select{font:inherit;padding:3px 6px}
.sample{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin:0 0 12px}
.sample[hidden]{display:none}
.sample header{display:flex;flex-wrap:wrap;gap:10px;align-items:baseline}
.sid{font-weight:600}.cat{color:var(--muted)}.stop{color:var(--muted);font-size:12px;margin-left:auto}
.instr{margin:6px 0 8px}.reason{color:var(--err);margin:0 0 8px;font-size:13px}
.strip{display:flex;gap:10px;overflow-x:auto;padding-bottom:4px;align-items:flex-start}
.strip figure{margin:0;flex:0 0 212px;border:1px solid var(--line);border-radius:6px;padding:5px;font-size:12px}
.strip figure.best{border:2px solid var(--good);padding:4px}
.strip img{display:block;max-width:160px;max-height:160px;margin:0 auto;image-rendering:auto}
.cands{display:flex;flex-wrap:wrap;gap:4px;margin-top:4px}
.cand{border:1px solid var(--line);border-radius:4px;padding:2px;font-size:11px;text-align:center}
.cand.chosen{border:2px solid var(--good);padding:1px}
.cand img{max-width:72px;max-height:72px}
.noimg{height:90px;display:flex;align-items:center;justify-content:center;color:var(--muted);background:#f6f8fa}
.tag{display:inline-block;border-radius:4px;padding:0 5px;font-size:11px;background:#dafbe1;color:var(--good);
font-weight:600}.tag.final{background:#ddf4ff;color:var(--accent)}
.txt{color:var(--muted);margin-top:3px;max-height:10.5em;overflow:auto;word-break:break-word}
.judge-check{margin:0 0 12px}.judge-check .tablewrap{margin-top:8px}.judge-check .warn{margin:8px 0 0}
.score{margin-top:2px}.pass{color:var(--good)}.fail{color:var(--bad)}.bad{color:var(--err)}
footer{color:var(--muted);font-size:12px;margin-top:28px}
"""

JS = """
(function () {
  var cat = document.getElementById('f-category'), out = document.getElementById('f-outcome');
  var count = document.getElementById('f-count');
  var cards = Array.prototype.slice.call(document.querySelectorAll('.sample'));
  function apply() {
    var n = 0;
    cards.forEach(function (el) {
      var show = (!cat.value || el.dataset.category === cat.value) && (!out.value || el.dataset.outcome === out.value);
      el.hidden = !show;
      if (show) { n += 1; }
    });
    count.textContent = n + ' of ' + cards.length + ' shown';
  }
  if (cat && out) {
    cat.addEventListener('change', apply);
    out.addEventListener('change', apply);
    document.getElementById('f-reset').addEventListener('click', function () {
      cat.value = ''; out.value = ''; apply();
    });
    apply();
  }
})();
"""


def score_html(s: Score, label: str = "") -> str:
    pre = f"{e(label)} " if label else ""
    if not s.ok:
        return f'<span class="bad">{pre}{e("not judged" if s.status == "missing" else s.status)}</span>'
    parts = [num(s.overall)] if s.overall is not None else []
    if s.passed is not None:
        parts.append(f'<span class="{"pass" if s.passed else "fail"}">{"pass" if s.passed else "fail"}</span>')
    return pre + " · ".join(parts)


# The badges and the rates count different things; both are labelled so that neither reads as the other.
BADGES_NOTE = ("Badges: every sample's outcome by the evaluation judge's scores, compared the way the loop ranks "
               "rounds: pass/fail first, then the overall score (so a higher score without a pass counts as "
               "improved). The improvement and regression rates above and the fail→pass / pass→fail columns "
               "count only pass/fail changes, among samples with pass/fail on both sides.")


def headline(summary: dict[str, Any], data: ReportData) -> str:
    bb = summary["by_budget"]
    micro = (summary.get("category_averages") or {}).get("micro") or {}
    first = one_shot_row(summary) or micro.get("one_shot") or {}
    last = budget_row(bb, summary["budget"]) or micro.get("final") or {}
    p = summary.get("p_value")
    # What refinement (or width) adds: the extra cost per sample over one-shot (paid either way), per point
    # of mean gain in overall.
    extra = float(last.get("cost_per_sample") or 0.0) - float(first.get("cost_per_sample") or 0.0)
    gain = float(summary.get("mean_delta") or 0.0)
    cpp = cost_per_point(extra, gain)
    if not last.get("cost_per_sample"):
        cost_v, cost_n = "no cost reported", "the tools reported a cost of $0"
    elif cpp is None:
        cost_v, cost_n = "no gain", f"extra cost ${extra:.4f} per sample, mean gain {gain:+.2f} points"
    else:
        cost_v, cost_n = f"${cpp:.4f}", (f"extra cost per sample over one-shot ${extra:.4f} / mean gain "
                                          f"{gain:.2f} points")
    tiles = [
        ("mean overall (0-10)", f"{num(first.get('mean_overall'))} → {num(last.get('mean_overall'))}",
         f"mean gain {num(summary.get('mean_delta'))}, 95% CI {ci(summary.get('mean_delta_ci95'))}, "
         f"Wilcoxon p {'-' if p is None else f'{p:.2g}'}"),
        ("pass rate", f"{pct(first.get('pass_rate'))} → {pct(last.get('pass_rate'))}",
         f"regression rate (pass → fail) {pct(summary.get('regression_rate'))}"),
        ("improvement rate", pct(summary.get("improvement_rate")),
         f"fail → pass, 95% CI {ci(_pct_ci(improvement_rate_ci95(data.transitions)), 1)}% "
         f"(n={summary.get('n_pairs')})"),
        ("cost per point gained", cost_v, cost_n),
    ]
    tiles_html = "".join(f'<div class="tile"><div class="k">{e(k)}</div><div class="v">{e(v)}</div>'
                         f'<div class="n">{e(n)}</div></div>' for k, v, n in tiles)
    chips = "".join(f'<span class="badge o-{o}" title="{e(OUTCOME_HELP[o])}">{o} {data.counts.get(o, 0)}</span>'
                    for o in OUTCOMES)
    return (f'<section class="card"><div><b>One-shot → refined</b> at budget {e(budget_label(bb, summary["budget"]))} '
            f'(re-edit rounds after the one-shot edit), {e(samples_label(summary))}, judged by '
            f'<code>{e(identity(summary.get("eval_judge")))}</code></div><div class="tiles">{tiles_html}</div>'
            f'<div class="chips" id="outcomes">{chips}</div><p class="sub">{e(BADGES_NOTE)}</p></section>')


def _pct_ci(c: list[float] | None) -> list[float] | None:
    return None if c is None else [100 * c[0], 100 * c[1]]


def warnings(summary: dict[str, Any], run_info: dict[str, Any]) -> str:
    ws = list(summary.get("warnings") or [])
    same = bool((run_info.get("eval_judge") or {}).get("is_loop_judge", True))
    out = ""
    if same:
        out += ('<div class="warn" id="optimistic"><b>Warning: the evaluation judge is the loop judge.</b> The loop '
                'kept the round this judge liked best, so the measured gain is optimistic. Rescore with '
                '<code>refine-agent rejudge RUN_DIR --eval-judge SPEC</code> using an independent judge.</div>')
        ws = [w for w in ws if not w.startswith("the evaluation judge is the loop judge")]
    ids = {w: ' id="incomplete"' for w in ws if w.startswith("incomplete:")}  # a run stopped part-way
    return out + "".join(f'<div class="warn"{ids.get(w, "")}>Warning: {e(w)}</div>' for w in ws)


def budget_table(by_budget: dict[str, dict[str, Any]], key: str = "budget") -> str:
    """A row per budget (or per width: ``key="candidates"``)."""
    cols = (key, "n", "mean overall", "95% CI", "SC", "PQ", "pass rate", "95% CI", "re-edits", "edits/sample",
            "calls/sample", "cost/sample", "s/sample", "fail→pass", "pass→fail", "mean gain")
    rows = []
    for b in sorted(by_budget, key=int):
        r = by_budget[b]
        if "same_as" in r:  # one short row for every budget past the last that changes anything
            rows.append(f'<tr class="same"><td>{e(b)}</td><td class="l" colspan="{len(cols) - 1}">same as budget '
                        f'{e(r["same_as"])}: no sample changes past it</td></tr>')
            continue
        per_sample = r.get("tool_calls_per_sample") or {}
        cells = (b, r.get("n"), num(r.get("mean_overall")), ci(r.get("mean_overall_ci95")), num(r.get("mean_sc")),
                 num(r.get("mean_pq")), pct(r.get("pass_rate")), ci(_pct_ci(r.get("pass_rate_ci95")), 1),
                 num(r.get("mean_rounds")), num(per_sample.get("editor"), 1), num(sum(per_sample.values()), 1),
                 "-" if not r.get("cost_per_sample") else f"${r['cost_per_sample']:.4f}",
                 num(r.get("seconds_per_sample"), 3), pct(r.get("improvement_rate")), pct(r.get("regression_rate")),
                 num(r.get("mean_delta")))
        rows.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{e(c)}</th>" for c in cols)
    return f'<div class="tablewrap"><table><tr>{head}</tr>{"".join(rows)}</table></div>'


def width_section(summary: dict[str, Any]) -> str:
    """Best-of-n at every width the run can answer (``--candidates``)."""
    rows = summary.get("by_candidates")
    if not rows:
        return ""
    how = ("each width n replayed from the first n candidates of every sample (no new tool calls)"
           if summary.get("budget") == 0 else "a deeper run is known at its own width only")
    return (f'<h2 id="widths">By width</h2><p class="sub">Candidates per round (best-of-n) at budget '
            f'{e(summary.get("budget"))}: {e(how)}. Compare strategies at equal edits per sample with '
            f'<code>refine-agent compare</code>.</p>{budget_table(rows, key="candidates")}')


def category_table(summary: dict[str, Any]) -> str:
    cats = summary.get("by_category") or {}
    if not cats:
        return ""
    rows = []
    for name, c in cats.items():
        rows.append((name, c["n_samples"], f"{num(c['one_shot']['mean_overall'])} → {num(c['final']['mean_overall'])}",
                     f"{pct(c['one_shot']['pass_rate'])} → {pct(c['final']['pass_rate'])}",
                     pct(c.get("improvement_rate")), pct(c.get("regression_rate")), num(c.get("mean_delta")),
                     ci(c.get("mean_delta_ci95"))))
    avg = summary.get("category_averages") or {}
    for label in ("macro", "micro"):
        a = avg.get(label)
        if a:
            one, fin = a["one_shot"], a["final"]
            rows.append((f"{label} mean", "", f"{num(one['mean_overall'])} → {num(fin['mean_overall'])}",
                         f"{pct(a['one_shot']['pass_rate'])} → {pct(a['final']['pass_rate'])}",
                         pct(a.get("improvement_rate")), pct(a.get("regression_rate")), num(a.get("mean_delta")), ""))
    cols = ("category", "n", "overall", "pass rate", "fail→pass", "pass→fail", "mean gain", "95% CI")
    head = "".join(f'<th class="{"l" if c == "category" else ""}">{e(c)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i == 0 else ""}">{e(v)}</td>' for i, v in enumerate(r))
                   + "</tr>" for r in rows)
    note = e(avg.get("note", ""))
    return f'<h2>By category</h2><div class="tablewrap"><table><tr>{head}</tr>{body}</table></div>' \
           f'<p class="sub">{note}</p>'


def plots(uris: dict[str, str]) -> str:
    alt = {"budget": "score, pass rate and cost against the re-edit budget, with 95% CIs",
           "gain_by_category": "mean gain by category", "deltas": "distribution of per-sample gains"}
    figs = "".join(f'<figure class="{"wide" if k == "budget" else ""}"><img id="plot-{e(k)}" src="{e(u)}" '
                   f'alt="{e(alt.get(k, k))}"></figure>' for k, u in uris.items())
    return f'<h2>Plots</h2><div class="plots">{figs}</div>'


ROLE_LABELS = {("eval",): "evaluation judge", ("loop",): "loop judge", ("eval", "loop"): "evaluation and loop judge"}
CHECK_STATUS = {"passed": ("pass", "passed"), "flagged": ("fail", "FLAGGED"),
                "inconclusive": ("bad", "inconclusive: no non-edit judgment succeeded"),
                "not_checked": ("bad", "not checked (judge_check.json checks other judges)")}


def judge_check_section(summary: dict[str, Any]) -> str:
    """``bench --judge-check``: each judge's verdict and its figures per probe; empty when the run was not checked."""
    jc = summary.get("judge_check")
    if not jc:
        return ""
    cols = ("probe", "n", "pass rate", "mean overall", "95% CI", "failed judgments")
    head = "".join(f'<th class="{"l" if c == "probe" else ""}">{e(c)}</th>' for c in cols)
    cards = []
    for j in jc.get("judges") or []:
        cls, word = CHECK_STATUS.get(j.get("status"), ("bad", j.get("status")))
        role = ROLE_LABELS.get(tuple(j.get("roles") or ()), ", ".join(j.get("roles") or ()))
        rows = "".join(
            f'<tr><td class="l">{e(name)}</td><td>{e(p.get("n"))}</td><td>{e(pct(p.get("pass_rate")))}</td>'
            f'<td>{e(num(p.get("mean_overall")))}</td><td>{e(ci(p.get("mean_overall_ci95")))}</td>'
            f'<td>{e(", ".join(f"{k} {v}" for k, v in (p.get("failed") or {}).items()) or "0")}</td></tr>'
            for name, p in (j.get("probes") or {}).items())
        reasons = "".join(f'<div class="warn">FLAGGED: {e(r)}</div>' for r in j.get("reasons") or [])
        table = f'<div class="tablewrap"><table><tr>{head}</tr>{rows}</table></div>' if rows else ""
        cards.append(f'<section class="card judge-check" data-status="{e(j.get("status"))}"><div><b>{e(role)}</b> '
                     f'<code>{e(identity(j.get("identity")))}</code>: <span class="{cls}"><b>{e(word)}</b></span>'
                     + (f' ({e(j.get("n_samples"))} samples)' if j.get("n_samples") is not None else "")
                     + f'</div>{reasons}{table}</section>')
    return ('<h2 id="judge-check">Judge check</h2><p class="sub">Before the run, each judge saw non-edits (the '
            'unchanged source, a black image, noise, a JPEG re-save, an edit under another instruction); a judge is '
            'flagged when it passes more than 5% of any of them, or scores one above the real edits. The check '
            'informs: the run went on either way.</p>' + "".join(cards))


def config(run_info: dict[str, Any], summary: dict[str, Any], ablation: dict[str, Any] | None) -> str:
    ev = run_info.get("eval_judge") or {}
    same = bool(ev.get("is_loop_judge", True))
    cfg = run_info.get("config") or {}
    ds = run_info.get("dataset") or {}
    items = [("loop judge", identity((run_info.get("tools") or {}).get("judge"))),
             ("evaluation judge", identity(ev.get("identity")) + ("  (the loop judge: gains are optimistic)"
                                                                   if same else "  (independent of the loop)"))]
    items += [(k.replace("_", " "), identity(v)) for k, v in (run_info.get("tools") or {}).items() if k != "judge"]
    items += [("dataset", f"{ds.get('spec')} {json.dumps(ds.get('options') or {})} (size {ds.get('size')}, "
                          f"limit {ds.get('limit')})"),
              ("budget", json.dumps(cfg.get("budget"))), ("policy", json.dumps(cfg.get("policy"))),
              ("seed", cfg.get("seed")), ("created", run_info.get("created")),
              ("refine-agent", run_info.get("refine_agent_version"))]
    kv = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in items)
    abl = ""
    if ablation and ablation.get("by_budget") == summary.get("by_budget"):
        abl = '<p class="sub">ablation.json holds the same numbers as the by-budget table above.</p>'
    elif ablation:
        abl = (f'<h2>Budget ablation</h2><p class="sub">Replayed from this run with no new tool calls; policy '
               f'<code>{e(json.dumps(ablation.get("policy")))}</code>. Replayable: {e(ablation.get("replayable"))}.'
               f'</p>{budget_table(ablation.get("by_budget") or {})}')
    raw = e(json.dumps(run_info, indent=2, ensure_ascii=False))
    return (f'{abl}<h2>Judges and configuration</h2><section class="card" id="config"><dl class="kv">{kv}</dl>'
            f'<details><summary>run.json</summary><pre>{raw}</pre></details></section>')


def round_fig(r: RoundView) -> str:
    cls = "best" if r.is_best else ""
    tags = ('<span class="tag">best</span> ' if r.is_best else "") + \
           ('<span class="tag final">final</span>' if r.is_final and not r.is_best else "")
    missing = "edit failed" if r.error else "image unreadable" if r.has_image else "no image"
    img = f'<img src="{e(r.thumb)}" alt="round {r.index}">' if r.thumb else f'<div class="noimg">{missing}</div>'
    scores = [score_html(r.eval, "eval"), score_html(r.loop, "loop")] if r.eval is not None else [score_html(r.loop)]
    base = f"from {r.base}" + (f" {r.base_round}" if r.base_round is not None and r.base != "source" else "")
    parts = [f'<div class="score" title="{e(r.reasoning)}">{x}</div>' for x in scores]
    if r.index > 0:
        parts.append(f'<div class="txt">instruction ({e(base)}): {e(r.instruction)}</div>')
    if r.critique or r.next_instruction:
        verdict = "critic satisfied" if r.satisfied else "critic"
        nxt = f" → next: {e(r.next_instruction)}" if r.next_instruction else ""
        parts.append(f'<div class="txt">{verdict}: {e(r.critique)}{nxt}</div>')
    if r.error:
        parts.append(f'<div class="txt bad">{e(r.error)}</div>')
    return (f'<figure class="{cls}">{img}<figcaption><b>round {r.index}</b> {tags}{"".join(parts)}'
            f'{candidate_strip(r)}</figcaption></figure>')


def candidate_strip(r: RoundView) -> str:
    """A best-of-N round's candidates, small, the kept one marked; each with its scores."""
    if not r.candidates:
        return ""
    figs = []
    for c in r.candidates:
        img = (f'<img src="{e(c.thumb)}" alt="round {r.index} candidate {c.index}">' if c.thumb
               else f'<div class="noimg">{"edit failed" if c.error else "no image"}</div>')
        score = score_html(c.eval) if c.eval is not None else score_html(c.loop)
        figs.append(f'<div class="cand{" chosen" if c.chosen else ""}" title="{e(c.error or "")}">{img}'
                    f'<span>#{c.index} {score}</span></div>')
    kept = next((f"#{c.index}" for c in r.candidates if c.chosen), "none")
    more = f'<div class="txt">and {r.more_candidates} more</div>' if r.more_candidates else ""
    return f'<div class="cands"><div class="txt">candidates (kept: {e(kept)})</div>{"".join(figs)}{more}</div>'


def sample_card(s: SampleView) -> str:
    src = (f'<figure><img src="{e(s.source_thumb)}" alt="source"><figcaption><b>source</b></figcaption></figure>'
           if s.source_thumb else "")
    strip = src + "".join(round_fig(r) for r in s.rounds)
    change = "" if s.outcome == "error" and s.final_round is None else \
        f'<span>{score_html(s.one_shot)} → {score_html(s.final)} (round {e(s.final_round)})</span>'
    reason = f'<p class="reason">{e(s.reason)}</p>' if s.reason else ""
    stop = f'<span class="stop">stopped: {e(s.stop_reason)}</span>' if s.stop_reason else ""
    return (f'<article class="sample" data-category="{e(s.category)}" data-outcome="{e(s.outcome)}">'
            f'<header><span class="sid">#{s.index} {e(s.sample_id)}</span><span class="cat">{e(s.category)}</span>'
            f'<span class="badge o-{e(s.outcome)}">{e(s.outcome)}</span>{change}{stop}</header>'
            f'<p class="instr">{e(s.instruction)}</p>{reason}'
            + (f'<div class="strip">{strip}</div>' if strip else "") + "</article>")


def browser(data: ReportData) -> str:
    if data.max_samples == 0:
        return '<h2>Samples</h2><p class="sub">The sample browser is off (max_samples=0).</p>'
    cats: dict[str, int] = {}
    outs: dict[str, int] = {}
    for s in data.samples:
        cats[s.category] = cats.get(s.category, 0) + 1
        outs[s.outcome] = outs.get(s.outcome, 0) + 1
    cat_opts = "".join(f'<option value="{e(c)}">{e(c)} ({n})</option>' for c, n in cats.items())
    out_opts = "".join(f'<option value="{o}">{o} ({outs[o]})</option>' for o in OUTCOMES if o in outs)
    note = (f"Showing {len(data.samples)} of {data.n_total} samples (max_samples={data.max_samples}), shared "
            "evenly between the outcomes, the first of each in dataset order; the numbers above use all of them."
            if data.truncated else f"All {data.n_total} samples.")
    legend = "; ".join(f"<b>{o}</b>: {e(h)}" for o, h in OUTCOME_HELP.items())
    return (f'<h2>Samples</h2><p class="sub">{e(note)} Outcomes at budget {data.budget} by the evaluation judge: '
            f'{legend}. The green frame marks the best round by the loop judge.</p>'
            f'<div class="filters"><label>category <select id="f-category"><option value="">all</option>{cat_opts}'
            f'</select></label><label>outcome <select id="f-outcome"><option value="">all</option>{out_opts}'
            f'</select></label><button type="button" id="f-reset">reset</button><span id="f-count"></span></div>'
            f'<div id="samples">{"".join(sample_card(s) for s in data.samples)}</div>')


def render(run_info: dict[str, Any], summary: dict[str, Any], data: ReportData, uris: dict[str, str],
           ablation: dict[str, Any] | None, run_name: str = "") -> str:
    title = f"refine-agent report: {summary.get('dataset') or run_name}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)}</title>'
            f'<style>{CSS}</style></head><body><main>'
            f'<h1>{e(title)}</h1><p class="sub">run directory <code>{e(run_name)}</code> · created '
            f'{e(run_info.get("created"))} · refine-agent {e(run_info.get("refine_agent_version"))}</p>'
            f'{warnings(summary, run_info)}{headline(summary, data)}{plots(uris)}'
            f'<h2>By budget</h2><p class="sub">Budget b = at most b re-edit rounds after the one-shot edit, replayed '
            f'from this run; scores by the evaluation judge; CIs are seeded bootstrap 95% intervals.</p>'
            f'{budget_table(summary["by_budget"])}{width_section(summary)}{category_table(summary)}{judge_check_section(summary)}'
            f'{config(run_info, summary, ablation)}'
            f'{browser(data)}<footer>Generated by refine-agent report. Errors (never scored): '
            f'{e(", ".join(f"{k} {v}" for k, v in (summary.get("errors") or {}).items()) or "none")}.</footer>'
            f'</main><script>{JS}</script></body></html>\n')
