"""The GRU4Rec Trainer on the tiny Transform output: it trains, and its export, loaded in a
fresh process, reads contexts from the train history it carries exactly as training did."""

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline.trainer import inputs, sequential_trainer
from recsys_pipeline.trainer.common import load_training_data
from recsys_pipeline.trainer.hparams import SequentialHParams
from recsys_pipeline.transform import features as F

K = 5
LENGTH = 4


@pytest.fixture(scope="module")
def data(tiny):
    return load_training_data(tiny.transform_dir, tiny.train_files, tiny.catalogue_dir)


@pytest.fixture(scope="module")
def history(tiny, data):
    return inputs.user_history(data.dataset(tiny.train_files))


@pytest.fixture(scope="module")
def trained(tiny, data, history, tmp_path_factory):
    """(model, Keras fit history, export path, metadata, hparams)."""
    hp = SequentialHParams(context_length=LENGTH, embedding_dim=8, id_embedding_dim=8,
                           gru_units=8, batch_size=64, epochs=15, learning_rate=0.05)
    model, fit, _ = sequential_trainer.train(data, hp, tiny.train_files, history)
    path = str(tmp_path_factory.mktemp("export") / "sequential")
    metadata = sequential_trainer.export_model(model, data, history, path, hp=hp, serving_k=K,
                                               eval_k=K)
    return model, fit, path, metadata, hp


def test_training_lowers_the_loss(trained):
    losses = trained[1].history["loss"]
    assert losses[-1] < 0.9 * losses[0], losses


def test_training_contexts_come_from_the_same_users_earlier_train_ratings(tiny, data, history):
    batch = next(iter(sequential_trainer.with_context(
        data.dataset(tiny.train_files, 10_000), history, LENGTH)))
    batch = {k: v.numpy() for k, v in batch.items()}
    users, times, items = (batch[F.index_name(F.USER_ID)], batch[F.TIMESTAMP],
                            batch[F.index_name(F.ITEM_ID)])
    for i in range(0, len(users), 7):
        earlier = sorted((t, m) for u, t, m in zip(users, times, items, strict=True)
                         if u == users[i] and t < times[i])
        expected = [m for _, m in earlier][-LENGTH:]
        expected = [F.LIST_PADDING] * (LENGTH - len(expected)) + expected
        assert batch[F.CONTEXT_INDEX][i].tolist() == expected


def test_export_metadata_and_signatures(trained):
    _, _, path, metadata, _ = trained
    assert metadata.kind == "sequential" and metadata.context_length == LENGTH
    assert metadata.serving_k == K and metadata.history_ratings > 0
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "recommend", "evaluate"}


def test_recommend_reads_the_exported_history_like_a_request_carrying_it(trained, tiny,
                                                                          fresh_signature):
    _, _, path, _, _ = trained
    rows = tiny.raw_train_rows
    user = rows[0][F.USER_ID]
    mine = sorted((r[F.TIMESTAMP], r[F.ITEM_ID]) for r in rows if r[F.USER_ID] == user)
    when = mine[-1][0] + 1
    context = np.array([[m for _, m in mine[-LENGTH:]]], object)
    by_history = fresh_signature(path, "recommend", user_id=np.array([user], object),
                                 timestamp=np.array([when], np.int64))
    # The request-time path, loaded here (fresh-process loading is checked by the others).
    by_request = tf.saved_model.load(path).signatures["serving_default"](
        context_items=tf.constant(context))
    assert by_history["known_user"].tolist() == [True]
    assert by_history["item_ids"].tolist() == by_request["item_ids"].numpy().tolist()
    np.testing.assert_allclose(by_history["scores"], by_request["scores"].numpy(), rtol=1e-5)


def test_evaluate_equals_numpy_over_the_in_memory_model(trained, tiny, data, history,
                                                        fresh_signature):
    model, _, path, _, _ = trained
    serialized = np.array([r.numpy() for r in tf.data.TFRecordDataset(
        inputs.files(tiny.raw_eval_dir), compression_type="GZIP")], object)
    got = fresh_signature(path, "evaluate", examples=serialized)

    batch = {k: v.numpy() for k, v in next(iter(sequential_trainer.with_context(
        data.dataset(tiny.eval_files, 10_000), history, LENGTH))).items()}
    # The eval split as Transform wrote it, in the raw rows' order.
    keys = list(zip(batch[F.USER_ID], batch[F.ITEM_ID], batch[F.TIMESTAMP], strict=True))
    order = [keys.index((r[F.USER_ID], r[F.ITEM_ID], r[F.TIMESTAMP]))
             for r in tiny.raw_eval_rows]
    queries = model.query_tower({F.CONTEXT_INDEX: batch[F.CONTEXT_INDEX][order]}).numpy()
    num_candidates = data.sizes[F.index_name(F.ITEM_ID)] - 1  # the vocabulary, no OOV row
    candidates = model.candidate_tower(
        {F.index_name(F.ITEM_ID): np.arange(num_candidates)}).numpy()
    scores = queries @ candidates.T
    items = batch[F.index_name(F.ITEM_ID)][order]
    known = items < num_candidates
    positive = scores[np.arange(len(items)), np.minimum(items, num_candidates - 1)]
    rank = (scores >= positive[:, None]).sum(axis=1) - 1
    np.testing.assert_array_equal(got["top_k_hit"], (known & (rank < K)).astype(np.float32))
    assert 0 < got["top_k_hit"].mean() < 1


def test_warmup_inputs_are_valid_requests(trained, fresh_signature):
    _, _, path, metadata, _ = trained
    got = fresh_signature(path, "serving_default", context_items=np.array(
        metadata.warmup_inputs["context_items"], object))
    assert got["item_ids"].shape == (2, K)
