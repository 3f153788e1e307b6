"""``recsys report``: one self-contained HTML page about a run (inline CSS and SVG, no scripts,
nothing fetched), written to ``<output-dir>/report/index.html``.

Sections: the DAG with each component's status (ran / cached / failed) and duration; data
highlights from StatisticsGen (ratings per split, users, items, time span, rating
distribution); the gated metrics against their bounds and the baseline; top-k accuracy and
RMSE across all runs as plots (with span folders, also per span: the candidate beside the
served model scored on the same span); the ScaNN index's recall and one-query latency against
brute force. Everything is read from ML Metadata and the artifacts it points to.
"""

from __future__ import annotations

import html
import os
from typing import Any, Optional

from recsys_pipeline import files
from recsys_pipeline.errors import OutputError
from recsys_pipeline.metadata import dag_edges
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.serving.index_params import IndexReport
from recsys_pipeline.tables import num, when

STATUS_COLOURS = {"ran": "#2e7d32", "cached": "#1565c0", "failed": "#c62828",
                  "running": "#ef6c00", "not run": "#9e9e9e"}
REPORT_DIR = "report"


def _e(value: Any) -> str:
    return html.escape(str(value))


# --- Data gathering -------------------------------------------------------------------------

def layers(node_ids: list[str], edges: set[tuple[str, str]]) -> dict[str, int]:
    """Column of each node: the length of the longest path reaching it."""
    depth = {n: 0 for n in node_ids}
    for _ in node_ids:  # at most len(node_ids) relaxations in a DAG
        changed = False
        for a, b in edges:
            if a in depth and b in depth and depth[b] < depth[a] + 1:
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    return depth


def data_highlights(statistics_uri: Optional[str]) -> dict[str, Any]:
    """Counts, users, items, time span and rating histogram per split."""
    from recsys_pipeline.transform import features as F

    if not statistics_uri or not os.path.isdir(statistics_uri):
        return {}
    import tensorflow_data_validation as tfdv

    result = {}
    for split in ("train", "eval"):
        path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
        if not os.path.exists(path):
            continue
        dataset = tfdv.load_stats_binary(path).datasets[0]
        info: dict[str, Any] = {"ratings": dataset.num_examples}
        for feature in dataset.features:
            name = feature.path.step[0] if feature.path.step else feature.name
            if name in (F.USER_ID, F.ITEM_ID) and feature.HasField("string_stats"):
                info[name] = feature.string_stats.unique
            elif name == F.TIMESTAMP and feature.HasField("num_stats"):
                info["first"], info["last"] = feature.num_stats.min, feature.num_stats.max
            elif name == F.USER_RATING and feature.HasField("num_stats"):
                stats = feature.num_stats
                info["mean_rating"] = stats.mean
                if stats.histograms:
                    info["histogram"] = [(b.low_value, b.high_value, b.sample_count)
                                         for b in stats.histograms[0].buckets]
        result[split] = info
    return result


# --- SVG ------------------------------------------------------------------------------------

def dag_svg(components, edges: set[tuple[str, str]]) -> str:
    """The DAG, left to right, each node coloured by status with its duration."""
    node_ids = [c.node_id for c in components]
    column = layers(node_ids, edges)
    rows: dict[int, int] = {}
    position = {}
    for node in node_ids:
        col = column[node]
        position[node] = (col, rows.get(col, 0))
        rows[col] = rows.get(col, 0) + 1
    width, height, dx, dy = 178, 46, 214, 62
    total_w = (max(column.values(), default=0) + 1) * dx + 10
    total_h = max(rows.values(), default=1) * dy + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {total_w} {total_h}" '
             f'width="{total_w}" height="{total_h}" role="img" aria-label="pipeline DAG">']
    for a, b in sorted(edges):
        if a not in position or b not in position:
            continue
        (ca, ra), (cb, rb) = position[a], position[b]
        x1, y1 = 5 + ca * dx + width, 5 + ra * dy + height / 2
        x2, y2 = 5 + cb * dx, 5 + rb * dy + height / 2
        mid = (x1 + x2) / 2
        parts.append(f'<path d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" fill="none" '
                     'stroke="#90a4ae" stroke-width="1.4"/>')
    by_id = {c.node_id: c for c in components}
    for node in node_ids:
        col, row = position[node]
        c = by_id[node]
        x, y = 5 + col * dx, 5 + row * dy
        colour = STATUS_COLOURS.get(c.state, "#9e9e9e")
        took = "-" if c.seconds is None else (
            f"{c.seconds:.1f}s" if c.seconds >= 1 else f"{c.seconds:.2f}s")
        parts.append(
            f'<g class="node" data-status="{_e(c.state)}"><rect x="{x}" y="{y}" '
            f'width="{width}" height="{height}" rx="6" fill="#fff" stroke="{colour}" '
            f'stroke-width="2.5"/><text x="{x + 8}" y="{y + 19}" font-size="13" '
            f'font-weight="600">{_e(node)}</text><text x="{x + 8}" y="{y + 37}" '
            f'font-size="12" fill="{colour}">{_e(c.state)} · {_e(took)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


MAX_X_LABELS = 10  # beyond this many points, every n-th is labelled (span numbers are long)


def line_chart_svg(title: str, values: list[Optional[float]], bound: Optional[float],
                   blessed: list[Optional[bool]], labels: Optional[list[str]] = None,
                   reference: Optional[list[Optional[float]]] = None,
                   x_title: str = "run", reference_name: str = "served model") -> str:
    """A small line chart of a metric over runs, with the bound dashed; ``labels`` name the
    points (default: the run's number) and ``reference`` is a second, grey series."""
    w, h, left, bottom, top = 460, 200, 52, 28, 24
    labels = labels or [str(i + 1) for i in range(len(values))]
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    others = [(i, v) for i, v in enumerate(reference or []) if v is not None]
    if not points:
        return f"<p>{_e(title)}: no evaluated runs yet.</p>"
    ys = [v for _, v in points + others] + ([bound] if bound is not None else [])
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.15 or 0.05
    lo, hi = lo - pad, hi + pad
    n = max(len(values) - 1, 1)
    every = -(-len(values) // MAX_X_LABELS)

    def px(i: float) -> float:
        return left + (w - left - 12) * (i / n if len(values) > 1 else 0.5)

    def py(v: float) -> float:
        return top + (h - top - bottom) * (1 - (v - lo) / (hi - lo))

    def polyline(series: list[tuple[int, float]], style: str) -> str:
        path = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in series)
        return f'<polyline points="{path}" fill="none" {style}/>'

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
             f'height="{h}" role="img" aria-label="{_e(title)}">',
             f'<text x="{left}" y="15" font-size="13" font-weight="600">{_e(title)}</text>',
             f'<line x1="{left}" y1="{h - bottom}" x2="{w - 8}" y2="{h - bottom}" '
             'stroke="#607d8b"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="#607d8b"/>',
             f'<text x="{left - 6}" y="{py(hi - pad) + 4}" font-size="11" '
             f'text-anchor="end">{hi - pad:.3f}</text>',
             f'<text x="{left - 6}" y="{py(lo + pad) + 4}" font-size="11" '
             f'text-anchor="end">{lo + pad:.3f}</text>',
             f'<text x="{w - 8}" y="{h - 8}" font-size="11" text-anchor="end">'
             f'{_e(x_title)}</text>']
    if bound is not None:
        parts.append(f'<line x1="{left}" y1="{py(bound)}" x2="{w - 8}" y2="{py(bound)}" '
                     'stroke="#c62828" stroke-dasharray="5,4"/>'
                     f'<text x="{w - 10}" y="{py(bound) - 4}" font-size="11" fill="#c62828" '
                     f'text-anchor="end">bound {bound:g}</text>')
    if others:
        parts.append(f'<text x="{w - 10}" y="15" font-size="11" fill="#90a4ae" '
                     f'text-anchor="end">grey: {_e(reference_name)}</text>')
        if len(others) > 1:
            parts.append(polyline(others, 'stroke="#90a4ae" stroke-width="1.5" '
                                  'stroke-dasharray="3,3"'))
        for i, v in others:
            parts.append(f'<circle class="reference" cx="{px(i):.1f}" cy="{py(v):.1f}" r="3" '
                         f'fill="#90a4ae"><title>{_e(x_title)} {_e(labels[i])}: '
                         f'{_e(reference_name)} {v:.4f}</title></circle>')
    if len(points) > 1:
        parts.append(polyline(points, 'stroke="#1565c0" stroke-width="2"'))
    for i, v in points:
        colour = "#2e7d32" if blessed[i] else "#c62828"
        parts.append(f'<circle class="point" cx="{px(i):.1f}" cy="{py(v):.1f}" r="4" '
                     f'fill="{colour}"><title>{_e(x_title)} {_e(labels[i])}: {v:.4f}</title>'
                     '</circle>')
    for i in range(0, len(values), every):
        parts.append(f'<text x="{px(i):.1f}" y="{h - bottom + 14}" font-size="10" '
                     f'text-anchor="middle">{_e(labels[i])}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(buckets: list[tuple[float, float, float]]) -> str:
    """Bars of the rating histogram (non-empty buckets)."""
    bars = [(lo, hi_, count) for lo, hi_, count in buckets if count >= 1.5]
    if not bars:
        return ""
    w, h, bar = 64 * len(bars) + 20, 140, 48
    top = max(c for _, _, c in bars)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" '
             f'height="{h}" role="img" aria-label="rating distribution">']
    for i, (lo, hi_, count) in enumerate(bars):
        height = (h - 40) * count / top
        x = 10 + 64 * i
        label = f"{lo:.1f}–{hi_:.1f}"
        parts.append(f'<rect x="{x}" y="{h - 22 - height:.1f}" width="{bar}" '
                     f'height="{height:.1f}" fill="#5c6bc0"><title>{count:.0f}</title></rect>'
                     f'<text x="{x + bar / 2}" y="{h - 8}" font-size="11" '
                     f'text-anchor="middle">{label}</text>'
                     f'<text x="{x + bar / 2}" y="{h - 26 - height:.1f}" font-size="10" '
                     f'text-anchor="middle">{count:.0f}</text>')
    parts.append("</svg>")
    return "".join(parts)


# --- Page -----------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#263238;
max-width:1400px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid
#cfd8dc;padding-bottom:4px}table{border-collapse:collapse;font-size:13px}td,th{padding:4px
10px;border-bottom:1px solid #eceff1;text-align:left}th{background:#f5f7f8}.num{text-align:right;
font-variant-numeric:tabular-nums}.yes{color:#2e7d32;font-weight:600}.no{color:#c62828;
font-weight:600}.muted{color:#78909c}.scroll{overflow-x:auto}.charts{display:flex;gap:24px;
flex-wrap:wrap}.legend span{margin-right:14px}
"""


def span_chart_svg(title: str, branch: str, rows, bound: Optional[float]) -> str:
    """A branch's gated metric per ingested span: the candidate, and the served model (its
    baseline) scored on the same span."""
    return line_chart_svg(title, [r.gated[branch] for r in rows], bound,
                          [r.blessed[branch] for r in rows], labels=[str(r.span) for r in rows],
                          reference=[r.served[branch] for r in rows], x_title="span")


def window_html(window: Optional[dict[str, Any]]) -> str:
    """The span window and its drift distances from the previous span (span folders only)."""
    if not window:
        return ""
    out = [f"<p id=window>Span {_e(window['span'])}; window: spans "
           f"{_e(', '.join(map(str, window['spans'])))} ({_e(window['split'])} split, "
           f"{_e(window['ratings'].get('train'))} train and {_e(window['ratings'].get('eval'))}"
           " eval ratings).</p>"]
    found = window.get("drift", {})
    if found.get("distances"):
        out.append(f"<table id=drift><tr><th>drift from span {_e(found['against'])}</th>"
                   "<th>measure</th><th class=num>distance</th><th class=num>threshold</th>"
                   "</tr>")
        for d in found["distances"]:
            beyond = d["value"] > d["threshold"]
            value = f'<span class="no">{d["value"]:.4f}</span>' if beyond else f"{d['value']:.4f}"
            out.append(f"<tr><td>{_e(d['feature'])}</td><td>{_e(d['measure'])}</td>"
                       f"<td class=num>{value}</td><td class=num>{d['threshold']:g}</td></tr>")
        out.append("</table>")
    return "\n".join(out)


def bulk_html(bulk: dict[str, Any]) -> str:
    """The bulk recommendations of the run ([bulk] enabled), with the catalogue coverage."""
    if not bulk:
        return ""
    out = ["<h2>Bulk recommendations</h2>"]
    if not bulk.get("report"):
        out.append(f"<p>None written: {_e(bulk.get(nodes.REASON_PROPERTY, '-'))}</p>")
        return "\n".join(out)
    from recsys_pipeline.serving.bulk import BulkReport

    found = BulkReport.from_json(str(bulk["report"]))
    out.append(f"<table id=bulk><tr><th>catalogue coverage</th><td class=num>"
               f"{found.coverage:.1%}</td><td>{found.covered} of {found.catalogue_size} items "
               f"in at least one list</td></tr><tr><th>lists</th><td class=num>{found.users}"
               f"</td><td>users, top {found.k}: {found.rows} rows in {found.seconds:.1f}s</td>"
               f"</tr><tr><th>files</th><td colspan=2>{_e(', '.join(found.files))}</td></tr>"
               "</table>")
    return "\n".join(out)


def render(config: PipelineConfig, summary, edges, data, models, history_rows,
           index: dict[str, Any], index_report: Optional[IndexReport],
           window: Optional[dict[str, Any]] = None,
           bulk: Optional[dict[str, Any]] = None) -> str:
    """The page's HTML."""
    ran = sum(c.state == "ran" for c in summary.components)
    cached = sum(c.state == "cached" for c in summary.components)
    total = sum(c.seconds or 0 for c in summary.components)
    legend = "".join(f'<span style="color:{colour}">■ {state}</span>'
                     for state, colour in STATUS_COLOURS.items())
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
           f"<title>recsys-pipeline run {_e(summary.run_id)}</title><style>{CSS}</style>"
           "</head><body>",
           f"<h1>recsys-pipeline · run {_e(summary.run_id)}</h1>",
           f'<p class="muted">Started {_e(when(summary.started))} · {ran} ran, {cached} cached '
           f"of {len(summary.components)} components · {total:.0f}s of component time · "
           f"output {_e(config.output_dir)}</p>",
           "<h2>Pipeline</h2>", f'<p class="legend">{legend}</p>',
           f'<div class="scroll" id="dag">{dag_svg(summary.components, edges)}</div>']

    out.append("<h2>Data</h2>")
    if data:
        out.append("<table id=data><tr><th>split</th><th class=num>ratings</th>"
                   "<th class=num>users</th><th class=num>items</th><th class=num>mean rating"
                   "</th><th>from</th><th>to</th></tr>")
        for split, info in data.items():
            out.append(
                f"<tr><td>{_e(split)}</td><td class=num>{info.get('ratings', '-')}</td>"
                f"<td class=num>{info.get('user_id', '-')}</td>"
                f"<td class=num>{info.get('item_id', '-')}</td>"
                f"<td class=num>{num(info.get('mean_rating'), 3)}</td>"
                f"<td>{_e(when(info.get('first'))[:10])}</td>"
                f"<td>{_e(when(info.get('last'))[:10])}</td></tr>")
        out.append("</table>")
        if data.get("train", {}).get("histogram"):
            out.append("<p>Rating distribution (train):</p>"
                       + histogram_svg(data["train"]["histogram"]))
    else:
        out.append("<p>No statistics in this run.</p>")
    out.append(window_html(window))

    out.append("<h2>Models against the gates</h2><table id=models><tr><th>model</th>"
               "<th>metric</th><th class=num>value</th><th class=num>bound</th>"
               "<th class=num>baseline</th><th>blessed</th><th>pushed</th></tr>")
    for r in models:
        blessed = "" if r.blessed is None else (
            '<span class="yes">yes</span>' if r.blessed else '<span class="no">NO</span>')
        out.append(f"<tr><td>{_e(r.model)}</td><td>{_e(r.metric)}</td>"
                   f"<td class=num>{num(r.value)}</td><td class=num>{_e(r.bound)}</td>"
                   f"<td class=num>{num(r.baseline)}</td><td>{blessed}</td>"
                   f"<td>{_e(r.pushed)}</td></tr>")
    out.append("</table>")

    from recsys_pipeline.model_summary import run_bound

    ev = config.evaluation
    out.append("<h2>History</h2><div class=charts>")
    spanned = [r for r in history_rows if r.span is not None]
    for branch in nodes.BRANCHES:
        values = [r.gated[branch.name] for r in history_rows]
        if branch.optional and all(v is None for v in values):
            continue  # an opt-in branch no run has evaluated
        bound = run_bound(summary, branch.evaluator)
        bound = getattr(ev, branch.bound) if bound is None else bound
        title = f"{branch.name}: " + nodes.METRICS[branch.metric].title(ev)
        out.append(line_chart_svg(title, values, bound,
                                  [r.blessed[branch.name] for r in history_rows]))
        if spanned:
            out.append(span_chart_svg(f"{title}, per span", branch.name, spanned, bound))
    out.append("</div><table id=runs><tr><th>#</th><th>run</th><th>started</th>"
               "<th class=num>ran</th><th class=num>cached</th><th>pushed</th></tr>")
    for i, r in enumerate(history_rows, 1):
        pushed = ", ".join(f"{m}={v}" for m, v in sorted(r.pushed.items())) or "none"
        out.append(f"<tr><td>{i}</td><td>{_e(r.run)}</td><td>{_e(when(r.started))}"
                   f"</td><td class=num>{r.ran}</td><td class=num>{r.cached}</td>"
                   f"<td>{_e(pushed)}</td></tr>")
    out.append("</table>")

    out.append("<h2>ScaNN index</h2>")
    if index and index_report is None:  # blessed or not without building (see its reason)
        out.append(f"<p>No index was built: {_e(index.get(nodes.REASON_PROPERTY, '-'))}</p>")
    elif index_report is not None:
        report = index_report
        out.append(
            f"<table id=index><tr><th>recall@{_e(report.recall_k)} ({_e(report.recall_of)})"
            f"</th><td class=num>{num(index.get('recall'))}</td><td>bound "
            f"{_e(index.get('min_recall', '-'))}</td></tr>")
        for method in ("scann", "brute_force"):
            if method in report.latency_ms:
                latency = report.latency_ms[method]
                out.append(f"<tr><th>one query, {method.replace('_', ' ')}</th><td class=num>"
                           f"{latency['p50']:.3f} ms</td><td>p99 "
                           f"{latency['p99']:.3f} ms</td></tr>")
        out.append(f"<tr><th>index</th><td colspan=2>{_e(report.catalogue_size)} "
                   f"items, {_e(report.settings.num_leaves)} leaves, "
                   f"{_e(report.settings.num_leaves_to_search)} searched, built in "
                   f"{_e(report.build_seconds)}s</td></tr></table>")
    else:
        out.append("<p>The index was not built in this run.</p>")
    out.append(bulk_html(bulk or {}))
    out.append("</body></html>\n")
    return "\n".join(out)


def write_report(config: PipelineConfig, run_id: Optional[str] = None) -> str:
    """Writes the report of ``run_id`` (default: the newest run); returns its path."""
    from recsys_pipeline import history, model_summary
    from recsys_pipeline.metadata import open_store, summarize_runs

    store = open_store(config)
    summaries = summarize_runs(config, store=store)
    if not summaries:
        raise OutputError(f"{config.metadata_path} records no run of {config.pipeline_name}")
    if run_id is None:
        summary = summaries[-1]
    else:
        matches = [s for s in summaries if s.run_id == run_id]
        if not matches:
            raise OutputError(f"no run {run_id!r}; recsys runs lists them")
        summary = matches[0]
    index = summary.properties(nodes.SCANN_INDEXER, "index_blessing")
    index_report = IndexReport.from_json(index["report"]) if "report" in index else None
    window_uri = summary.output(nodes.SPAN_WINDOW, "window")
    window = None
    if window_uri:
        from recsys_pipeline.components.span_window import read_window

        window = read_window(window_uri)
    page = render(config, summary, dag_edges(store, summary.run_id),
                  data_highlights(summary.output(nodes.STATISTICS_GEN, "statistics")),
                  model_summary.model_rows(summary, config),
                  history.run_rows(config, summaries=summaries), index, index_report, window,
                  summary.properties(nodes.BULK_RECOMMENDATIONS, "recommendations"))
    directory = os.path.join(config.output_dir, REPORT_DIR)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "index.html")
    files.atomic_write(path, page)
    return path
