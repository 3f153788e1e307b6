"""The schema of a declared log, generated from its declaration (pipeline/schema.py)."""

import os

import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from recsys_pipeline.data.declaration import InteractionsLayout
from recsys_pipeline.pipeline import schema
from recsys_pipeline.transform import features as F

LAYOUT = InteractionsLayout(
    items_file="items.csv", min_rating=0.5, max_rating=10.0,
    item_features=["brand:categorical", "tags:multi_categorical", "blurb:text",
                   "price:numeric", "weight:log_numeric"])


def _schema(layout: InteractionsLayout = LAYOUT) -> schema_pb2.Schema:
    proto = schema_pb2.Schema()
    text_format.Parse(schema.declared_schema(layout, open(schema.base_schema_path()).read()),
                      proto)
    return proto


def test_declared_features_and_the_rating_range_are_in_the_schema():
    features = {f.name: f for f in _schema().feature}
    # The canonical features, as checked in.
    base = tfdv.load_schema_text(schema.base_schema_path())
    assert {f.name for f in base.feature} < set(features)
    rating = features[F.USER_RATING]
    assert (rating.float_domain.min, rating.float_domain.max) == (0.5, 10.0)
    kinds = {name: (f.type, f.value_count.max if f.HasField("value_count") else None,
                    f.presence.min_fraction)
             for name, f in features.items() if F.is_item_feature(name)}
    assert kinds == {
        "item_feature_brand": (schema_pb2.BYTES, 1, 0.0),
        "item_feature_tags": (schema_pb2.BYTES, 0, 0.0),  # 0: no upper bound
        "item_feature_blurb": (schema_pb2.BYTES, 1, 0.0),
        "item_feature_price": (schema_pb2.FLOAT, 1, 0.0),
        "item_feature_weight": (schema_pb2.FLOAT, 1, 0.0),
    }
    assert features["item_feature_weight"].float_domain.min == 0.0
    assert not features["item_feature_price"].HasField("float_domain")


def test_examples_are_checked_against_the_generated_schema():
    def anomalies(**changed):
        row = {"user_id": ["u"], "item_id": ["m"], "item_title": ["t"],
               "item_genres": [["g"]], "timestamp": [1], "user_rating": [4.0],
               "item_feature_price": [2.5], "item_feature_weight": [1.0], **changed}
        stats = tfdv.generate_statistics_from_dataframe(pd.DataFrame(row))
        return set(tfdv.validate_statistics(stats, _schema()).anomaly_info)

    assert anomalies() == set()
    assert anomalies(item_feature_weight=[-1.0]) == {"item_feature_weight"}
    assert anomalies(user_rating=[11.0]) == {"user_rating"}


def test_a_declared_weight_is_a_required_non_negative_number_of_the_schema():
    assert F.WEIGHT not in {f.name for f in _schema().feature}
    weighted = _schema(InteractionsLayout(items_file="items.csv", weight_column="plays"))
    weight = {f.name: f for f in weighted.feature}[F.WEIGHT]
    assert (weight.type, weight.float_domain.min, weight.presence.min_fraction,
            [d.size for d in weight.shape.dim]) == (schema_pb2.FLOAT, 0.0, 1.0, [1])

    def anomalies(**changed):
        row = {"user_id": ["u"], "item_id": ["m"], "item_title": ["t"],
               "item_genres": [["g"]], "timestamp": [1], "user_rating": [4.0],
               F.WEIGHT: [2.0], **changed}
        stats = tfdv.generate_statistics_from_dataframe(pd.DataFrame(row))
        return set(tfdv.validate_statistics(stats, weighted).anomaly_info)

    assert anomalies() == set()
    assert anomalies(**{F.WEIGHT: [-0.5]}) == {F.WEIGHT}


def test_the_schema_file_is_named_by_its_content_under_the_pipeline_root(tmp_path):
    path = schema.write_declared_schema(LAYOUT, str(tmp_path))
    assert os.path.dirname(path) == str(tmp_path / schema.SCHEMA_DIR)
    assert tfdv.load_schema_text(path).feature  # what ImportSchemaGen reads
    assert schema.write_declared_schema(LAYOUT, str(tmp_path)) == path
    other = InteractionsLayout(items_file="items.csv", item_features=["brand:text"])
    assert schema.write_declared_schema(other, str(tmp_path)) != path
    assert len(tf.io.gfile.listdir(str(tmp_path / schema.SCHEMA_DIR))) == 2


def test_a_base_schema_without_a_rating_is_refused():
    with pytest.raises(ValueError, match="no user_rating"):
        schema.declared_schema(LAYOUT, 'feature { name: "user_id" type: BYTES }')
