"""Pure model builders: the TFRS two-tower retrieval model, GRU4Rec sequential retrieval and
the rating ranking model.

Inputs are dicts of dense model features (see ``features.py``: ids as [batch], genres as
[batch, G] padded with LIST_PADDING); vocabulary sizes are passed in (``inputs.vocab_sizes``
reads them from the Transform output). No TFX here: these build and train on plain tensors.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams, SequentialHParams
from recsys_pipeline.transform import features as F

# Normalized timestamps outside the training range (e.g. a request made years later) are
# clipped so that they cannot dominate the query embedding.
TIMESTAMP_Z_CLIP = 5.0


def id_embedding(vocabulary: str, num_ids: int, dim: int, **kwargs) -> tf.keras.layers.Embedding:
    """An embedding whose rows are the ids of a Transform ``vocabulary`` (named after its raw
    feature): warm starts map its rows by vocabulary value (``warm_start.py``)."""
    layer = tf.keras.layers.Embedding(num_ids, dim, **kwargs)
    layer.vocabulary = vocabulary
    return layer


def index_embedding(index_feature: str, sizes: dict[str, int], dim: int,
                    **kwargs) -> tf.keras.layers.Embedding:
    """``id_embedding`` of an ``index_name`` feature, sized from the Transform output."""
    return id_embedding(F.vocabulary_name(index_feature), sizes[index_feature], dim, **kwargs)


class MaskedMeanEmbedding(tf.keras.layers.Layer):
    """Mean embedding of a padded id list (LIST_PADDING = no id); zeros for an empty list."""

    def __init__(self, index_feature: str, sizes: dict[str, int], dim: int, **kwargs):
        super().__init__(**kwargs)
        self.embedding = index_embedding(index_feature, sizes, dim)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        mask = tf.cast(ids != F.LIST_PADDING, tf.float32)[..., None]
        vectors = self.embedding(tf.maximum(ids, 0)) * mask
        return tf.reduce_sum(vectors, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class DeclaredFeatures(tf.keras.layers.Layer):
    """The declared item or user features (``prefix``: ``F.ITEM_FEATURE_PREFIX`` or
    ``F.USER_FEATURE_PREFIX``): a mean embedding of each vocabulary feature's ids (a
    categorical one is a list of at most one), and the numeric z-scores as they are. Found by
    name in the Transform output (``F.declared_inputs``): MovieLens 100K's and 1M's are the
    demographics, the GroupLens CSV layout has none."""

    def __init__(self, sizes: dict[str, int], dim: int, numeric: Sequence[str], prefix: str,
                 **kwargs):
        super().__init__(**kwargs)
        self.list_names = list(F.declared_inputs(sizes, prefix)[0])
        self.embeddings = [MaskedMeanEmbedding(n, sizes, dim) for n in self.list_names]
        self.numeric = [n for n in numeric if n.startswith(prefix)]

    def parts(self, f: dict[str, tf.Tensor]) -> list[tf.Tensor]:
        """[batch, dim] per vocabulary feature, then [batch, 1] per numeric one."""
        out = [emb(f[n]) for n, emb in zip(self.list_names, self.embeddings, strict=True)]
        out += [tf.cast(f[n], tf.float32)[:, None] for n in self.numeric]
        return out


def _mlp(hidden: list, out_dim: int, name: str) -> tf.keras.Sequential:
    layers = [tf.keras.layers.Dense(n, activation="relu") for n in hidden]
    return tf.keras.Sequential(layers + [tf.keras.layers.Dense(out_dim)], name=name)


class QueryTower(tf.keras.Model):
    """User id, timestamp bucket, normalized timestamp and the declared user features
    (``DeclaredFeatures``; MovieLens' demographics among them)."""

    def __init__(self, sizes: dict[str, int], hp: RetrievalHParams,
                 numeric: Sequence[str] = (), **kwargs):
        super().__init__(**kwargs)
        self.declared = DeclaredFeatures(sizes, hp.context_embedding_dim, numeric,
                                         F.USER_FEATURE_PREFIX, name="user_features")
        self.user = index_embedding(F.index_name(F.USER_ID), sizes, hp.id_embedding_dim)
        self.time = tf.keras.layers.Embedding(sizes[F.TIMESTAMP_BUCKET], hp.context_embedding_dim)
        self.mlp = _mlp(hp.hidden_layers, hp.embedding_dim, "query_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        z = tf.clip_by_value(tf.cast(f[F.TIMESTAMP_Z], tf.float32), -TIMESTAMP_Z_CLIP,
                             TIMESTAMP_Z_CLIP)
        parts = [self.user(f[F.index_name(F.USER_ID)]), self.time(f[F.TIMESTAMP_BUCKET]),
                 z[:, None]]
        parts += self.declared.parts(f)
        return self.mlp(tf.concat(parts, axis=1))


class CandidateTower(tf.keras.Model):
    """Item id and title embeddings, the mean genre embedding, (``title_text``) the mean
    embedding of the title's words, which items with few ratings share with better-known ones,
    and the declared item features (``DeclaredFeatures``).
    """

    def __init__(self, sizes: dict[str, int], hp: RetrievalHParams,
                 numeric: Sequence[str] = (), **kwargs):
        super().__init__(**kwargs)
        self.item = index_embedding(F.index_name(F.ITEM_ID), sizes, hp.id_embedding_dim)
        self.declared = DeclaredFeatures(sizes, hp.context_embedding_dim, numeric,
                                         F.ITEM_FEATURE_PREFIX, name="item_features")
        self.title = index_embedding(F.index_name(F.ITEM_TITLE), sizes, hp.id_embedding_dim)
        self.genres = MaskedMeanEmbedding(F.GENRES_INDEX, sizes, hp.context_embedding_dim)
        self.words = None
        if hp.title_text:
            if F.TITLE_TOKENS_INDEX not in sizes:
                raise ValueError("retrieval.title_text needs the title word ids, which this "
                                 "Transform output lacks (made before they existed): rerun "
                                 "Transform")
            self.words = MaskedMeanEmbedding(F.TITLE_TOKENS_INDEX, sizes, hp.id_embedding_dim)
        self.mlp = _mlp(hp.hidden_layers, hp.embedding_dim, "candidate_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.item(f[F.index_name(F.ITEM_ID)]),
                 self.title(f[F.index_name(F.ITEM_TITLE)]), self.genres(f[F.GENRES_INDEX])]
        if self.words is not None:
            parts.append(self.words(f[F.TITLE_TOKENS_INDEX]))
        parts += self.declared.parts(f)
        return self.mlp(tf.concat(parts, axis=1))


class IdTower(tf.keras.Model):
    """An embedding of one id feature (a matrix-factorization tower)."""

    def __init__(self, feature: str, num_ids: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.feature = feature
        self.embedding = id_embedding(F.vocabulary_name(feature), num_ids, dim)

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.embedding(f[self.feature])


class SequenceQueryTower(tf.keras.Model):
    """GRU4Rec's query (Hidasi et al., 2016): the previous items, embedded, through a GRU.

    Padding is masked, so a rating with no history gets the GRU's initial state; the
    sequence is oldest first, so the GRU's final state has just read the latest item.
    """

    def __init__(self, num_items: int, hp: SequentialHParams, **kwargs):
        super().__init__(**kwargs)
        self.item = id_embedding(F.ITEM_ID, num_items, hp.id_embedding_dim)
        self.gru = tf.keras.layers.GRU(hp.gru_units)
        self.mlp = _mlp(hp.hidden_layers, hp.embedding_dim, "sequence_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        ids = f[F.CONTEXT_INDEX]
        state = self.gru(self.item(tf.maximum(ids, 0)), mask=ids != F.LIST_PADDING)
        return self.mlp(state)


class RetrievalModel(tfrs.models.Model):
    """Two towers trained with TFRS's Retrieval task (in-batch softmax).

    The towers map a batch of model features to [batch, embedding_dim]; the candidates'
    labels are the batch's ``item_id_index`` (for the logQ correction and accidental hits).
    """

    def __init__(self, query_tower: tf.keras.Model, candidate_tower: tf.keras.Model,
                 hp: RetrievalHParams | SequentialHParams,
                 item_counts: Optional[np.ndarray] = None, min_rating: float = 0.0):
        super().__init__()
        # Implicit feedback: rows rated below min_rating get no positive loss, but their
        # items stay in the batch as negatives, so the logQ counts (all ratings) still hold.
        self._min_rating = min_rating
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        # Top-k metrics are computed once after training over the whole catalogue (exactly,
        # in the export's eval signature), not per batch: that would dominate training time.
        self.task = tfrs.tasks.Retrieval(temperature=hp.temperature,
                                         remove_accidental_hits=hp.remove_accidental_hits)
        self._remove_accidental_hits = hp.remove_accidental_hits
        self._sampling_probability = None
        if hp.popularity_correction:
            if item_counts is None:
                raise ValueError("popularity_correction needs the train split's item counts")
            # In-batch negatives are drawn in proportion to popularity; the logQ correction
            # (Yi et al., 2019) removes that bias, which otherwise buries popular items.
            counts = np.maximum(np.asarray(item_counts, np.float64), 1.0)
            self._sampling_probability = tf.constant(counts / counts.sum(), tf.float32)

    def compute_loss(self, features, training=False):
        probability = None
        if self._sampling_probability is not None:
            probability = tf.gather(self._sampling_probability,
                                    features[F.index_name(F.ITEM_ID)])
        item_ids = features[F.index_name(F.ITEM_ID)] if self._remove_accidental_hits else None
        weight = features.get(F.WEIGHT)  # a declared log's weights, else every example is 1
        if self._min_rating > 0:
            kept = tf.cast(features[F.LABEL] >= self._min_rating, tf.float32)
            weight = kept if weight is None else weight * kept
        return self.task(self.query_tower(features), self.candidate_tower(features),
                         sample_weight=weight, candidate_sampling_probability=probability,
                         candidate_ids=item_ids, compute_metrics=False)


class RatingNetwork(tf.keras.layers.Layer):
    """One rating predictor: user, item, genre and declared item and user feature embeddings
    (and numeric declared features) into an MLP (``architecture`` dcn: stacked Cross layers
    before it), plus per-user and per-item offsets with ``bias_terms``."""

    def __init__(self, sizes: dict[str, int], hp: RankingHParams, mean_rating: float,
                 numeric: Sequence[str] = (), **kwargs):
        super().__init__(**kwargs)
        ctx = hp.context_embedding_dim
        self.items = DeclaredFeatures(sizes, ctx, numeric, F.ITEM_FEATURE_PREFIX,
                                      name="item_features")
        self.users = DeclaredFeatures(sizes, ctx, numeric, F.USER_FEATURE_PREFIX,
                                      name="user_features")
        reg = tf.keras.regularizers.l2(hp.l2) if hp.l2 else None
        user, item = F.index_name(F.USER_ID), F.index_name(F.ITEM_ID)
        self.user = index_embedding(user, sizes, hp.embedding_dim, embeddings_regularizer=reg)
        self.item = index_embedding(item, sizes, hp.embedding_dim, embeddings_regularizer=reg)
        self.genres = MaskedMeanEmbedding(F.GENRES_INDEX, sizes, ctx)
        self.cross = [tfrs.layers.dcn.Cross(projection_dim=hp.cross_projection_dim or None,
                                            kernel_initializer="glorot_uniform")
                      for _ in range(hp.cross_layers)] if hp.architecture == "dcn" else []
        layers = [tf.keras.layers.Dense(n, activation="relu") for n in hp.hidden_layers]
        # Starting at the mean rating saves the first epoch from learning a constant.
        layers.append(tf.keras.layers.Dense(
            1, bias_initializer=tf.keras.initializers.Constant(mean_rating)))
        self.mlp = tf.keras.Sequential(layers, name="rating_mlp")
        self.user_bias = self.item_bias = None
        if hp.bias_terms:
            self.user_bias = index_embedding(user, sizes, 1, embeddings_initializer="zeros",
                                             embeddings_regularizer=reg)
            self.item_bias = index_embedding(item, sizes, 1, embeddings_initializer="zeros",
                                              embeddings_regularizer=reg)

    def call(self, f: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(rating, user id embeddings, item id embeddings): the multitask loss reuses the
        embeddings rather than looking them up again."""
        users, items = f[F.index_name(F.USER_ID)], f[F.index_name(F.ITEM_ID)]
        user_vectors, item_vectors = self.user(users), self.item(items)
        parts = [user_vectors, item_vectors, self.genres(f[F.GENRES_INDEX])]
        parts += self.items.parts(f) + self.users.parts(f)
        x0 = x = tf.concat(parts, axis=1)
        for cross in self.cross:
            x = cross(x0, x)
        rating = tf.squeeze(self.mlp(x), axis=1)
        if self.user_bias is not None and self.item_bias is not None:
            rating += tf.squeeze(self.user_bias(users), 1) + tf.squeeze(self.item_bias(items), 1)
        return rating, user_vectors, item_vectors


class RankingModel(tfrs.models.Model):
    """Predicts the rating with a ``RatingNetwork`` (MSE loss, RMSE metric).

    ``retrieval_weight`` > 0 trains a retrieval task on the network's user and item id
    embeddings alongside (multitask).
    """

    def __init__(self, sizes: dict[str, int], hp: RankingHParams, mean_rating: float = 3.5,
                 numeric: Sequence[str] = ()):
        super().__init__()
        self.network = RatingNetwork(sizes, hp, mean_rating, numeric, name="rating_network")
        # SUM, which tf.distribute requires: of a batch's rank-1 ratings Keras' MSE is already
        # their mean, which compute_loss divides between the replicas.
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")])
        # Multitask (TFRS's multitask tutorial): the id embeddings also learn which items a
        # user rates at all, a signal the rating loss alone does not see.
        self.retrieval_weight = hp.retrieval_weight
        self.retrieval_task = tfrs.tasks.Retrieval() if hp.retrieval_weight > 0 else None

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.network(f)[0]

    def compute_loss(self, features, training=False):
        rating, users, items = self.network(features)
        loss = self.task(labels=features[F.LABEL], predictions=rating)
        if self.retrieval_task is not None:
            # The Retrieval task sums over the batch; per example, it compares with the MSE.
            retrieval = self.retrieval_task(users, items, compute_metrics=False)
            loss += self.retrieval_weight * retrieval / tf.cast(tf.shape(users)[0], tf.float32)
        # Each replica's gradients are summed (trainer/distribute.py): the mean of their means.
        return loss / tf.distribute.get_strategy().num_replicas_in_sync


class RankingEnsemble(tf.keras.Model):
    """The mean rating of separately trained ranking models (``ranking.ensemble``)."""

    def __init__(self, members: list[tf.keras.Model], **kwargs):
        super().__init__(**kwargs)
        self.members = list(members)

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.add_n([member(f) for member in self.members]) / len(self.members)


def build_weights(model: tf.keras.Model, batch: dict[str, tf.Tensor]) -> None:
    """Creates a model's weights (Keras makes them at the first call) by running it on one
    batch, so that they can be assigned before training (a warm start)."""
    if isinstance(model, RetrievalModel):
        model.query_tower(batch)
        model.candidate_tower(batch)
    else:
        model(batch)


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """The configured Keras optimizer."""
    cls = {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad,
           "sgd": tf.keras.optimizers.SGD}[name]
    return cls(learning_rate=learning_rate)


def build_retrieval(sizes: dict[str, int], hp: RetrievalHParams,
                    item_counts: Optional[np.ndarray] = None,
                    numeric: Sequence[str] = ()) -> RetrievalModel:
    """A compiled retrieval model (``item_counts``: train ratings per item_id_index;
    ``numeric``: the declared numeric features, ``inputs.numeric_features``)."""
    tf.keras.utils.set_random_seed(hp.seed)
    model = RetrievalModel(QueryTower(sizes, hp, numeric, name="query_tower"),
                           CandidateTower(sizes, hp, numeric, name="candidate_tower"), hp,
                           item_counts,
                           min_rating=hp.min_rating)
    model.compile(optimizer=make_optimizer(hp.optimizer, hp.learning_rate))
    return model


def build_sequential(num_items: int, hp: SequentialHParams,
                     item_counts: Optional[np.ndarray] = None) -> RetrievalModel:
    """A compiled GRU4Rec model over ``num_items`` item ids (``item_counts`` per id).

    Features: ``context_items_index`` (the query) and ``item_id_index`` (the candidate).
    """
    tf.keras.utils.set_random_seed(hp.seed)
    model = RetrievalModel(
        SequenceQueryTower(num_items, hp, name="query_tower"),
        IdTower(F.index_name(F.ITEM_ID), num_items, hp.embedding_dim, name="candidate_tower"),
        hp, item_counts)
    model.compile(optimizer=make_optimizer(hp.optimizer, hp.learning_rate))
    return model


def build_ranking(sizes: dict[str, int], hp: RankingHParams, mean_rating: float = 3.5,
                  numeric: Sequence[str] = ()) -> RankingModel:
    """A compiled ranking model (``numeric`` as for ``build_retrieval``)."""
    tf.keras.utils.set_random_seed(hp.seed)
    model = RankingModel(sizes, hp, mean_rating, numeric)
    model.compile(optimizer=make_optimizer(hp.optimizer, hp.learning_rate))
    return model
