"""Model builders on the tiny Transform output: shapes, and training lowers the loss."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from recsys_pipeline.trainer import inputs, models
from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams
from recsys_pipeline.transform import features as F


@pytest.fixture(scope="module")
def data(tiny):
    tft_output = tft.TFTransformOutput(tiny.transform_dir)
    spec = tft_output.transformed_feature_spec()
    sizes = inputs.vocab_sizes(tft_output)
    batch = next(iter(inputs.transformed_dataset(tiny.train_files, spec, 64)))
    return tft_output, spec, sizes, batch


def test_vocab_sizes_come_from_the_transform_output(data):
    tft_output, _, sizes, _ = data
    assert sizes[F.index_name(F.USER_ID)] == tft_output.vocabulary_size_by_name(F.USER_ID) + 1
    assert sizes[F.index_name(F.ITEM_ID)] == 21  # 20 items + 1 out-of-vocabulary id
    assert sizes[F.TIMESTAMP_BUCKET] == 4
    # MovieLens' demographics, declared user features: a vocabulary each, sized from it
    for column in ("gender", "age", "occupation"):
        name = F.user_feature(column)
        assert sizes[F.index_name(name)] == tft_output.vocabulary_size_by_name(name) + 1
    assert tft_output.vocabulary_size_by_name(F.user_feature("gender")) == 2


def test_batches_are_dense_with_padded_genres(data):
    _, _, _, batch = data
    assert batch[F.index_name(F.USER_ID)].shape == (64,)
    genres = batch[F.GENRES_INDEX].numpy()
    assert genres.ndim == 2 and genres.shape[1] == 2  # at most two genres per item
    assert (genres[:, 0] >= 0).all() and set(genres[:, 1]) <= {F.LIST_PADDING, 0, 1, 2, 3}


def test_masked_mean_embedding_ignores_padding():
    layer = models.MaskedMeanEmbedding(F.GENRES_INDEX, {F.GENRES_INDEX: 5}, 3)
    out = layer(tf.constant([[1, 2], [1, F.LIST_PADDING], [F.LIST_PADDING, F.LIST_PADDING]],
                            tf.int64)).numpy()
    table = layer.embedding.embeddings.numpy()
    np.testing.assert_allclose(out[0], (table[1] + table[2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[1], table[1], rtol=1e-6)
    np.testing.assert_allclose(out[2], 0.0)


def test_batches_carry_the_title_words(data, tiny):
    tft_output, _, sizes, batch = data
    words = tft_output.vocabulary_by_name(F.ITEM_TITLE_TOKENS)
    assert sizes[F.TITLE_TOKENS_INDEX] == len(words) + 1
    # Tiny titles are "Item <i> (<1990 + i>)": three words each.
    for title, ids in zip(batch[F.ITEM_TITLE].numpy(), batch[F.TITLE_TOKENS_INDEX].numpy(),
                          strict=True):
        expected = title.decode().lower().replace("(", "").replace(")", "").split()
        assert [words[i].decode() for i in ids if i != F.LIST_PADDING] == expected


@pytest.mark.parametrize("hidden,title_text", [([], False), ([16], False), ([16], True)])
def test_towers_map_to_the_embedding_size(data, hidden, title_text):
    _, _, sizes, batch = data
    hp = RetrievalHParams(embedding_dim=8, hidden_layers=hidden, title_text=title_text)
    model = models.build_retrieval(sizes, hp, np.ones(sizes[F.index_name(F.ITEM_ID)]))
    assert model.query_tower(batch).shape == (64, 8)
    assert model.candidate_tower(batch).shape == (64, 8)
    assert (model.candidate_tower.words is not None) == title_text
    # the declared user features are used when Transform produced them
    assert model.query_tower.declared.list_names == sorted(
        F.index_name(F.user_feature(c)) for c in ("age", "gender", "occupation"))


def _loss_drop(model, ds, epochs):
    before = model.evaluate(ds, return_dict=True, verbose=0)["loss"]
    model.fit(ds, epochs=epochs, verbose=0)
    after = model.evaluate(ds, return_dict=True, verbose=0)["loss"]
    return before, after


@pytest.mark.parametrize("hidden,learning_rate", [
    ([], 0.2), (RetrievalHParams().hidden_layers, RetrievalHParams().learning_rate)])
def test_retrieval_training_lowers_the_loss(data, tiny, hidden, learning_rate):
    _, spec, sizes, _ = data
    # Small batches: with only 20 items, larger ones are mostly duplicate "negatives".
    ds = inputs.transformed_dataset(tiny.train_files, spec, 8)
    hp = RetrievalHParams(embedding_dim=8, hidden_layers=hidden, learning_rate=learning_rate)
    model = models.build_retrieval(sizes, hp, np.ones(sizes[F.index_name(F.ITEM_ID)]))
    before, after = _loss_drop(model, ds, 10)
    assert after < 0.9 * before, (before, after)


def test_title_text_needs_the_title_word_ids(data):
    _, _, sizes, _ = data
    older = {k: v for k, v in sizes.items() if k != F.TITLE_TOKENS_INDEX}
    with pytest.raises(ValueError, match="rerun Transform"):
        models.build_retrieval(older, RetrievalHParams(title_text=True,
                                                       popularity_correction=False))


def test_retrieval_with_title_text_training_lowers_the_loss(data, tiny):
    _, spec, sizes, _ = data
    ds = inputs.transformed_dataset(tiny.train_files, spec, 8)
    hp = RetrievalHParams(embedding_dim=8, hidden_layers=[], learning_rate=0.2, title_text=True)
    model = models.build_retrieval(sizes, hp, np.ones(sizes[F.index_name(F.ITEM_ID)]))
    before, after = _loss_drop(model, ds, 10)
    assert after < 0.9 * before, (before, after)


def test_retrieval_popularity_correction_needs_counts(data):
    _, _, sizes, _ = data
    with pytest.raises(ValueError, match="item counts"):
        models.build_retrieval(sizes, RetrievalHParams(popularity_correction=True))


def test_ranking_predicts_ratings_and_training_lowers_the_loss(data, tiny):
    _, spec, sizes, batch = data
    ds = inputs.transformed_dataset(tiny.train_files, spec, 128)
    model = models.build_ranking(sizes, RankingHParams(learning_rate=0.01), mean_rating=3.0)
    assert model(batch).shape == (64,)
    before, after = _loss_drop(model, ds, 20)
    assert after < 0.7 * before, (before, after)


def test_an_empty_train_split_is_a_data_error(tmp_path, data):
    from recsys_pipeline.errors import DataError

    _, spec, sizes, _ = data
    empty = tmp_path / "Split-train"
    empty.mkdir()
    (empty / "data.gz").write_bytes(b"")
    with pytest.raises(DataError, match="train split is empty"):
        inputs.train_stats(inputs.transformed_dataset(str(empty), spec, 8),
                           sizes[F.index_name(F.ITEM_ID)])
    with pytest.raises(DataError, match="no data files match"):
        inputs.files(str(tmp_path / "nothing" / "*"))


@pytest.mark.parametrize("projection", [0, 4])
def test_dcn_ranking_crosses_features_and_learns(data, tiny, projection):
    _, spec, sizes, batch = data
    hp = RankingHParams(architecture="dcn", cross_layers=2, cross_projection_dim=projection,
                        bias_terms=True, learning_rate=0.01)
    model = models.build_ranking(sizes, hp, mean_rating=3.0)
    assert model(batch).shape == (64,)
    member = model.network
    assert len(member.cross) == 2 and member.user_bias is not None
    # The built Cross weights: full rank (d x d) or factored through the projection.
    if projection:
        assert member.cross[0]._dense_u.kernel.shape[1] == projection
    else:
        kernel = member.cross[0]._dense.kernel.shape
        assert kernel[0] == kernel[1]
    before, after = _loss_drop(model, inputs.transformed_dataset(tiny.train_files, spec, 128), 20)
    assert after < 0.7 * before, (before, after)


def test_mlp_ranking_has_no_cross_layers_or_biases(data):
    _, _, sizes, _ = data
    model = models.build_ranking(sizes, RankingHParams(), mean_rating=3.0)
    assert model.network.cross == [] and model.network.user_bias is None


def test_removing_accidental_hits_drops_duplicate_items_from_the_negatives(data):
    _, _, sizes, batch = data
    items = batch[F.index_name(F.ITEM_ID)].numpy()
    assert len(set(items.tolist())) < len(items)  # 64 ratings of 20 items: duplicates
    losses = {}
    for remove in (False, True):
        hp = RetrievalHParams(embedding_dim=8, popularity_correction=False,
                              remove_accidental_hits=remove)
        model = models.build_retrieval(sizes, hp)
        losses[remove] = float(model.compute_loss(batch))
    # Same seed, same weights: only the masked duplicates differ, and they only add to the
    # softmax's denominator.
    assert losses[True] < losses[False], losses


def test_implicit_feedback_counts_only_high_ratings_as_positives(data):
    _, _, sizes, batch = data
    ratings = batch[F.LABEL].numpy()
    assert 0 < (ratings >= 4).sum() < len(ratings)
    losses = {}
    for threshold in (0.0, 4.0):
        hp = RetrievalHParams(embedding_dim=8, popularity_correction=False, min_rating=threshold)
        losses[threshold] = float(models.build_retrieval(sizes, hp).compute_loss(batch))
    # Same seed, same weights: the in-batch softmax is summed over the positives only.
    model = models.build_retrieval(sizes, RetrievalHParams(embedding_dim=8,
                                                          popularity_correction=False))
    per_row = tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction="none")(
        tf.eye(len(ratings)), tf.matmul(model.query_tower(batch), model.candidate_tower(batch),
                                        transpose_b=True)).numpy()
    np.testing.assert_allclose(losses[0.0], per_row.sum(), rtol=1e-4)
    np.testing.assert_allclose(losses[4.0], per_row[ratings >= 4].sum(), rtol=1e-4)


def test_declared_weights_scale_each_rows_retrieval_loss(data):
    _, _, sizes, batch = data
    ratings = batch[F.LABEL].numpy()
    weights = np.linspace(0.0, 3.0, len(ratings)).astype(np.float32)
    weighted = {**batch, F.WEIGHT: tf.constant(weights)}
    model = models.build_retrieval(sizes, RetrievalHParams(embedding_dim=8,
                                                          popularity_correction=False))
    per_row = tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction="none")(
        tf.eye(len(ratings)), tf.matmul(model.query_tower(batch), model.candidate_tower(batch),
                                        transpose_b=True)).numpy()
    np.testing.assert_allclose(float(model.compute_loss(weighted)), (weights * per_row).sum(),
                               rtol=1e-4)
    # With min_rating too, a row counts by its weight and only if rated high enough.
    model = models.build_retrieval(sizes, RetrievalHParams(embedding_dim=8,
                                                          popularity_correction=False,
                                                          min_rating=4.0))
    np.testing.assert_allclose(float(model.compute_loss(weighted)),
                               (weights * per_row)[ratings >= 4].sum(), rtol=1e-4)


def test_multitask_ranking_adds_a_retrieval_loss_and_learns(data, tiny):
    _, spec, sizes, batch = data
    plain = models.build_ranking(sizes, RankingHParams(), mean_rating=3.0)
    joint = models.build_ranking(sizes, RankingHParams(retrieval_weight=0.5, l2=0.0),
                                 mean_rating=3.0)
    assert plain.retrieval_task is None and joint.retrieval_task is not None
    # The joint loss is the rating loss plus half the per-example retrieval loss.
    rating = float(joint.task(labels=batch[F.LABEL], predictions=joint(batch)))
    member = joint.network
    retrieval = float(joint.retrieval_task(member.user(batch[F.index_name(F.USER_ID)]),
                                           member.item(batch[F.index_name(F.ITEM_ID)]),
                                           compute_metrics=False))
    assert retrieval > 0
    np.testing.assert_allclose(float(joint.compute_loss(batch)), rating + 0.5 * retrieval / 64,
                               rtol=1e-5)
    before, after = _loss_drop(joint, inputs.transformed_dataset(tiny.train_files, spec, 128), 20)
    assert after < 0.8 * before, (before, after)



BRAND, PRICE = F.index_name(F.item_feature("brand")), F.numeric_name(F.item_feature("price"))


def test_declared_item_features_feed_the_candidate_tower_and_the_ranking_model(data):
    _, _, sizes, batch = data
    sizes = {**sizes, BRAND: 4}
    n = len(batch[F.index_name(F.ITEM_ID)])
    base = {**batch, BRAND: tf.fill([n, 1], tf.constant(0, tf.int64)),
            PRICE: tf.zeros([n], tf.float32)}
    other_brand = {**base, BRAND: tf.fill([n, 1], tf.constant(1, tf.int64))}
    no_brand = {**base, BRAND: tf.fill([n, 1], tf.constant(F.LIST_PADDING, tf.int64))}
    pricier = {**base, PRICE: tf.ones([n], tf.float32)}
    hp = RetrievalHParams(hidden_layers=[8], embedding_dim=4)
    for build in (lambda: models.CandidateTower(sizes, hp, numeric=(PRICE,)),
                  lambda: models.RatingNetwork(sizes, RankingHParams(), 3.0, numeric=(PRICE,))):
        layer = build()
        declared = getattr(layer, "declared", None) or layer.items
        assert declared.list_names == [BRAND] and declared.numeric == [PRICE]

        def out(features, layer=layer):
            result = layer(features)
            return (result[0] if isinstance(result, tuple) else result).numpy()

        reference = out(base)
        for changed in (other_brand, no_brand, pricier):
            assert np.abs(out(changed) - reference).max() > 1e-6
        # The brand's embedding is the masked mean: no brand is a zero vector.
        vectors = declared.parts(no_brand)
        np.testing.assert_allclose(vectors[0].numpy(), 0.0)
        np.testing.assert_allclose(vectors[1].numpy(), np.zeros((n, 1)))


def test_a_model_without_declared_features_has_none(data):
    _, _, sizes, _ = data
    tower = models.CandidateTower(sizes, RetrievalHParams())
    assert tower.declared.list_names == [] and tower.declared.numeric == []


def test_declared_user_features_feed_the_query_tower_and_the_ranking_model(data):
    _, _, sizes, batch = data
    segment = F.index_name(F.user_feature("segment"))
    age = F.numeric_name(F.user_feature("age"))
    # The tiny data's own user features (demographics) left out: these two are the ones read.
    sizes = {**{k: v for k, v in sizes.items() if not F.is_user_feature(k)}, segment: 3}
    n = len(batch[F.index_name(F.USER_ID)])
    base = {**batch, segment: tf.zeros([n, 1], tf.int64), age: tf.zeros([n], tf.float32)}
    changed = [{**base, segment: tf.ones([n, 1], tf.int64)},
               {**base, age: tf.ones([n], tf.float32)}]
    numeric = (age,)
    query = models.QueryTower(sizes, RetrievalHParams(hidden_layers=[8]), numeric)
    network = models.RatingNetwork(sizes, RankingHParams(), 3.0, numeric=numeric)
    assert query.declared.list_names == [segment] and query.declared.numeric == [age]
    assert network.users.list_names == [segment] and network.items.list_names == []
    for layer in (query, lambda f: network(f)[0]):
        reference = layer(base).numpy()
        for features in changed:
            assert np.abs(layer(features).numpy() - reference).max() > 1e-6
    # The candidate tower reads no user feature.
    candidate = models.CandidateTower(sizes, RetrievalHParams(), numeric)
    assert candidate.declared.list_names == [] and candidate.declared.numeric == []
