"""GRU4Rec (``models.build_sequential``, ``export.SequentialExport``) on hand-made sequences.

Twelve items watched in a cycle: after m3 comes m4, so the next item is learnable from the
context and a trained model must put it first.
"""

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline.trainer import export, models
from recsys_pipeline.trainer.export_metadata import ExportMetadata
from recsys_pipeline.trainer.hparams import SequentialHParams
from recsys_pipeline.transform import features as F

ITEMS = 12
LENGTH = 3
P = F.LIST_PADDING


def _cycle_data(n=2048, seed=0):
    """Contexts of 1..LENGTH consecutive items (left-padded) and the item that follows."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, ITEMS, n)
    seen = rng.integers(1, LENGTH + 1, n)
    context = np.full((n, LENGTH), P, np.int64)
    for i in range(n):
        context[i, LENGTH - seen[i]:] = (start[i] + np.arange(seen[i])) % ITEMS
    return {F.CONTEXT_INDEX: context, F.index_name(F.ITEM_ID): (start + seen) % ITEMS}


def _hp(**changes):
    return SequentialHParams(context_length=LENGTH, embedding_dim=8, id_embedding_dim=8,
                             gru_units=16, batch_size=64, epochs=8, learning_rate=0.02,
                             popularity_correction=False, **changes)


@pytest.fixture(scope="module")
def trained():
    data = _cycle_data()
    model = models.build_sequential(ITEMS, _hp())
    ds = tf.data.Dataset.from_tensor_slices(data).batch(64)
    before = model.evaluate(ds, return_dict=True, verbose=0)["loss"]
    model.fit(ds.shuffle(64, seed=0), epochs=8, verbose=0)
    after = model.evaluate(ds, return_dict=True, verbose=0)["loss"]
    return model, data, before, after


def test_towers_map_to_the_embedding_size():
    model = models.build_sequential(ITEMS, _hp())
    batch = {k: v[:5] for k, v in _cycle_data().items()}
    assert model.query_tower(batch).shape == (5, 8)
    assert model.candidate_tower(batch).shape == (5, 8)


def test_padding_is_masked_whatever_its_length():
    model = models.build_sequential(ITEMS, _hp())
    short = model.query_tower({F.CONTEXT_INDEX: tf.constant([[P, 4, 5]], tf.int64)})
    longer = model.query_tower({F.CONTEXT_INDEX: tf.constant([[P, P, P, P, 4, 5]], tf.int64)})
    bare = model.query_tower({F.CONTEXT_INDEX: tf.constant([[4, 5]], tf.int64)})
    np.testing.assert_allclose(short.numpy(), longer.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(short.numpy(), bare.numpy(), rtol=1e-5, atol=1e-6)
    # ...and the order of the items matters (it is a sequence model, not a bag of items).
    swapped = model.query_tower({F.CONTEXT_INDEX: tf.constant([[P, 5, 4]], tf.int64)})
    assert not np.allclose(short.numpy(), swapped.numpy())


def test_training_lowers_the_loss_and_learns_the_next_item(trained):
    model, data, before, after = trained
    assert after < 0.7 * before, (before, after)
    queries = model.query_tower({F.CONTEXT_INDEX: data[F.CONTEXT_INDEX][:200]}).numpy()
    candidates = model.candidate_tower.embedding.embeddings.numpy()
    best = np.argmax(queries @ candidates.T, axis=1)
    assert np.mean(best == data[F.index_name(F.ITEM_ID)][:200]) > 0.9


def test_export_serves_raw_item_ids_in_a_fresh_process(trained, tmp_path, fresh_signature):
    model, _, _, _ = trained
    ids = np.array([f"m{i}".encode() for i in range(ITEMS)], object)
    embeddings = model.candidate_tower.embedding.embeddings.numpy()
    path = str(tmp_path / "gru4rec")
    export.save(export.SequentialExport(model.query_tower, ids, embeddings, k=4,
                                        context_length=LENGTH), path,
                ExportMetadata(kind="sequential", warmup_inputs={}))
    got = fresh_signature(path, "serving_default", context_items=np.array(
        [[b"", b"m2", b"m3"], [b"m0", b"m1", b"m2"], [b"", b"", b"m10"],
         [b"nope", b"m6", b"m7"]], object))  # an unknown id is dropped
    assert got["item_ids"].shape == (4, 4)
    assert [m.decode() for m in got["item_ids"][:, 0]] == ["m4", "m3", "m11", "m8"]
    queries = model.query_tower({F.CONTEXT_INDEX: tf.constant([[P, 2, 3]], tf.int64)}).numpy()
    np.testing.assert_allclose(got["scores"][0], np.sort(queries @ embeddings.T)[0, ::-1][:4],
                               rtol=1e-4, atol=1e-4)
    # A longer request keeps its most recent LENGTH items.
    longer = fresh_signature(path, "serving_default", context_items=np.array(
        [[b"m9", b"m9", b"m1", b"m2", b"m3"]], object))
    queries = model.query_tower({F.CONTEXT_INDEX: tf.constant([[1, 2, 3]], tf.int64)}).numpy()
    np.testing.assert_allclose(longer["scores"][0],
                               np.sort(queries @ embeddings.T)[0, ::-1][:4], rtol=1e-4, atol=1e-4)
