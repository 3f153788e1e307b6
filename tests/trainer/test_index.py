"""The ScaNN index: settings scaled by catalogue size, recall against exact search, export."""

import numpy as np
import pytest

from recsys_pipeline.trainer import export, index


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


@pytest.mark.parametrize("size, leaves, search", [(1682, 41, 10), (1_000_000, 1000, 250),
                                                  (3, 2, 1)])
def test_automatic_settings_scale_with_the_catalogue(size, leaves, search):
    settings = index.IndexParams().resolved(size)
    assert settings["num_leaves"] == leaves and settings["num_leaves_to_search"] == search
    assert settings["k"] == min(100, size)
    assert settings["num_reordering_candidates"] == min(max(100, 4 * settings["k"]), size)


def test_scann_export_meets_the_recall_bound_against_brute_force(retrieval, tiny, tmp_path,
                                                                 fresh_signature):
    _, path, _ = retrieval
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    params = index.IndexParams(k=5, recall_k=3, num_leaves=4)
    out = tmp_path / "scann"
    report = index.build_scann_export(path, str(out), params, users, [880_000_000] * len(users))
    assert report["recall"] >= params.min_recall, report
    assert report["tuning"] and report["queries"] == len(users) // 2
    for method in ("scann", "brute_force"):  # measured, one query at a time
        timing = report["latency_ms"][method]
        assert 0 < timing["p50"] <= timing["p99"], report["latency_ms"]
    assert export.read_metadata(str(out))["kind"] == "retrieval_scann"

    # In a fresh process (scann imported first, as a server must): same top movies as exact.
    request = {"user_id": np.array(users, object), "timestamp": np.full(len(users), 880_000_000)}
    scann = fresh_signature(str(out), "serving_default", **request)
    exact = fresh_signature(path, "serving_default", **request)
    found = [len(set(a[:3]) & set(b[:3])) for a, b in
             zip(scann["movie_ids"], exact["movie_ids"], strict=True)]
    assert sum(found) / (3 * len(found)) >= params.min_recall
    assert scann["known_user"].all()


def test_explicit_settings_are_not_tuned(retrieval, tiny, tmp_path):
    _, path, _ = retrieval
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    params = index.IndexParams(k=5, recall_k=3, num_leaves=4, num_leaves_to_search=1)
    report = index.build_scann_export(path, str(tmp_path / "s"), params, users,
                                      [880_000_000] * len(users))
    assert report["tuning"] == [] and report["settings"]["num_leaves_to_search"] == 1
