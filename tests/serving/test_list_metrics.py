"""NDCG@k and coverage of recommended lists against hand-computed values."""

import math

import numpy as np
import pytest

from recsys_pipeline.serving import list_metrics
from recsys_pipeline.serving.list_metrics import ListEvaluation


def test_ndcg_is_dcg_of_the_list_over_dcg_of_the_users_own_ratings_best_first():
    lists = [[b"a", b"b", b"c"], [b"d", b"x", b""]]
    relevant = [{b"b": 5.0, b"c": 3.0, b"d": 4.0}, {b"d": 2.0}]
    dcg = 5 / math.log2(3) + 3 / math.log2(4)
    ideal = 5 + 4 / math.log2(3) + 3 / math.log2(4)
    per_user = list_metrics.ndcg_per_user(lists, relevant, 3)
    np.testing.assert_allclose(per_user, [dcg / ideal, 1.0])
    assert list_metrics.ndcg(lists, relevant, 3) == pytest.approx((dcg / ideal + 1) / 2)


def test_only_the_first_k_places_count_and_the_ideal_is_cut_at_k_too():
    relevant = [{b"a": 1.0, b"b": 5.0}]
    # k = 1: the best single item is b (5); a list opening with a gains 1 of 5.
    assert list_metrics.ndcg([[b"a", b"b"]], relevant, 1) == pytest.approx(1 / 5)
    assert list_metrics.ndcg([[b"b", b"a"]], relevant, 1) == pytest.approx(1.0)


def test_a_user_without_relevant_items_scores_zero_and_mismatched_inputs_are_refused():
    assert list_metrics.ndcg_per_user([[b"a"]], [{}], 10).tolist() == [0.0]
    with pytest.raises(ValueError, match="2 lists for 1 users"):
        list_metrics.ndcg([[b"a"], [b"b"]], [{}], 10)


def test_coverage_counts_distinct_items_and_ignores_unfilled_places():
    assert list_metrics.coverage([[b"a", b"b", b""], [b"b", b"c", b""]], 10) == 0.3
    with pytest.raises(ValueError, match="catalogue is empty"):
        list_metrics.coverage([[b"a"]], 0)


def test_the_evaluation_round_trips_through_its_file(tmp_path):
    found = ListEvaluation({"candidate": {"ndcg_at_10": 0.25}}, ["why not"])
    assert not ListEvaluation.exists(str(tmp_path))
    found.write(str(tmp_path))
    assert ListEvaluation.exists(str(tmp_path))
    assert ListEvaluation.read(str(tmp_path)) == found
    assert list_metrics.ndcg_metric(10) == "ndcg_at_10"


def test_relevance_asks_each_user_once_at_their_first_time_with_every_rating(tmp_path):
    import tensorflow as tf

    from recsys_pipeline.transform import features as F

    def example(user, item, rating, when):
        feature = {F.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[user])),
                   F.ITEM_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[item])),
                   F.USER_RATING: tf.train.Feature(float_list=tf.train.FloatList(value=[rating])),
                   F.TIMESTAMP: tf.train.Feature(int64_list=tf.train.Int64List(value=[when]))}
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    with tf.io.TFRecordWriter(str(tmp_path / "part.gz"), options="GZIP") as w:
        for row in [(b"u2", b"m1", 4.0, 30), (b"u1", b"m2", 5.0, 20), (b"u2", b"m3", 1.0, 10)]:
            w.write(example(*row))
    users, timestamps, gains = list_metrics.relevance(str(tmp_path))
    assert users == [b"u1", b"u2"] and timestamps == [20, 10]
    assert gains == [{b"m2": 5.0}, {b"m1": 4.0, b"m3": 1.0}]
