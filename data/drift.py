"""Drift between a new span and the one before it, measured by TFDV's drift comparators.

A scheduled run should notice when today's data looks unlike yesterday's before it trains on
it: a logging bug that sends every rating to one item, a client that rates everything 5.
TFDV compares two statistics sets feature by feature: the L-infinity distance of the value
shares for categorical features (the item id: the largest change of any one value's share,
so an item taking half the ratings shows as ~0.5), and the Jensen-Shannon divergence of the
histograms for numeric ones (the rating). Thresholds come from the curated schema's
``drift_comparator`` where it sets one, else from ``[validation]``.

The user id is compared only where the schema asks for it: which users are active changes
from day to day by nature (one MovieLens user's session can be 29% of a 1,200-rating span
and absent from the next), so its distance says little about a fault.

Pure: statistics and schema protos in, ``Distance`` records out. The SpanWindow component
decides what to do with them (block, warn), since it is the one that knows the spans.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from recsys_pipeline.transform import features as F

CATEGORICAL = (F.ITEM_ID,)
NUMERIC = (F.USER_RATING,)
L_INFINITY, JENSEN_SHANNON = "L-infinity", "Jensen-Shannon"
# The split whose statistics are compared: every ingested span has one.
COMPARED_SPLIT = "train"


@dataclasses.dataclass(frozen=True)
class Distance:
    """One feature's drift from the previous span."""

    feature: str
    measure: str  # L_INFINITY or JENSEN_SHANNON
    value: float
    threshold: float

    @property
    def beyond(self) -> bool:
        return self.value > self.threshold

    def describe(self) -> str:
        return (f"{self.feature} {self.measure} distance {self.value:.4f} "
                f"(threshold {self.threshold:g})")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def with_comparators(schema, categorical_threshold: float, numeric_threshold: float):
    """A copy of ``schema`` with a drift comparator on every compared feature that has none."""
    schema = type(schema).FromString(schema.SerializeToString())
    for feature in schema.feature:
        if feature.HasField("drift_comparator"):
            continue
        if feature.name in CATEGORICAL:
            feature.drift_comparator.infinity_norm.threshold = categorical_threshold
        elif feature.name in NUMERIC:
            feature.drift_comparator.jensen_shannon_divergence.threshold = numeric_threshold
    return schema


def distances(current, previous, schema) -> list[Distance]:
    """Every compared feature's distance between two statistics sets (``DatasetFeature
    StatisticsList`` protos), under ``schema``'s comparators (see ``with_comparators``)."""
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    anomalies = tfdv.validate_statistics(current, schema, previous_statistics=previous)
    names = {anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: L_INFINITY,
             anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE:
                 JENSEN_SHANNON}
    found = []
    for info in anomalies.drift_skew_info:
        for m in info.drift_measurements:
            found.append(Distance(".".join(info.path.step), names.get(m.type, str(m.type)),
                                  round(float(m.value), 6), float(m.threshold)))
    return sorted(found, key=lambda d: d.feature)


def load_statistics(statistics_uri: str, split: str = COMPARED_SPLIT):
    """A StatisticsGen output's statistics of one split."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    from google.protobuf.message import DecodeError

    from recsys_pipeline.errors import DataError

    path = os.path.join(statistics_uri, f"Split-{split}", "FeatureStats.pb")
    try:
        return tfdv.load_stats_binary(path)
    except (OSError, tf.errors.OpError, DecodeError) as e:
        raise DataError(f"the statistics {path} cannot be read ({type(e).__name__}: {e}); "
                        "ingest that span again with recsys run --span N --reingest") from e


def summary(found: list[Distance], against: Optional[int]) -> str:
    """One line for the run summary and the window's property."""
    if against is None:
        return "no earlier span to compare with"
    shown = ", ".join(f"{d.feature} {d.value:.3f}{' BEYOND' if d.beyond else ''}"
                      for d in found)
    return f"against span {against}: {shown or 'no compared features'}"
