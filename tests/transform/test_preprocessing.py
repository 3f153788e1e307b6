"""preprocessing_fn under tf.Transform's Beam implementation, against hand-computed values."""

import math
import pickle

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from recsys_pipeline.transform import features as F
from recsys_pipeline.transform.preprocessing import preprocessing_fn, title_tokens
from tests.conftest import beam_pipeline

BASE = 880_000_000  # Unix seconds in 1997, like MovieLens 100K: float32 would lose minutes
ROWS = [
    # user, item, title, genres, hours after BASE, rating, gender, age
    ("u1", "m1", "Alpha (1990)", ["Action", "Comedy"], 1, 5.0, "M", 24),
    ("u1", "m2", "Beta (1991)", ["Action"], 2, 4.0, "M", 24),
    ("u1", "m1", "Alpha (1990)", ["Action", "Comedy"], 3, 3.0, "M", 24),
    ("u2", "m3", "Gamma (1992)", ["Drama"], 4, 2.0, "F", 53),
    ("u2", "m1", "Alpha (1990)", ["Action", "Comedy"], 5, 1.0, "F", 53),
    ("u3", "m2", "Beta (1991)", ["Action"], 6, 4.5, "M", 31),
    ("u1", "m1", "Alpha (1990)", ["Action", "Comedy"], 7, 4.0, "M", 24),
    ("u2", "m2", "Beta (1991)", ["Action"], 8, 3.0, "F", 53),
]


# MovieLens' demographics, as its preset declares them: categorical user features.
GENDER, AGE = F.user_feature("gender"), F.user_feature("age")
DEMOGRAPHICS = {GENDER: "categorical", AGE: "categorical"}


def _raw(row):
    user, item, title, genres, hours, rating, gender, age = row
    return {F.USER_ID: user.encode(), F.ITEM_ID: item.encode(), F.ITEM_TITLE: title.encode(),
            F.ITEM_GENRES: [g.encode() for g in genres], F.TIMESTAMP: BASE + 3600 * hours,
            F.USER_RATING: rating, GENDER: [gender.encode()], AGE: [str(age).encode()]}


SPEC = {
    F.USER_ID: tf.io.FixedLenFeature([], tf.string),
    F.ITEM_ID: tf.io.FixedLenFeature([], tf.string),
    F.ITEM_TITLE: tf.io.FixedLenFeature([], tf.string),
    F.ITEM_GENRES: tf.io.VarLenFeature(tf.string),
    F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
    F.USER_RATING: tf.io.FixedLenFeature([], tf.float32),
    GENDER: tf.io.VarLenFeature(tf.string),
    AGE: tf.io.VarLenFeature(tf.string),
}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tft")
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(SPEC))
    with beam_pipeline() as p, tft_beam.Context(temp_dir=str(tmp / "tmp")):
        raw = p | beam.Create([_raw(r) for r in ROWS])
        (out, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, {"timestamp_buckets": 4,
                                                     F.DECLARED_FEATURES_CONFIG: DEMOGRAPHICS}))
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp / "tf"))
        _ = (out | beam.combiners.ToList()
             | beam.Map(lambda rows: (tmp / "rows.pkl").write_bytes(pickle.dumps(rows))))
    rows = pickle.loads((tmp / "rows.pkl").read_bytes())
    assert len(rows) == len(ROWS)
    return rows, tft.TFTransformOutput(str(tmp / "tf"))


def test_vocabularies_are_named_files_ordered_by_frequency(transformed):
    _, tft_out = transformed
    # user_id counts: u1 x4, u2 x3, u3 x1.  item_id: m1 x4, m2 x3, m3 x1.
    assert tft_out.vocabulary_by_name(F.USER_ID) == [b"u1", b"u2", b"u3"]
    assert tft_out.vocabulary_by_name(F.ITEM_ID) == [b"m1", b"m2", b"m3"]
    # genres counted per value across lists: Action 7, Comedy 4, Drama 1.
    assert tft_out.vocabulary_by_name(F.ITEM_GENRES) == [b"Action", b"Comedy", b"Drama"]
    assert tft_out.vocabulary_by_name(GENDER) == [b"M", b"F"]  # 5 M, 3 F
    assert tft_out.vocabulary_by_name(AGE) == [b"24", b"53", b"31"]
    assert tft_out.vocabulary_size_by_name(F.ITEM_TITLE) == 3


def test_ids_come_from_the_vocabularies(transformed):
    rows, tft_out = transformed
    users = tft_out.vocabulary_by_name(F.USER_ID)
    for row in rows:
        assert users[row[F.index_name(F.USER_ID)]] == row[F.USER_ID]
    first = min(rows, key=lambda r: r[F.TIMESTAMP_Z])  # hour 1: Alpha, Action + Comedy
    assert list(first[F.index_name(F.ITEM_GENRES)]) == [0, 1]
    drama = [r for r in rows if r[F.ITEM_ID] == b"m3"]
    assert [list(r[F.index_name(F.ITEM_GENRES)]) for r in drama] == [[2]]


def test_title_words_get_their_own_vocabulary(transformed):
    rows, tft_out = transformed
    words = tft_out.vocabulary_by_name(F.ITEM_TITLE_TOKENS)
    # Per rating: alpha and 1990 x4, beta and 1991 x3, gamma and 1992 x1 (ties by value).
    assert words == [b"alpha", b"1990", b"beta", b"1991", b"gamma", b"1992"]
    for row in rows:
        title = row[F.ITEM_TITLE].decode().lower().replace("(", "").replace(")", "")
        assert [words[i].decode() for i in row[F.TITLE_TOKENS_INDEX]] == title.split()
    assert tft_out.num_buckets_for_transformed_feature(F.TITLE_TOKENS_INDEX) == len(words) + 1


def test_title_tokens_are_lower_cased_words_and_digits():
    titles = tf.constant([["Star Wars: Episode IV - A New Hope (1977)"], ["Café Society (2016)"],
                          ["Se7en"], [""], ["  ...  "]])
    tokens = tf.sparse.to_dense(title_tokens(titles), default_value=b"").numpy()
    got = [[t.decode() for t in row if t] for row in tokens]
    assert got == [["star", "wars", "episode", "iv", "a", "new", "hope", "1977"],
                   ["café", "society", "2016"], ["se7en"], [], []]


def test_timestamp_quantile_buckets(transformed):
    rows, _ = transformed
    # 8 distinct hours, 4 buckets -> boundaries at hours 3, 5, 7: two ratings per bucket.
    got = sorted((r[F.TIMESTAMP_Z], r[F.TIMESTAMP_BUCKET]) for r in rows)
    assert [b for _, b in got] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_timestamp_z_score_matches_hand_computation(transformed):
    rows, _ = transformed
    hours = [r[4] for r in ROWS]
    mean = sum(hours) / len(hours)  # 4.5
    std = math.sqrt(sum((h - mean) ** 2 for h in hours) / len(hours))  # population std
    expected = sorted((h - mean) / std for h in hours)  # BASE cancels out exactly
    got = sorted(float(r[F.TIMESTAMP_Z]) for r in rows)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_label_and_raw_ids_pass_through(transformed):
    rows, _ = transformed
    assert sorted(float(r[F.LABEL]) for r in rows) == sorted(r[5] for r in ROWS)
    assert sorted(r[F.ITEM_TITLE] for r in rows) == sorted(r[2].encode() for r in ROWS)


def test_layout_without_demographics_skips_their_vocabularies(tmp_path):
    spec = {k: v for k, v in SPEC.items() if k not in DEMOGRAPHICS}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    rows = [{k: v for k, v in _raw(r).items() if k in spec} for r in ROWS]
    with beam_pipeline() as p, tft_beam.Context(temp_dir=str(tmp_path)):
        (out, meta), _ = (p | beam.Create(rows), metadata) | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: preprocessing_fn(inputs, {"timestamp_buckets": 2}))
    names = set(meta.dataset_metadata.schema.feature[i].name
                for i in range(len(meta.dataset_metadata.schema.feature)))
    assert F.index_name(GENDER) not in names and F.index_name(F.USER_ID) in names


# Declared item features of m1, m2, m3, one of each kind ("" / None: the item has no value).
ITEMS = {
    "m1": {"brand": "acme", "tags": ["red", "big"], "blurb": "Fast Car!", "price": 10.0,
           "weight": math.e - 1},
    "m2": {"brand": "zeta", "tags": ["red"], "blurb": None, "price": 20.0,
           "weight": math.e ** 2 - 1},
    "m3": {"brand": None, "tags": ["blue"], "blurb": "fast boat", "price": 40.0,
           "weight": None},
}
KINDS = {"brand": "categorical", "tags": "multi_categorical", "blurb": "text",
         "price": "numeric", "weight": "log_numeric"}


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("declared")
    spec = {k: v for k, v in SPEC.items() if k not in DEMOGRAPHICS}
    for column, kind in KINDS.items():
        dtype = tf.float32 if "numeric" in kind else tf.string
        spec[F.item_feature(column)] = tf.io.VarLenFeature(dtype)
    spec[F.WEIGHT] = tf.io.FixedLenFeature([], tf.float32)
    rows = []
    for i, row in enumerate(ROWS):
        raw = {k: v for k, v in _raw(row).items() if k in spec}
        for column, value in ITEMS[row[1]].items():
            values = [] if value is None else value if isinstance(value, list) else [value]
            raw[F.item_feature(column)] = [v.encode() if isinstance(v, str) else v
                                           for v in values]
        raw[F.WEIGHT] = 0.5 * i
        rows.append(raw)
    config = {"timestamp_buckets": 2,
              F.DECLARED_FEATURES_CONFIG: {F.item_feature(c): k for c, k in KINDS.items()}}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with beam_pipeline() as p, tft_beam.Context(temp_dir=str(tmp / "tmp")):
        (out, _), transform_fn = (p | beam.Create(rows), metadata) | \
            tft_beam.AnalyzeAndTransformDataset(lambda inputs: preprocessing_fn(inputs, config))
        _ = transform_fn | tft_beam.WriteTransformFn(str(tmp / "tf"))
        _ = (out | beam.combiners.ToList()
             | beam.Map(lambda rows: (tmp / "rows.pkl").write_bytes(pickle.dumps(rows))))
    transformed = pickle.loads((tmp / "rows.pkl").read_bytes())
    by_item = {r[F.ITEM_ID].decode(): r for r in transformed}
    return by_item, tft.TFTransformOutput(str(tmp / "tf")), transformed


def _ids(row, column, vocabulary):
    return [vocabulary[i].decode() for i in row[F.index_name(F.item_feature(column))]]


def test_declared_categorical_and_multi_categorical_features_get_vocabularies(declared):
    rows, tft_out, _ = declared
    brands = tft_out.vocabulary_by_name(F.item_feature("brand"))
    assert brands == [b"acme", b"zeta"]  # per rating: acme 4, zeta 3; m3 has none
    assert [_ids(rows[m], "brand", brands) for m in ("m1", "m2", "m3")] == [
        ["acme"], ["zeta"], []]
    tags = tft_out.vocabulary_by_name(F.item_feature("tags"))
    assert tags == [b"red", b"big", b"blue"]  # red 4 + 3, big 4, blue 1
    assert _ids(rows["m1"], "tags", tags) == ["red", "big"]
    assert tft_out.num_buckets_for_transformed_feature(
        F.index_name(F.item_feature("tags"))) == 3 + F.NUM_OOV_BUCKETS


def test_declared_text_feature_is_a_bag_of_lower_cased_words(declared):
    rows, tft_out, _ = declared
    words = tft_out.vocabulary_by_name(F.item_feature("blurb"))
    assert words == [b"fast", b"car", b"boat"]  # fast 4 + 1, car 4, boat 1
    assert [_ids(rows[m], "blurb", words) for m in ("m1", "m2", "m3")] == [
        ["fast", "car"], [], ["fast", "boat"]]


def test_declared_numeric_features_are_z_scores_and_missing_is_the_mean(declared):
    rows, _, _ = declared
    counts = {"m1": 4, "m2": 3, "m3": 1}
    for column, transform in (("price", lambda x: x), ("weight", math.log1p)):
        present = [m for m in counts if ITEMS[m][column] is not None]
        values = np.repeat([transform(ITEMS[m][column]) for m in present],
                           [counts[m] for m in present])
        mean, std = values.mean(), values.std()
        for item in counts:
            value = ITEMS[item][column]
            expected = 0.0 if value is None else (transform(value) - mean) / std
            got = float(rows[item][F.numeric_name(F.item_feature(column))])
            assert got == pytest.approx(expected, abs=1e-5), (column, item)
    # log1p(e - 1) = 1 and log1p(e^2 - 1) = 2: the log was taken before the z-score.
    weights = [float(rows[m][F.numeric_name(F.item_feature("weight"))]) for m in ("m1", "m2")]
    assert weights[0] == pytest.approx(-math.sqrt(3 / 4), abs=1e-5)
    assert weights[1] == pytest.approx(math.sqrt(4 / 3), abs=1e-5)


def test_a_declared_weight_passes_through_unchanged(declared):
    _, tft_out, transformed = declared
    assert sorted(float(r[F.WEIGHT]) for r in transformed) == [0.5 * i for i in range(len(ROWS))]
    assert tft_out.transformed_feature_spec()[F.WEIGHT].dtype == tf.float32
