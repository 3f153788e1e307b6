"""Drift between two spans' statistics: TFDV's distances against numpy's, thresholds from
config or the schema, and the SpanWindow's block / warn / off."""

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from recsys_pipeline.components.span_window import check_drift
from recsys_pipeline.data import drift, spans
from recsys_pipeline.errors import DataError
from recsys_pipeline.transform import features as F


def _frame(items, ratings, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({F.USER_ID: [f"u{u}" for u in rng.integers(0, 50, len(items))],
                         F.ITEM_ID: items, F.USER_RATING: np.asarray(ratings, float)})


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(1)
    calm = _frame([f"m{m}" for m in rng.integers(0, 40, 2000)], rng.integers(1, 6, 2000))
    later = _frame([f"m{m}" for m in rng.integers(0, 40, 2000)], rng.integers(1, 6, 2000), 2)
    # A logging fault: 60% of the new span's ratings go to one item, rated 5.
    items = np.array([f"m{m}" for m in rng.integers(0, 40, 2000)], dtype=object)
    ratings = rng.integers(1, 6, 2000).astype(float)
    items[:1200], ratings[:1200] = "m7", 5.0
    drifted = _frame(list(items), ratings, 3)
    return calm, later, drifted


def _stats(frame):
    return tfdv.generate_statistics_from_dataframe(frame)


def _schema(frame):
    return tfdv.infer_schema(_stats(frame))


def _linf(a, b):
    pa, pb = a.value_counts(normalize=True), b.value_counts(normalize=True)
    return float((pa.reindex(pa.index.union(pb.index), fill_value=0)
                  - pb.reindex(pa.index.union(pb.index), fill_value=0)).abs().max())


def test_distances_match_numpy_and_flag_the_drifted_feature(frames):
    calm, later, drifted = frames
    schema = drift.with_comparators(_schema(calm), 0.3, 0.2)
    quiet = drift.distances(_stats(later), _stats(calm), schema)
    assert [(d.feature, d.measure) for d in quiet] == [
        (F.ITEM_ID, drift.L_INFINITY), (F.USER_RATING, drift.JENSEN_SHANNON)]
    assert not any(d.beyond for d in quiet)
    loud = {d.feature: d for d in drift.distances(_stats(drifted), _stats(calm), schema)}
    assert loud[F.ITEM_ID].value == pytest.approx(_linf(drifted[F.ITEM_ID], calm[F.ITEM_ID]),
                                                   abs=1e-4)
    assert loud[F.ITEM_ID].beyond and F.USER_ID not in loud  # users: only if the schema asks
    # 60% fives moves the rating histogram too, though less than the 0.2 default.
    assert 0.1 < loud[F.USER_RATING].value < 0.2 and quiet[1].value < 0.01
    assert loud[F.ITEM_ID].describe().startswith("item_id L-infinity distance 0.5")


def test_the_schemas_own_comparators_win_over_the_config(frames):
    calm, _, drifted = frames
    schema = _schema(calm)
    for feature in schema.feature:
        if feature.name == F.ITEM_ID:
            feature.drift_comparator.infinity_norm.threshold = 0.9
        if feature.name == F.USER_ID:
            feature.drift_comparator.infinity_norm.threshold = 0.05
    with_config = drift.with_comparators(schema, 0.3, 0.2)
    loud = {d.feature: d for d in drift.distances(_stats(drifted), _stats(calm), with_config)}
    assert loud[F.ITEM_ID].threshold == 0.9 and not loud[F.ITEM_ID].beyond
    assert loud[F.USER_ID].threshold == 0.05
    assert loud[F.USER_ID].value == pytest.approx(_linf(drifted[F.USER_ID], calm[F.USER_ID]),
                                                  abs=1e-4)


def _statistics_dir(tmp_path, name, frame):
    directory = tmp_path / name
    (directory / "Split-train").mkdir(parents=True)
    # As StatisticsGen writes it: one serialized DatasetFeatureStatisticsList.
    (directory / "Split-train" / "FeatureStats.pb").write_bytes(_stats(frame).SerializeToString())
    return str(directory)


def test_block_names_span_feature_and_distance_warn_and_off_pass(frames, tmp_path):
    calm, _, drifted = frames
    schema_dir = tmp_path / "schema"
    schema_dir.mkdir()
    tfdv.write_schema_text(_schema(calm), str(schema_dir / "schema.pbtxt"))
    before = spans.AcceptedSpan(6, "/examples/6", 1, _statistics_dir(tmp_path, "s6", calm))
    current = spans.AcceptedSpan(7, "/examples/7", 2, _statistics_dir(tmp_path, "s7", drifted))
    with pytest.raises(DataError, match=r"span 7 has drifted from span 6: item_id L-infinity "
                                        r"distance 0\.5\d+ \(threshold 0\.3\)"):
        check_drift(current, before, str(schema_dir), "block", 0.3, 0.2)
    warned = check_drift(current, before, str(schema_dir), "warn", 0.3, 0.2)
    assert {d.feature for d in warned if d.beyond} == {F.ITEM_ID}
    assert check_drift(current, before, str(schema_dir), "off", 0.3, 0.2) == []
    assert check_drift(current, None, str(schema_dir), "block", 0.3, 0.2) == []
    assert drift.summary(warned, 6).startswith("against span 6: item_id 0.5")


def test_unreadable_statistics_name_the_file(tmp_path):
    (tmp_path / "Split-train").mkdir()
    (tmp_path / "Split-train" / "FeatureStats.pb").write_bytes(b"\x00garbage")
    with pytest.raises(DataError, match="FeatureStats.pb cannot be read"):
        drift.load_statistics(str(tmp_path))
