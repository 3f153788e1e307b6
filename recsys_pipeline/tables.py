"""The console tables: the end-of-run summary, the model gates, ``recsys runs``.

One place for the formatters the tables (and the HTML report) share, so that a value reads the
same wherever it is shown.
"""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING, Optional

from recsys_pipeline.pipeline import nodes

if TYPE_CHECKING:
    from recsys_pipeline.history import RunRow
    from recsys_pipeline.metadata import RunSummary
    from recsys_pipeline.model_summary import ModelRow
    from recsys_pipeline.pipeline.config import PipelineConfig


def num(value: Optional[float], digits: int = 4) -> str:
    """A metric to ``digits`` places, or "-" when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def yes(value: Optional[bool], unknown: str = "-") -> str:
    """A verdict: "yes", "NO" (loud: it blocks a push), or ``unknown``."""
    return unknown if value is None else ("yes" if value else "NO")


def when(seconds: Optional[float]) -> str:
    """Unix seconds as local date and time, or "-"."""
    if seconds is None:
        return "-"
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def format_model_table(rows: list[ModelRow]) -> str:
    """Per served model: gated metric, bound, baseline, blessing, pushed version."""
    width = max(len(p.model_name) for p in nodes.PUSHES)
    header = (f"  {'model':<{width}} {'metric':<24} {'value':>7} {'bound':>8} {'baseline':>8} "
              f"{'blessed':>7}  pushed")
    lines = ["Models:", header]
    for r in rows:
        lines.append(f"  {r.model:<{width}} {r.metric:<24} {num(r.value):>7} {r.bound:>8} "
                     f"{num(r.baseline):>8} {yes(r.blessed, ''):>7}  {r.pushed}")
    return "\n".join(lines)


def format_summary(summary: RunSummary, config: PipelineConfig) -> str:
    """What ran, what was cached, where the outputs are, and the model gates."""
    from recsys_pipeline import model_summary

    lines = [f"Run {summary.run_id}", f"  {'component':<22} {'status':<8} {'time':>8}"]
    for c in summary.components:
        secs = f"{c.seconds:.1f}s" if c.seconds is not None else "-"
        lines.append(f"  {c.node_id:<22} {c.state:<8} {secs:>8}")
    ran = sum(c.state == "ran" for c in summary.components)
    cached = sum(c.state == "cached" for c in summary.components)
    lines.append(f"  {ran} ran, {cached} cached, {len(summary.components)} components")
    transformed = summary.output(nodes.TRANSFORM, "transformed_examples")
    graph = summary.output(nodes.TRANSFORM, "transform_graph")
    lines.append("Outputs:")
    if transformed:
        lines.append(f"  transformed examples: {transformed}")
    if graph:
        lines.append(f"  transform graph:      {graph}")
        lines.append(f"  vocabularies:         {os.path.join(graph, 'transform_fn', 'assets')}")
    examples = summary.output(nodes.EXAMPLE_GEN, "examples")
    if examples:
        lines.append(f"  raw examples:         {examples}")
    window = summary.properties(nodes.SPAN_WINDOW, "window")
    if window.get("window_spans"):
        lines.append(f"  span window:          spans {window['window_spans']} "
                     f"({window.get('window_ratings', '?')} ratings, "
                     f"{window.get('window_split', '?')}): "
                     f"{summary.output(nodes.SPAN_WINDOW, 'window')}")
    if window.get("drift"):
        lines.append(f"  span drift:           {window['drift']}")
    bulk = summary.properties(nodes.BULK_RECOMMENDATIONS, "recommendations")
    if bulk.get("report"):
        from recsys_pipeline.serving.bulk import BulkReport

        found = BulkReport.from_json(str(bulk["report"]))
        lines.append(f"  bulk recommendations: {', '.join(found.files)} ({found.rows} rows for "
                     f"{found.users} users; catalogue coverage {found.coverage:.1%})")
    elif bulk.get(nodes.REASON_PROPERTY):
        lines.append(f"  bulk recommendations: none ({bulk[nodes.REASON_PROPERTY]})")
    for branch in (nodes.RETRIEVAL, nodes.RANKING):  # warm starts need span folders
        start = summary.properties(branch.trainer or "", "model").get(nodes.WARM_START_PROPERTY)
        if start and window.get("window_spans"):
            lines.append(f"  {branch.name + ' start:':<21} {start}")
    lines.append(f"  pipeline root:        {config.pipeline_root}")
    lines.append(f"  MLMD store:           {config.metadata_path}")
    lines.append(f"  serving base:         {config.serving_dir} (models.config, "
                 "models.stock.config)")
    lines.append(format_model_table(model_summary.model_rows(summary, config)))
    return "\n".join(lines)


def format_runs(rows: list[RunRow]) -> str:
    """The ``recsys runs`` table: one line per run, oldest first."""
    retrieval, ranking = nodes.RETRIEVAL.name, nodes.RANKING.name
    lines = [f"{'started':<19}  {'run':<28} {'ran':>3} {'cached':>6} {'top-k':>7} "
             f"{'rmse':>7} {'blessed R/K':>11}  pushed versions; data"]
    for r in rows:
        pushed = ", ".join(f"{m}={v}" for m, v in sorted(r.pushed.items())) or "none"
        failed = f" ({r.failed} failed)" if r.failed else ""
        blessed = f"{yes(r.blessed[retrieval])}/{yes(r.blessed[ranking])}"
        lines.append(
            f"{when(r.started):<19}  {r.run[:28]:<28} {r.ran:>3} {r.cached:>6} "
            f"{num(r.gated[retrieval]):>7} {num(r.gated[ranking]):>7} {blessed:>11}  "
            f"{pushed}; {r.data}{failed}")
    if not rows:
        lines.append("(no runs recorded)")
    return "\n".join(lines)
