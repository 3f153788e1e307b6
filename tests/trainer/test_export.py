"""Exports: loaded in a fresh process, signatures take raw features and match the in-memory
model; the retrieval eval signature's top-k hit matches numpy on the model's embeddings."""

import json

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline.errors import OutputError
from recsys_pipeline.trainer import export, inputs, models, ranking_trainer
from recsys_pipeline.trainer.export_metadata import ExportMetadata
from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams
from recsys_pipeline.transform import features as F
from tests.trainer.conftest import K, assert_unrated, rated_items


@pytest.fixture(scope="module")
def eval_batch(tiny, data):
    """The eval split as the Transform output has it (computed by Beam, not the export), in
    the order of the raw eval rows."""
    batch = {k: v.numpy() for k, v in next(iter(inputs.transformed_dataset(
        tiny.eval_files, data.feature_spec, 10_000))).items()}
    keys = list(zip(batch[F.USER_ID], batch[F.ITEM_ID], batch[F.TIMESTAMP], strict=True))
    order = [keys.index((r[F.USER_ID], r[F.ITEM_ID], r[F.TIMESTAMP]))
             for r in tiny.raw_eval_rows]
    return {k: v[order] for k, v in batch.items()}


@pytest.fixture(scope="module")
def ranking(data, tiny, tmp_path_factory):
    # Two members: the export must carry (and average) every member of an ensemble.
    hp = RankingHParams(epochs=2, ensemble=2)
    model, _, _ = ranking_trainer.train(data, hp, tiny.train_files, tiny.eval_files)
    path = tmp_path_factory.mktemp("export") / "ranking"
    ranking_trainer.export_model(model, data, str(path))
    return model, str(path)


def _raw(rows, key):
    return np.array([r[key] for r in rows])


def test_retrieval_serving_default_takes_raw_ids_and_matches_the_in_memory_model(
        retrieval, data, tiny, eval_batch, fresh_signature):
    model, path, _ = retrieval
    rows = tiny.raw_eval_rows
    got = fresh_signature(path, "serving_default", user_id=_raw(rows, F.USER_ID),
                          timestamp=_raw(rows, F.TIMESTAMP))
    candidates = model.candidate_tower(
        {k: tf.constant(v) for k, v in data.catalogue.features.items()}).numpy()
    queries = model.query_tower(eval_batch).numpy()
    scores = queries @ candidates.T
    expected = np.sort(scores, axis=1)[:, ::-1][:, :K]
    np.testing.assert_allclose(got["scores"], expected, rtol=1e-4, atol=1e-4)
    best = data.catalogue.item_ids[np.argmax(scores, axis=1)]
    assert (got["item_ids"][:, 0] == best).mean() > 0.95  # ties aside, the same top item
    titles = dict(zip(data.catalogue.item_ids, data.catalogue.titles, strict=True))
    assert all(titles[m] == t for m, t in zip(got["item_ids"].ravel(),
                                              got["item_titles"].ravel(), strict=True))
    assert got["known_user"].all()


def test_unknown_user_is_flagged(retrieval, fresh_signature):
    _, path, _ = retrieval
    got = fresh_signature(path, "serving_default", user_id=np.array([b"u0", b"nobody"]),
                          timestamp=np.array([880_000_000, 880_000_000]))
    assert got["known_user"].tolist() == [True, False]
    assert got["item_ids"].shape == (2, K)


def test_eval_signature_top_k_hit_equals_numpy_on_the_embeddings(
        retrieval, data, tiny, fresh_signature):
    model, path, _ = retrieval
    serialized = [f.numpy() for f in tf.data.TFRecordDataset(
        inputs.files(tiny.raw_eval_dir), compression_type="GZIP")]
    got = fresh_signature(path, "evaluate", examples=np.array(serialized, dtype=object))
    # numpy: the same examples' query embeddings (served signature) against the catalogue
    queries = fresh_signature(path, "query_embedding",
                              user_id=_raw(tiny.raw_eval_rows, F.USER_ID),
                              timestamp=_raw(tiny.raw_eval_rows, F.TIMESTAMP))["embedding"]
    loaded = tf.saved_model.load(path)
    candidates = loaded.candidate_embeddings.numpy()
    scores = queries @ candidates.T
    rows = data.catalogue.row_of()
    true = np.array([rows[r[F.ITEM_ID]] for r in tiny.raw_eval_rows])
    rank = (scores >= scores[np.arange(len(true)), true][:, None]).sum(axis=1) - 1
    np.testing.assert_array_equal(got["rank"], rank)
    assert abs(got["top_k_hit"].mean() - (rank < K).mean()) < 1e-6


def test_ranking_export_matches_the_in_memory_model(ranking, tiny, eval_batch,
                                                    fresh_signature):
    model, path = ranking
    rows = tiny.raw_eval_rows
    expected = model(eval_batch).numpy()
    served = fresh_signature(path, "serving_default", user_id=_raw(rows, F.USER_ID),
                             item_id=_raw(rows, F.ITEM_ID))
    np.testing.assert_allclose(served["rating"], expected, rtol=1e-4, atol=1e-4)
    serialized = [f.numpy() for f in tf.data.TFRecordDataset(
        inputs.files(tiny.raw_eval_dir), compression_type="GZIP")]
    evaluated = fresh_signature(path, "evaluate", examples=np.array(serialized, dtype=object))
    np.testing.assert_allclose(evaluated["rating"], expected, rtol=1e-4, atol=1e-4)


def test_ranking_ensemble_is_the_mean_of_separately_seeded_members(ranking, eval_batch, data,
                                                                   tiny):
    model, _ = ranking
    assert isinstance(model, models.RankingEnsemble) and len(model.members) == 2
    a, b = (member(eval_batch).numpy() for member in model.members)
    assert not np.allclose(a, b)  # seeds seed + 0 and seed + 1: other weights, other batches
    np.testing.assert_allclose(model(eval_batch).numpy(), (a + b) / 2, rtol=1e-5)
    expected = np.sqrt(np.mean(((a + b) / 2 - eval_batch[F.LABEL]) ** 2))
    assert ranking_trainer.eval_rmse(model, data, tiny.eval_files) == pytest.approx(expected,
                                                                                     rel=1e-4)


def test_one_network_reports_keras_val_rmse_which_equals_a_pass_over_the_eval_split(data, tiny):
    # train_and_export records Keras' last val_rmse for one network instead of another pass.
    model, history, _ = ranking_trainer.train(data, RankingHParams(epochs=1, ensemble=1),
                                              tiny.train_files, tiny.eval_files)
    assert history.history["val_rmse"][-1] == pytest.approx(
        ranking_trainer.eval_rmse(model, data, tiny.eval_files), rel=1e-4)


def test_ranking_unknown_item_gets_out_of_vocabulary_features(ranking, fresh_signature):
    _, path = ranking
    got = fresh_signature(path, "serving_default", user_id=np.array([b"u1", b"u1"]),
                          item_id=np.array([b"m1", b"no-such-item"]))
    assert np.isfinite(got["rating"]).all()


def test_metadata_travels_with_the_export(retrieval, data, tiny):
    _, path, metadata = retrieval
    assert export.read_metadata(path) == metadata
    assert metadata.vocab_sizes == data.sizes
    # The unknown users' fallback: recency-weighted by the default half-life, with counts.
    half_life = RetrievalHParams().popular_half_life_days
    assert half_life > 0
    assert [(p["item_id"].encode(), p["score"]) for p in metadata.popular] == [
        (m, round(s, 6)) for m, s in data.stats.recent_popular(100, half_life)]
    assert all(p["ratings"] == data.stats.item_counts[p["item_id"].encode()]
               for p in metadata.popular)
    assert metadata.latest_train_timestamp == max(r[F.TIMESTAMP] for r in tiny.raw_train_rows)


def test_an_export_written_with_movie_names_is_refused_not_misread(retrieval, tmp_path):
    _, path, metadata = retrieval
    old = json.loads(metadata.to_json())
    del old["names"]  # an export from before items were items: movie_ids, movie_id_index
    with pytest.raises(OutputError, match=r"the model at /old was written by an older "
                       r"recsys-pipeline \(movie names: movie_id, movie_ids\).*fresh --output-dir"):
        ExportMetadata.from_json(json.dumps(old), where="the model at /old")
    assert ExportMetadata.from_json(metadata.to_json()) == metadata


def test_eval_examples_with_users_and_items_unseen_in_train_are_scored(
        retrieval, ranking, tiny, fresh_signature):
    # Vocabularies come from the train split; eval may hold ids train never had. They map to
    # the out-of-vocabulary buckets: evaluated, not an error, and never a hit for an item
    # outside the catalogue.
    first = next(iter(tf.data.TFRecordDataset(inputs.files(tiny.raw_eval_dir),
                                              compression_type="GZIP"))).numpy()
    example = tf.train.Example.FromString(first)
    example.features.feature[F.USER_ID].bytes_list.value[:] = [b"user-never-seen"]
    unseen_user = example.SerializeToString()
    example.features.feature[F.ITEM_ID].bytes_list.value[:] = [b"item-never-seen"]
    unseen_both = example.SerializeToString()
    batch = np.array([unseen_user, unseen_both], dtype=object)
    got = fresh_signature(retrieval[1], "evaluate", examples=batch)
    assert got["top_k_hit"].shape == (2,) and got["top_k_hit"][1] == 0
    rated = fresh_signature(ranking[1], "evaluate", examples=batch)
    assert np.isfinite(rated["rating"]).all()


def test_rated_items_are_ragged_rows_per_sorted_user(data, tiny):
    users = data.stats.users.ids
    values, splits = inputs.rated_items(data.dataset(tiny.train_files, 64), users,
                                         data.catalogue)
    assert len(splits) == len(users) + 2 and splits[-1] == splits[-2]  # unknown user: empty
    rows = data.catalogue.row_of()
    for i, user in enumerate(users):
        expected = sorted(rows[r[F.ITEM_ID]] for r in tiny.raw_train_rows
                          if r[F.USER_ID] == user)
        assert values[splits[i]:splits[i + 1]].tolist() == expected
    assert len(values) == len(tiny.raw_train_rows)


def test_exclusion_serves_no_item_the_user_rated(retrieval, excluding, tiny, fresh_signature):
    users = np.array(sorted(rated_items(tiny)))
    request = {"user_id": users, "timestamp": np.full(len(users), 880_000_000)}
    plain = fresh_signature(retrieval[1], "serving_default", **request)["item_ids"]
    kept = fresh_signature(excluding[0], "serving_default", **request)
    rated = rated_items(tiny)
    # Without exclusion the tiny users' favourites are mostly items they rated ...
    assert sum(len(set(row) & rated[u]) for u, row in zip(users, plain, strict=True)) > 0
    # ... with it, none are; a user who rated all but n < K items gets n, then padding
    # marked by a score of -inf.
    assert_unrated(users, kept, rated, catalogue=20)
    assert excluding[1].exclude_rated["pairs"] == len(tiny.raw_train_rows)
    assert excluding[1].exclude_rated["max_per_user"] == max(len(v) for v in rated.values())


def test_exclusion_ranks_the_eval_item_among_unrated_items_only(retrieval, excluding, tiny,
                                                                  fresh_signature):
    serialized = np.array([f.numpy() for f in tf.data.TFRecordDataset(
        inputs.files(tiny.raw_eval_dir), compression_type="GZIP")], dtype=object)
    plain = fresh_signature(retrieval[1], "evaluate", examples=serialized)["rank"]
    kept = fresh_signature(excluding[0], "evaluate", examples=serialized)["rank"]
    assert (kept <= plain).all() and (kept < plain).any()


def test_dcn_multitask_ranking_export_matches_the_in_memory_model(data, tiny, eval_batch,
                                                                  tmp_path, fresh_signature):
    # The deep & cross network with the multitask loss: its Cross layers and id embeddings
    # must survive export and reload like the MLP's.
    hp = RankingHParams(epochs=1, ensemble=1, architecture="dcn", cross_projection_dim=4,
                        bias_terms=True, retrieval_weight=0.5)
    model, _, _ = ranking_trainer.train(data, hp, tiny.train_files, tiny.eval_files)
    path = tmp_path / "dcn"
    ranking_trainer.export_model(model, data, str(path))
    rows = tiny.raw_eval_rows
    served = fresh_signature(str(path), "serving_default", user_id=_raw(rows, F.USER_ID),
                             item_id=_raw(rows, F.ITEM_ID))
    np.testing.assert_allclose(served["rating"], model(eval_batch).numpy(), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.parametrize("row, expected_hit, expected_rank", [
    ([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1], [3, 2, 1, 0]),  # scores by column; k = 2
    ([0.5, 0.5, 0.5, 0.5], [0, 0, 0, 0], [3, 3, 3, 3]),  # constant: ties are never hits
    ([np.nan] * 4, [0, 0, 0, 0], None),  # NaN: a miss
    ([0.5, np.nan, 0.5, 0.9], [0, 0, 0, 1], None),  # a tie and a NaN positive miss
])
def test_top_k_hit_counts_ties_against_the_positive_and_misses_non_finite_scores(
        row, expected_hit, expected_rank):
    scores = tf.constant([row] * 4, tf.float32)
    got = export.top_k_hit(scores, tf.constant([0, 1, 2, 3], tf.int64), 2)
    np.testing.assert_array_equal(got["top_k_hit"].numpy(), expected_hit)
    if expected_rank is not None:
        np.testing.assert_array_equal(got["rank"].numpy(), expected_rank)
    # A row past the catalogue (an unknown item) is a miss whatever the scores.
    assert export.top_k_hit(scores[:1], tf.constant([9], tf.int64), 4)["top_k_hit"].numpy() == 0
