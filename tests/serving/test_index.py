"""The ScaNN index: settings scaled by catalogue size, recall against exact search, export."""

import dataclasses

import numpy as np
import pytest

from recsys_pipeline.serving import index
from recsys_pipeline.trainer import export


def test_exact_top_k_is_the_brute_force_order():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(7, 4)), rng.normal(size=(50, 4))
    got = index.exact_top_k(q, c, 5)
    np.testing.assert_array_equal(got, np.argsort(-(q @ c.T), axis=1)[:, :5])


def test_recall_at_k_counts_shared_ids_per_row():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert index.recall_at_k(exact, exact, 3) == 1.0
    assert index.recall_at_k(np.array([[3, 9, 1], [7, 8, 9]]), exact, 3) == pytest.approx(2 / 6)
    assert index.recall_at_k(np.array([[3, 9], [4, 8]]), exact, 1) == 0.5  # first column only


def test_recall_at_k_reads_minus_one_as_no_item():
    # An unfilled place is a miss, and matches no exact place that holds no item either.
    exact = np.array([[1, 2, 3], [4, -1, -1]])
    assert index.recall_at_k(np.array([[1, -1, -1], [4, -1, -1]]), exact, 3) == pytest.approx(
        2 / 4)


def test_exact_top_k_with_exclusion_skips_the_excluded_rows():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    c = np.array([[3.0, 0.0], [2.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    got = index.exact_top_k(q, c, 3, excluded=[np.array([0]), np.array([0, 1, 2])])
    np.testing.assert_array_equal(got[0], [1, 2, 3])
    np.testing.assert_array_equal(got[1], [3, -1, -1])  # one item left unrated


def test_without_excluded_keeps_the_search_order_of_the_rest():
    found = np.array([[5, 2, 7, 1, -1], [3, 4, -1, -1, -1]])
    got = index.without_excluded(found, [np.array([2, 1]), np.array([], np.int64)], 3)
    np.testing.assert_array_equal(got, [[5, 7, -1], [3, 4, -1]])


@pytest.mark.parametrize("size, leaves, search", [(1682, 41, 7), (1_000_000, 1000, 160),
                                                  (3, 2, 1)])
def test_automatic_settings_scale_with_the_catalogue(size, leaves, search):
    settings = index.IndexParams().resolved(size)
    assert settings.num_leaves == leaves and settings.num_leaves_to_search == search
    assert settings.k == min(100, size)
    # 50 x recall_k (10) rescored exactly: what bench/serving.py picked at 1M candidates.
    assert settings.num_reordering_candidates == min(500, size)


def test_benchmark_picks_are_the_defaults_at_the_benchmarked_size():
    # bench/serving.py, 1M candidates, k=10: 1000 leaves, 16% searched (the automatic
    # search's start; the tuner picked 12-14%), 500 reordered, 50 k-means iterations.
    settings = index.IndexParams(k=10).resolved(1_000_000)
    assert (settings.num_leaves, settings.num_leaves_to_search,
            settings.num_reordering_candidates, settings.training_iterations) == (
                1000, 160, 500, 50)


def test_scann_export_searching_every_leaf_serves_what_brute_force_serves(
        retrieval, tiny, tmp_path, fresh_signature):
    # Every leaf searched and every candidate reordered exactly: ScaNN must equal brute force
    # (a deterministic check; partial searches depend on ScaNN's randomized partitioning).
    _, path, _ = retrieval
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    params = index.IndexParams(k=5, recall_k=3, num_leaves=4, num_leaves_to_search=4)
    out = tmp_path / "scann"
    report = index.build_scann_export(path, str(out), params, users, [880_000_000] * len(users))
    assert report.recall == 1.0, report
    assert report.queries == len(users) // 2
    for method in ("scann", "brute_force"):  # measured, one query at a time
        timing = report.latency_ms[method]
        assert 0 < timing["p50"] <= timing["p99"], report.latency_ms
    assert export.read_metadata(str(out)).kind == "retrieval_scann"

    # In a fresh process (scann imported first, as a server must): the same top items.
    request = {"user_id": np.array(users, object), "timestamp": np.full(len(users), 880_000_000)}
    scann = fresh_signature(str(out), "serving_default", **request)
    exact = fresh_signature(path, "serving_default", **request)
    for a, b in zip(scann["item_ids"], exact["item_ids"], strict=True):
        assert set(a[:3]) == set(b[:3])
    assert scann["known_user"].all()


def test_configure_trains_kmeans_on_the_whole_catalogue():
    # ScaNN's default k-means sample is 100,000 points; at a million candidates that sample's
    # partitions need about twice the leaves searched for the same recall.
    import scann

    embeddings = np.zeros((250_000, 4), np.float32)
    settings = dataclasses.replace(index.IndexParams(k=10).resolved(len(embeddings)),
                                   training_iterations=7)
    builder = index.configure(scann.scann_ops_pybind.builder(embeddings, 10, "dot_product"),
                              settings, len(embeddings))
    partitioning = builder.create_config().split("hash {")[0]
    assert "expected_sample_size: 250000" in partitioning
    assert "max_clustering_iterations: 7" in partitioning
    assert f"max_spill_centers: {settings.num_leaves_to_search}" in partitioning


def test_automatic_search_widens_until_the_tuning_queries_clear_the_bound(retrieval, tiny,
                                                                          tmp_path):
    _, path, _ = retrieval
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    params = index.IndexParams(k=5, recall_k=3, num_leaves=4)
    report = index.build_scann_export(path, str(tmp_path / "auto"), params, users,
                                      [880_000_000] * len(users))
    steps = report.tuning
    searched = [s.num_leaves_to_search for s in steps]
    assert searched[0] == 1 and searched == sorted(set(searched)), steps
    target = params.min_recall + index.AUTO_MARGIN
    assert all(s.tuning_recall < target for s in steps[:-1]), steps
    assert steps[-1].tuning_recall >= target or searched[-1] == 4, steps
    # The gate's recall is measured on the other half of the queries.
    assert report.queries == len(users) // 2 and 0 <= report.recall <= 1


def test_explicit_settings_are_not_tuned(retrieval, tiny, tmp_path):
    _, path, _ = retrieval
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    params = index.IndexParams(k=5, recall_k=3, num_leaves=4, num_leaves_to_search=1)
    report = index.build_scann_export(path, str(tmp_path / "s"), params, users,
                                      [880_000_000] * len(users))
    assert report.tuning == () and report.settings.num_leaves_to_search == 1


def test_short_results_are_padded_with_minus_one_not_row_zero():
    # Three candidates rescored of ten asked for: ScaNN returns three and pads with row 0
    # (NaN score). Read raw, each padded place would be a hit on row 0.
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(60, 8)).astype("float32")
    settings = dataclasses.replace(
        index.IndexParams(k=10, num_leaves=4, num_leaves_to_search=4).resolved(60),
        num_reordering_candidates=3)
    layer = index.build_scann(embeddings, settings)
    found = index.scann_top_k(layer, rng.normal(size=(20, 8)).astype("float32"), 10)
    assert found.shape == (20, 10)
    assert (found[:, 3:] == -1).all(), found
    for row in found[:, :3]:
        assert len(set(row.tolist())) == 3 and (row >= 0).all(), found


def test_scann_export_marks_unfilled_places_with_minus_inf(retrieval, tiny, tmp_path,
                                                           fresh_signature, short_scann):
    # Every search fills short_scann of k=5 places: the served result keeps its width k and
    # marks the places the search could not fill with -inf, never NaN (which top_k and
    # clients would rank first).
    _, path, _ = retrieval
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    params = index.IndexParams(k=5, recall_k=3, num_leaves=4, num_leaves_to_search=4)
    out = tmp_path / "short"
    index.build_scann_export(path, str(out), params, users, [880_000_000] * len(users))
    got = fresh_signature(str(out), "serving_default", user_id=np.array(users, object),
                          timestamp=np.full(len(users), 880_000_000))
    scores = got["scores"]
    assert scores.shape == (len(users), 5) and not np.isnan(scores).any()
    assert np.isneginf(scores[:, short_scann:]).all(), scores
    assert np.isfinite(scores[:, :short_scann]).all(), scores
    for items in got["item_ids"][:, :short_scann]:
        assert len(set(items.tolist())) == short_scann
