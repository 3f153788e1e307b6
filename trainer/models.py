"""Pure model builders: the TFRS two-tower retrieval model and the rating ranking model.

Inputs are dicts of dense model features (see ``features.py``: ids as [batch], genres as
[batch, G] padded with GENRE_PADDING); vocabulary sizes are passed in (``inputs.vocab_sizes``
reads them from the Transform output). No TFX here: these build and train on plain tensors.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams
from recsys_pipeline.transform import features as F

# Normalized timestamps outside the training range (e.g. a request made years later) are
# clipped so that they cannot dominate the query embedding.
TIMESTAMP_Z_CLIP = 5.0


class MaskedMeanEmbedding(tf.keras.layers.Layer):
    """Mean embedding of a padded id list (GENRE_PADDING = no id); zeros for an empty list."""

    def __init__(self, num_ids: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.embedding = tf.keras.layers.Embedding(num_ids, dim)

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        mask = tf.cast(ids != F.GENRE_PADDING, tf.float32)[..., None]
        vectors = self.embedding(tf.maximum(ids, 0)) * mask
        return tf.reduce_sum(vectors, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


def _mlp(hidden: list, out_dim: int, name: str) -> tf.keras.Sequential:
    layers = [tf.keras.layers.Dense(n, activation="relu") for n in hidden]
    return tf.keras.Sequential(layers + [tf.keras.layers.Dense(out_dim)], name=name)


class QueryTower(tf.keras.Model):
    """User id, timestamp bucket, normalized timestamp and demographics (when present)."""

    def __init__(self, sizes: dict[str, int], hp: RetrievalHParams, **kwargs):
        super().__init__(**kwargs)
        self.user = tf.keras.layers.Embedding(sizes[F.index_name(F.USER_ID)], hp.id_embedding_dim)
        self.time = tf.keras.layers.Embedding(sizes[F.TIMESTAMP_BUCKET], hp.context_embedding_dim)
        self.demographic_names = [n for n in F.USER_INDEX_FEATURES[1:] if n in sizes]
        self.demographics = [tf.keras.layers.Embedding(sizes[n], hp.context_embedding_dim)
                             for n in self.demographic_names]
        self.mlp = _mlp(hp.hidden_layers, hp.embedding_dim, "query_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        z = tf.clip_by_value(tf.cast(f[F.TIMESTAMP_Z], tf.float32), -TIMESTAMP_Z_CLIP,
                             TIMESTAMP_Z_CLIP)
        parts = [self.user(f[F.index_name(F.USER_ID)]), self.time(f[F.TIMESTAMP_BUCKET]),
                 z[:, None]]
        parts += [emb(f[n]) for n, emb in zip(self.demographic_names, self.demographics,
                                              strict=True)]
        return self.mlp(tf.concat(parts, axis=1))


class CandidateTower(tf.keras.Model):
    """Movie id and title embeddings and the mean genre embedding."""

    def __init__(self, sizes: dict[str, int], hp: RetrievalHParams, **kwargs):
        super().__init__(**kwargs)
        self.movie = tf.keras.layers.Embedding(sizes[F.index_name(F.MOVIE_ID)],
                                               hp.id_embedding_dim)
        self.title = tf.keras.layers.Embedding(sizes[F.index_name(F.MOVIE_TITLE)],
                                               hp.id_embedding_dim)
        self.genres = MaskedMeanEmbedding(sizes[F.GENRES_INDEX], hp.context_embedding_dim)
        self.mlp = _mlp(hp.hidden_layers, hp.embedding_dim, "candidate_mlp")

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.movie(f[F.index_name(F.MOVIE_ID)]),
                 self.title(f[F.index_name(F.MOVIE_TITLE)]), self.genres(f[F.GENRES_INDEX])]
        return self.mlp(tf.concat(parts, axis=1))


class RetrievalModel(tfrs.models.Model):
    """Two towers trained with TFRS's Retrieval task (in-batch softmax)."""

    def __init__(self, sizes: dict[str, int], hp: RetrievalHParams,
                 movie_counts: Optional[np.ndarray] = None):
        super().__init__()
        self.query_tower = QueryTower(sizes, hp, name="query_tower")
        self.candidate_tower = CandidateTower(sizes, hp, name="candidate_tower")
        # Top-k metrics are computed once after training over the whole catalogue (exactly,
        # in the export's eval signature), not per batch: that would dominate training time.
        self.task = tfrs.tasks.Retrieval(temperature=hp.temperature,
                                         remove_accidental_hits=hp.remove_accidental_hits)
        self._remove_accidental_hits = hp.remove_accidental_hits
        self._sampling_probability = None
        if hp.popularity_correction:
            if movie_counts is None:
                raise ValueError("popularity_correction needs the train split's movie counts")
            # In-batch negatives are drawn in proportion to popularity; the logQ correction
            # (Yi et al., 2019) removes that bias, which otherwise buries popular movies.
            counts = np.maximum(np.asarray(movie_counts, np.float64), 1.0)
            self._sampling_probability = tf.constant(counts / counts.sum(), tf.float32)

    def compute_loss(self, features, training=False):
        probability = None
        if self._sampling_probability is not None:
            probability = tf.gather(self._sampling_probability,
                                    features[F.index_name(F.MOVIE_ID)])
        movie_ids = features[F.index_name(F.MOVIE_ID)] if self._remove_accidental_hits else None
        return self.task(self.query_tower(features), self.candidate_tower(features),
                         candidate_sampling_probability=probability, candidate_ids=movie_ids,
                         compute_metrics=False)


class RankingModel(tfrs.models.Model):
    """Predicts the rating from user, movie, genre and demographic embeddings (MSE loss).

    ``architecture`` mlp: ReLU layers over the concatenated embeddings; dcn: stacked Cross
    layers (explicit feature crosses, Wang et al. 2020) before them. ``bias_terms`` adds
    per-user and per-movie offsets to the output, the part of a rating a network otherwise
    spends capacity on.
    """

    def __init__(self, sizes: dict[str, int], hp: RankingHParams, mean_rating: float = 3.5):
        super().__init__()
        ctx = hp.context_embedding_dim
        reg = tf.keras.regularizers.l2(hp.l2) if hp.l2 else None
        num_users, num_movies = sizes[F.index_name(F.USER_ID)], sizes[F.index_name(F.MOVIE_ID)]
        self.user = tf.keras.layers.Embedding(num_users, hp.embedding_dim,
                                              embeddings_regularizer=reg)
        self.movie = tf.keras.layers.Embedding(num_movies, hp.embedding_dim,
                                               embeddings_regularizer=reg)
        self.genres = MaskedMeanEmbedding(sizes[F.GENRES_INDEX], ctx)
        self.demographic_names = [n for n in F.USER_INDEX_FEATURES[1:] if n in sizes]
        self.demographics = [tf.keras.layers.Embedding(sizes[n], ctx)
                             for n in self.demographic_names]
        self.cross = [tfrs.layers.dcn.Cross(projection_dim=hp.cross_projection_dim or None,
                                            kernel_initializer="glorot_uniform")
                      for _ in range(hp.cross_layers)] if hp.architecture == "dcn" else []
        layers = [tf.keras.layers.Dense(n, activation="relu") for n in hp.hidden_layers]
        # Starting at the mean rating saves the first epoch from learning a constant.
        layers.append(tf.keras.layers.Dense(
            1, bias_initializer=tf.keras.initializers.Constant(mean_rating)))
        self.mlp = tf.keras.Sequential(layers, name="rating_mlp")
        self.user_bias = self.movie_bias = None
        if hp.bias_terms:
            self.user_bias = tf.keras.layers.Embedding(num_users, 1, embeddings_initializer="zeros",
                                                       embeddings_regularizer=reg)
            self.movie_bias = tf.keras.layers.Embedding(num_movies, 1,
                                                        embeddings_initializer="zeros",
                                                        embeddings_regularizer=reg)
        self.task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")])

    def call(self, f: dict[str, tf.Tensor]) -> tf.Tensor:
        users, movies = f[F.index_name(F.USER_ID)], f[F.index_name(F.MOVIE_ID)]
        parts = [self.user(users), self.movie(movies), self.genres(f[F.GENRES_INDEX])]
        parts += [emb(f[n]) for n, emb in zip(self.demographic_names, self.demographics,
                                              strict=True)]
        x0 = x = tf.concat(parts, axis=1)
        for cross in self.cross:
            x = cross(x0, x)
        rating = tf.squeeze(self.mlp(x), axis=1)
        if self.user_bias is not None:
            rating += tf.squeeze(self.user_bias(users), 1) + tf.squeeze(self.movie_bias(movies), 1)
        return rating

    def compute_loss(self, features, training=False):
        return self.task(labels=features[F.LABEL], predictions=self(features))


def make_optimizer(name: str, learning_rate: float) -> tf.keras.optimizers.Optimizer:
    """The configured Keras optimizer."""
    cls = {"adam": tf.keras.optimizers.Adam, "adagrad": tf.keras.optimizers.Adagrad,
           "sgd": tf.keras.optimizers.SGD}[name]
    return cls(learning_rate=learning_rate)


def build_retrieval(sizes: dict[str, int], hp: RetrievalHParams,
                    movie_counts: Optional[np.ndarray] = None) -> RetrievalModel:
    """A compiled retrieval model (``movie_counts``: train ratings per movie_id_index)."""
    tf.keras.utils.set_random_seed(hp.seed)
    model = RetrievalModel(sizes, hp, movie_counts)
    model.compile(optimizer=make_optimizer(hp.optimizer, hp.learning_rate))
    return model


def build_ranking(sizes: dict[str, int], hp: RankingHParams,
                  mean_rating: float = 3.5) -> RankingModel:
    """A compiled ranking model."""
    tf.keras.utils.set_random_seed(hp.seed)
    model = RankingModel(sizes, hp, mean_rating)
    model.compile(optimizer=make_optimizer(hp.optimizer, hp.learning_rate))
    return model
