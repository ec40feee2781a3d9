"""The Jinja2 template of the HTML report (`lifelong.report`), with its inline CSS.

Owns the page's layout and look only: every value arrives as text already formatted by
`lifelong.report`, and Jinja2's autoescaping turns each into inert text, so a run label or an
error message can never become markup. Does not own reading the store or formatting numbers.

The page is self-contained: images are ``data:`` URIs, the style is inline, and the
Content-Security-Policy forbids scripts and every external request, so the file can be mailed,
archived or opened offline and shows the same.
"""

from __future__ import annotations

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>lifelong report: {{ store }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d232b;
       margin: 0 auto; max-width: 1400px; padding: 1.5rem 2rem 4rem; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .6rem; }
h2 { font-size: 1.3rem; margin: 2.4rem 0 .4rem; padding-top: .8rem; border-top: 2px solid #d6dde6; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; color: #33414f; }
header dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
header dt { color: #5b6875; }
header dd { margin: 0; font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
nav ul { margin: .6rem 0 0; padding-left: 1.2rem; columns: 3 14rem; }
table { border-collapse: collapse; margin: .3rem 0 .6rem; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e3e8ee; text-align: left;
         vertical-align: top; }
th { background: #f2f5f8; font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
tbody tr:hover { background: #f8fafc; }
.note { color: #5b6875; max-width: 75rem; }
.empty { padding: 1rem 1.2rem; background: #f6f8fa; border-left: 4px solid #9aa7b4; }
.problem { color: #8a1c1c; }
td.verdict.pass { color: #1c6b2c; font-weight: 600; }
td.verdict.miss { color: #8a1c1c; font-weight: 600; }
td.error { font-family: ui-monospace, monospace; font-size: .85em; white-space: pre-wrap;
           max-width: 60rem; overflow-wrap: anywhere; }
code { font-family: ui-monospace, monospace; font-size: .85em; overflow-wrap: anywhere; }
.grid { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; padding: .5rem; border: 1px solid #e3e8ee; border-radius: 4px; }
figure img { display: block; max-width: 100%; height: auto; }
figure.heatmap img { max-width: 400px; }
figcaption { font-size: .85em; color: #5b6875; margin-top: .3rem; max-width: 40rem; }
details { margin: .3rem 0; }
summary { cursor: pointer; color: #33414f; }
</style>
</head>
<body>
<header>
<h1>lifelong results report</h1>
<dl>
<dt>store</dt><dd>{{ store }}</dd>
<dt>generated</dt><dd>{{ generated }}</dd>
<dt>runs</dt><dd>{{ run_count }}</dd>
<dt>lifelong</dt><dd>{{ version }}</dd>
</dl>
{% if registry_problem %}
<p class="problem">experiment registry: {{ registry_problem }}</p>
{% endif %}
{% if experiments %}
<nav><ul>
{% for e in experiments %}<li><a href="#{{ e.anchor }}">{{ e.name }}</a> ({{ e.run_count }})</li>
{% endfor %}</ul></nav>
{% endif %}
</header>
<main>
{% if score %}
<section id="score">
<h2>Reproduction score</h2>
<p class="note">Every published number the stored experiments declare, beside ours (mean ±
sample std over seeds), the gap in points and whether it lies within its tolerance (2 points
unless the row says otherwise); the same table as <code>lifelong reproduce</code>.
{{ score_tally }}</p>
<table class="score">
<thead><tr><th>experiment</th><th>measure</th><th class="num">published</th>
<th class="num">ours ± std</th><th class="num">gap (points)</th><th>pass/miss</th>
<th>source</th></tr></thead>
<tbody>
{% for r in score %}<tr><td>{{ r.experiment }}</td><td>{{ r.label }}</td>
<td class="num">{{ r.published }}</td><td class="num">{{ r.ours }}</td>
<td class="num">{{ r.gap }}</td><td class="verdict {{ r.verdict }}">{{ r.verdict }}</td>
<td>{{ r.source }}</td></tr>
{% endfor %}</tbody>
</table>
</section>
{% endif %}
{% if not experiments %}
<p class="empty">This store holds no runs yet. Run an experiment
(<code>lifelong run NAME</code>) with this store, then write the report again.</p>
{% endif %}
{% for e in experiments %}
<section class="experiment" id="{{ e.anchor }}">
<h2>{{ e.name }}</h2>
{% if e.summary %}<p class="note">{{ e.summary }}</p>{% endif %}
<h3>Comparisons</h3>
{% if e.comparisons %}
<p class="note">Completed runs grouped by label and stream; metrics are mean ± sample std
over seeds, computed from the stored accuracy matrices. Train time is summed over tasks,
peak memory is the highest of the tasks, parameters are counted after the last task; each is
averaged over seeds.</p>
<table class="comparisons">
<thead><tr>{% for h in comparison_header %}
<th{% if loop.index > 2 %} class="num"{% endif %}>{{ h }}</th>{% endfor %}
</tr></thead>
<tbody>
{% for c in e.comparisons %}<tr><td>{{ c.label }}</td><td>{{ c.stream }}</td>
<td class="num" title="seeds {{ c.seed_list }}">{{ c.seeds }}</td>
{% for v in c.cells %}<td class="num">{{ v }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
<details><summary>stream configurations</summary>
<ul>{% for s in e.stream_configs %}<li><code>{{ s }}</code></li>{% endfor %}</ul>
</details>
{% else %}
<p class="note">No completed run yet.</p>
{% endif %}
{% if e.registered %}
<h3>Published vs ours</h3>
{% if e.protocol_note %}<p class="note">{{ e.protocol_note }}</p>{% endif %}
{% if e.ours_problem %}
<p class="problem">our numbers could not be computed from the stored runs:
{{ e.ours_problem }}</p>
{% endif %}
{% if e.references %}
<table class="references">
<thead><tr><th>measure</th><th class="num">published</th><th class="num">ours ± std</th>
<th class="num">gap (points)</th><th>pass/miss</th><th>source</th></tr></thead>
<tbody>
{% for r in e.references %}<tr><td>{{ r.label }}</td><td class="num">{{ r.published }}</td>
<td class="num">{{ r.ours }}</td><td class="num">{{ r.gap }}</td>
<td class="verdict {{ r.verdict }}">{{ r.verdict }}</td><td>{{ r.source }}</td></tr>
{% endfor %}</tbody>
</table>
{% else %}<p class="note">This experiment declares no published numbers.</p>{% endif %}
{% else %}
<p class="note">Not in the experiment registry of this installation (a user's experiment not
imported here), so no published numbers are shown.</p>
{% endif %}
{% if e.comparisons %}
<h3>Accuracy matrices</h3>
<p class="note">R[i][j]: accuracy on task j after training task i (row init: untrained model),
mean over each comparison's seeds.</p>
<div class="grid">
{% for c in e.comparisons %}<figure class="heatmap"><img src="{{ c.heatmap }}" alt="{{ c.alt }}">
<figcaption>{{ c.label }} · {{ c.stream }} · {{ c.seeds }} seed(s)</figcaption></figure>
{% endfor %}</div>
{% endif %}
{% if e.figures %}
<h3>Figures</h3>
<div class="grid">
{% for f in e.figures %}<figure class="stored"><img src="{{ f.src }}" alt="{{ f.alt }}">
<figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}</div>
{% endif %}
{% if e.unfinished %}
<h3>Runs not completed</h3>
<table class="unfinished">
<thead><tr><th>run</th><th>label</th><th class="num">seed</th><th>status</th><th>stream</th>
<th class="num">rows</th><th>error</th></tr></thead>
<tbody>
{% for u in e.unfinished %}<tr><td><code>{{ u.run_id }}</code></td><td>{{ u.label }}</td>
<td class="num">{{ u.seed }}</td><td>{{ u.status }}</td><td>{{ u.stream }}</td>
<td class="num">{{ u.rows }}</td><td class="error">{{ u.error }}</td></tr>
{% endfor %}</tbody>
</table>
{% endif %}
</section>
{% endfor %}
</main>
</body>
</html>
"""
