"""The two-stage recommender against numpy over its two stages, called apart."""

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline.errors import OutputError
from recsys_pipeline.serving import two_stage
from recsys_pipeline.trainer import export
from tests.serving.conftest import CANDIDATES, WHEN
from tests.trainer.conftest import rated_items


@pytest.fixture(scope="module")
def saved(stages, tmp_path_factory):
    """The two-stage export saved over brute force and over ScaNN (rank_weight 1), loaded."""
    retrieval_dir, scann_dir, ranking_dir = stages
    root = tmp_path_factory.mktemp("recommender")
    out = {}
    for name, source in (("brute_force", retrieval_dir), ("scann", scann_dir)):
        two_stage.build(source, ranking_dir, str(root / name), 1.0)
        out[name] = tf.saved_model.load(str(root / name)).signatures["serving_default"]
    return out


def _zscore(x):
    std = x.std()
    return (x - x.mean()) / (std if std > 0 else 1.0)


def _expected(retrieval_dir, ranking_dir, user, k, rank_weight, rated):
    """The two stages called apart and merged in numpy: (item ids, final scores)."""
    retrieved = tf.saved_model.load(retrieval_dir).signatures["serving_default"](
        user_id=tf.constant([user]), timestamp=tf.constant([WHEN], tf.int64))
    ids = retrieved["item_ids"].numpy()[0]
    scores = retrieved["scores"].numpy()[0]
    keep = np.isfinite(scores) & ~np.isin(ids, list(rated))
    ids, scores = ids[keep], scores[keep]
    ratings = tf.saved_model.load(ranking_dir).signatures["serving_default"](
        user_id=tf.constant([user] * len(ids)), item_id=tf.constant(ids))["rating"]
    ratings = ratings.numpy().reshape(-1)
    final = rank_weight * _zscore(ratings) + (1 - rank_weight) * _zscore(scores)
    order = np.argsort(-final, kind="stable")[:k]
    return ids[order], final[order]


@pytest.mark.parametrize("rank_weight", [1.0, 0.5, 0.0])
def test_the_list_is_retrieval_less_rated_items_ranked_by_the_blend(stages, saved, tiny,
                                                                     rank_weight):
    retrieval_dir, _, ranking_dir = stages
    module = two_stage.load(retrieval_dir, ranking_dir, rank_weight)  # in memory, unsaved
    served = saved["brute_force"] if rank_weight == 1.0 else module.serve
    rated = rated_items(tiny)
    users = sorted(rated)[:6]
    k = 5
    got = served(user_id=tf.constant(users),
                 timestamp=tf.constant([WHEN] * len(users), tf.int64),
                 k=tf.constant([k] * len(users), tf.int64))
    for i, user in enumerate(users):
        ids, final = _expected(retrieval_dir, ranking_dir, user, k, rank_weight, rated[user])
        np.testing.assert_array_equal(got["item_ids"].numpy()[i][:len(ids)], ids)
        np.testing.assert_allclose(got["scores"].numpy()[i][:len(ids)], final, rtol=1e-4,
                                   atol=1e-4)  # float32 sums
        assert not set(got["item_ids"].numpy()[i]) & rated[user]
    assert got["known_user"].numpy().all()


def test_the_scann_variant_serves_the_same_lists(saved, tiny):
    users = sorted(rated_items(tiny))[:6]
    request = dict(user_id=tf.constant(users), timestamp=tf.constant([WHEN] * 6, tf.int64),
                   k=tf.constant([5] * 6, tf.int64))
    # Every leaf searched over the whole catalogue: ScaNN finds what brute force finds.
    np.testing.assert_array_equal(saved["brute_force"](**request)["item_ids"].numpy(),
                                  saved["scann"](**request)["item_ids"].numpy())


def test_an_unknown_user_gets_the_popular_fallback_flagged(stages, saved):
    retrieval_dir = stages[0]
    got = saved["scann"](
        user_id=tf.constant(["nobody"]), timestamp=tf.constant([0], tf.int64),
        k=tf.constant([3], tf.int64))
    popular = [p["item_id"].encode() for p in export.read_metadata(retrieval_dir).popular[:3]]
    assert got["known_user"].numpy().tolist() == [False]
    assert got["item_ids"].numpy()[0].tolist() == popular


@pytest.mark.parametrize("user_id, k, message", [
    (["u1"], [0], "k: must be at least 1"),
    (["u1"], [CANDIDATES + 1], f"k: above the {CANDIDATES} candidates"),
    (["u1", "u2"], [3, 4], "k: one value for every row"),
    ([""], [3], "user_id: an empty user id"),
    (["u" * 300], [3], "user_id: longer than 256 characters"),
])
def test_bad_requests_name_the_input(saved, user_id, k, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        saved["brute_force"](user_id=tf.constant(user_id),
                             timestamp=tf.constant([WHEN] * len(user_id), tf.int64),
                             k=tf.constant(k, tf.int64))


def test_a_retrieval_export_without_rated_items_is_refused(retrieval, stages):
    _, path, _ = retrieval
    with pytest.raises(OutputError, match="no rated items"):
        two_stage.load(path, stages[2], 1.0)


def test_seen_holds_each_users_catalogue_rows_once_and_drops_unknown_items():
    ids = np.array([b"m2", b"m0", b"m1"], object)
    seen = two_stage.Seen.of(np.array([b"b", b"a", b"b", b"a", b"b"], object),
                             np.array([b"m1", b"m0", b"m1", b"zz", b"m2"], object), ids)
    assert seen.users.tolist() == [b"a", b"b"]
    # a: m0 (row 1); b: m2 (row 0) and m1 (row 2), once, sorted by row
    assert seen.rows.tolist() == [1, 0, 2] and seen.splits.tolist() == [0, 1, 3]
    assert seen.pairs == 3


def test_served_lists_drop_every_seen_item_while_the_gate_drops_the_train_ones(stages, tiny):
    retrieval_dir, _, ranking_dir = stages
    train_rated = rated_items(tiny)
    users = sorted(train_rated)[:6]
    plain = two_stage.load(retrieval_dir, ranking_dir, 0.5)
    request = dict(user_id=tf.constant(users + [b"newcomer"]),
                   timestamp=tf.constant([WHEN] * 7, tf.int64), k=tf.constant([5] * 7, tf.int64))
    before = plain.serve(**request)["item_ids"].numpy()
    # Each user has also seen (say, in the eval split) the top two items served so far; the
    # newcomer, unknown to the model, has seen the two most popular items.
    extra = {u: set(before[i][:2]) for i, u in enumerate(users)}
    extra[b"newcomer"] = set(before[6][:2])
    pairs = [(u, m) for u, ms in train_rated.items() for m in ms]
    pairs += [(u, m) for u, ms in extra.items() for m in ms]
    ids = plain.base.candidate_ids.numpy()
    module = plain.excluding(two_stage.Seen.of(np.array([u for u, _ in pairs], object),
                                               np.array([m for _, m in pairs], object), ids))
    served = module.serve(**request)["item_ids"].numpy()
    for i, user in enumerate(users + [b"newcomer"]):
        got = set(served[i]) - {b""}
        assert not got & (train_rated.get(user, set()) | extra[user]), user
        assert got, user
    # The newcomer's fallback is the popular list less what they saw, in its order.
    assert served[6][:3].tolist() == before[6][2:5].tolist()
    np.testing.assert_array_equal(module.gate_serve(**request)["item_ids"].numpy(), before)
