"""The report's pure parts: DAG layering, the SVG builders and the span window."""

from recsys_pipeline import report
from recsys_pipeline.metadata import ComponentResult
from recsys_pipeline.report import dag_svg, histogram_svg, layers, line_chart_svg


def test_layers_follow_the_longest_path():
    edges = {("a", "b"), ("b", "c"), ("a", "c"), ("d", "c")}
    assert layers(["a", "b", "c", "d"], edges) == {"a": 0, "b": 1, "c": 2, "d": 0}


def test_dag_nodes_carry_status_and_duration():
    svg = dag_svg([ComponentResult("a", "ran", 1.25, {}), ComponentResult("b", "cached", 0.04,
                                                                          {})], {("a", "b")})
    assert svg.count('class="node"') == 2 and 'data-status="cached"' in svg
    assert "ran · 1.2s" in svg and "cached · 0.04s" in svg and "<path" in svg


def test_line_chart_marks_unblessed_runs_and_the_bound():
    svg = line_chart_svg("RMSE", [0.95, None, 0.93], 1.0, [True, None, False])
    assert svg.count('class="point"') == 2 and "bound 1" in svg
    assert "#c62828" in svg.split("run 3")[0].rsplit("<circle", 1)[1]  # not blessed: red


def test_histogram_skips_empty_buckets():
    svg = histogram_svg([(1.0, 1.4, 100.0), (1.4, 1.8, 0.9), (1.8, 2.2, 50.0)])
    assert svg.count("<rect") == 2 and "1.0–1.4" in svg


def test_window_shows_its_spans_and_flags_drift_beyond_the_threshold():
    window = {"span": 7, "spans": [6, 7], "split": "next_span",
              "ratings": {"train": 1200, "eval": 1100},
              "drift": {"against": 6, "mode": "warn", "distances": [
                  {"feature": "item_id", "measure": "L-infinity", "value": 0.585,
                   "threshold": 0.3},
                  {"feature": "user_rating", "measure": "Jensen-Shannon", "value": 0.0123,
                   "threshold": 0.2}]}}
    html = report.window_html(window)
    assert "window: spans 6, 7 (next_span split, 1200 train and 1100 eval ratings)" in html
    assert "drift from span 6" in html
    assert '<span class="no">0.5850</span>' in html and "<td class=num>0.0123</td>" in html
    assert report.window_html(None) == ""


def test_span_chart_labels_points_by_span_and_draws_the_served_model():
    from recsys_pipeline.history import RunRow

    def row(span, candidate, served, blessed):
        return RunRow(run=f"r{span}", started=None, data="", ran=1, cached=0, failed=0,
                      gated={"retrieval": candidate}, served={"retrieval": served},
                      blessed={"retrieval": blessed}, pushed={}, seconds={}, states={},
                      span=span)

    rows = [row(20261101, 0.30, None, True), row(20261102, 0.35, 0.31, True),
            row(20261103, 0.28, 0.36, False)]
    svg = report.span_chart_svg("retrieval, per span", "retrieval", rows, 0.2)
    assert svg.count('class="point"') == 3 and svg.count('class="reference"') == 2
    assert "span 20261103: 0.2800" in svg and "span 20261102: served model 0.3100" in svg
    assert ">20261101</text>" in svg and "grey: served model" in svg
    assert "#c62828" in svg.split("span 20261103: 0.2800")[0].rsplit("<circle", 1)[1]


def test_many_points_label_every_nth_one():
    svg = line_chart_svg("m", [0.1] * 30, None, [True] * 30, labels=[f"d{i}" for i in range(30)])
    assert svg.count('class="point"') == 30
    assert ">d0</text>" in svg and ">d27</text>" in svg and ">d1</text>" not in svg


def test_bulk_shows_the_catalogue_coverage_or_why_nothing_was_written():
    from recsys_pipeline.serving.bulk import BulkReport

    found = BulkReport(users=943, rows=9430, k=10, covered=412, catalogue_size=1682,
                       seconds=21.5, files=["/out/recommendations.parquet"])
    html = report.bulk_html({"report": found.to_json()})
    assert "<td class=num>24.5%</td><td>412 of 1682 items" in html
    assert "943</td><td>users, top 10: 9430 rows" in html
    assert "the recommender was not blessed" in report.bulk_html(
        {"reason": "the recommender was not blessed"})
    assert report.bulk_html({}) == ""
