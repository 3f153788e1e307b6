"""The ScaNN export: exclusion of rated items served through the index, the recall gate
measured on what is served, and ScaNN's padding read as "no item"."""

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline.serving import index, scann_export
from recsys_pipeline.trainer import export
from tests.trainer.conftest import K, assert_unrated, rated_items


def _index_excluding(excluding, tiny, out, leaves_searched):
    """(users, index report) of a four-leaf ScaNN export of the ``excluding`` model."""
    users = sorted(u.decode() for u in rated_items(tiny))
    params = index.IndexParams(k=K, recall_k=3, num_leaves=4,
                               num_leaves_to_search=leaves_searched)
    return users, index.build_scann_export(excluding, str(out), params, users,
                                           [880_000_000] * len(users))


def test_scann_export_with_exclusion_serves_no_rated_item(excluding, tiny, tmp_path,
                                                           fresh_signature):
    out = tmp_path / "scann"
    users, report = _index_excluding(excluding[0], tiny, out, leaves_searched=4)
    # The index returns enough candidates to drop each user's rated items from.
    assert report.settings.k == min(20, K + excluding[1].exclude_rated["max_per_user"])
    got = fresh_signature(str(out), "serving_default", user_id=np.array(users, object),
                          timestamp=np.full(len(users), 880_000_000))
    assert got["item_ids"].shape == (len(users), K)
    assert_unrated([u.encode() for u in users], got, rated_items(tiny), catalogue=20)
    assert export.read_metadata(str(out)).serving_k == K


def test_scann_recall_with_exclusion_is_that_of_what_is_served(excluding, tiny, tmp_path,
                                                                fresh_signature):
    # The served top-k after exclusion comes from deeper in the index's ranking than its raw
    # top-k: the gate's recall must be the served ScaNN list's against the served brute-force
    # list, on the held-out (odd) queries.
    out = tmp_path / "scann"
    users, report = _index_excluding(excluding[0], tiny, out, leaves_searched=1)
    assert report.recall_of == "served, rated items excluded"
    # Every user in one request, as the indexer embeds them: a batch of another size gives
    # query embeddings a few 1e-7 apart (measured), enough to move a query across a leaf's
    # boundary when one leaf of four is searched. The held-out users' lists are then graded.
    request = {"user_id": np.array(users, object), "timestamp": np.full(len(users), 880_000_000)}

    def top(served):
        return [set(m[:3][np.isfinite(s[:3])])
                for m, s in zip(served["item_ids"][1::2], served["scores"][1::2], strict=True)]

    approximate = top(fresh_signature(str(out), "serving_default", **request))
    exact = top(fresh_signature(excluding[0], "serving_default", **request))
    hits = sum(len(a & e) for a, e in zip(approximate, exact, strict=True))
    assert report.recall == pytest.approx(hits / sum(len(e) for e in exact))


def test_scann_results_score_the_padding_minus_inf_at_width_k():
    # What the TFRS ScaNN layer returns when one query of a batch finds fewer candidates than
    # the others: the batch cut to the longest result, the short row padded with row 0, NaN.
    scores = tf.constant([[3.0, 2.0, np.nan], [5.0, 4.0, 1.0]])
    rows = tf.constant([[7, 8, 0], [1, 2, 3]], tf.int64)
    padded_scores, padded_rows = scann_export.scann_results(scores, rows, 5)
    ninf = -np.inf
    np.testing.assert_array_equal(padded_scores.numpy(),
                                  [[3, 2, ninf, ninf, ninf], [5, 4, 1, ninf, ninf]])
    np.testing.assert_array_equal(padded_rows.numpy()[:, :3], [[7, 8, 0], [1, 2, 3]])
    assert padded_rows.shape == (2, 5)
