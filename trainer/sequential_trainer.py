"""GRU4Rec Trainer: ``run_fn`` (the TFX adapter) over ``train_and_export`` (plain paths).

custom_config: ``hparams`` (``SequentialHParams`` as a dict), ``serving_k`` and ``eval_k``
as for the retrieval Trainer.

Each rating's context is the same user's train ratings *strictly* before it, read from the
train split's time-sorted ``inputs.UserHistory`` by ``inputs.history_context``: the training
input, the ``evaluate`` signature TFMA calls and the ``recommend`` signature all use that one
function over the one table (exported with the model), so what the model was trained on and
what it is evaluated and served with cannot drift apart. The candidates are the item
vocabulary (an id-only model has nothing to say about an item no one rated in train).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from recsys_pipeline.pipeline import nodes
from recsys_pipeline.trainer import distribute, export, inputs, models
from recsys_pipeline.trainer.common import (
    EpochProgress,
    TrainingData,
    export_metadata,
    load_training_data,
)
from recsys_pipeline.trainer.export_metadata import ExportMetadata, Training
from recsys_pipeline.trainer.hparams import SequentialHParams, from_custom_config
from recsys_pipeline.transform import features as F

MODEL_KIND = nodes.SEQUENTIAL.name


def with_context(dataset: tf.data.Dataset, history: inputs.UserHistory,
                 length: int) -> tf.data.Dataset:
    """Adds ``context_items_index`` (``inputs.history_context``) to batched model features."""
    keys, items = tf.constant(history.keys), tf.constant(history.items)

    def add(f):
        return {**f, F.CONTEXT_INDEX: inputs.history_context(
            keys, items, f[F.index_name(F.USER_ID)], f[F.TIMESTAMP], length)}
    return dataset.map(add, num_parallel_calls=inputs.AUTOTUNE).prefetch(inputs.AUTOTUNE)


def train(data: TrainingData, hp: SequentialHParams, train_files: list[str],
          history: inputs.UserHistory, callbacks: Sequence[tf.keras.callbacks.Callback] = ()):
    """Fits GRU4Rec; returns (model, Keras history, seconds)."""
    with distribute.strategy().scope():  # TF_CONFIG's replicas, else one process
        model = models.build_sequential(data.sizes[F.index_name(F.ITEM_ID)], hp,
                                        data.stats.item_index_counts)
    started = time.monotonic()
    fit = model.fit(distribute.shard(with_context(
                        data.dataset(train_files, hp.batch_size, shuffle=True, seed=hp.seed),
                        history, hp.context_length)),
                    epochs=hp.epochs, verbose=0,
                    callbacks=[EpochProgress(MODEL_KIND, hp.epochs), *callbacks])
    return model, fit, time.monotonic() - started


def export_model(model: models.RetrievalModel, data: TrainingData, history: inputs.UserHistory,
                 path: str, *, hp: SequentialHParams, serving_k: int, eval_k: int,
                 training: Optional[Training] = None) -> ExportMetadata:
    """Saves the GRU4Rec export (``export.SequentialHistoryExport``); returns its metadata."""
    vocabulary = np.array(data.tft_output.vocabulary_by_name(F.ITEM_ID), dtype=object)
    rows = np.arange(len(vocabulary), dtype=np.int64)
    embeddings = model.candidate_tower({F.index_name(F.ITEM_ID): rows}).numpy()
    features = export.ServingFeatures(data.tft_output, data.sizes, data.catalogue, data.stats)
    module = export.SequentialHistoryExport(
        model.query_tower, vocabulary, embeddings, k=serving_k, context_length=hp.context_length,
        history=history, features=features, eval_k=eval_k)
    # Warm-up: the most-rated items as a context, and an empty one (a user's first visit);
    # for ``recommend``, two train users at the latest train time.
    popular = [m.decode() for m, _ in data.stats.popular(hp.context_length)]
    users = [u.decode() for u in data.stats.users.ids[:2]]
    metadata = export_metadata(
        MODEL_KIND, data, training, serving_k=min(serving_k, len(vocabulary)), eval_k=eval_k,
        context_length=hp.context_length, candidates=len(vocabulary),
        history_ratings=int(len(history.keys) - 1),
        warmup_inputs={"context_items": [popular, [""] * len(popular)],
                       "user_id": (users * 2)[:2],
                       "timestamp": [data.stats.latest_timestamp] * 2})
    export.save(module, path, metadata)
    return metadata


def train_and_export(*, train_files: list[str], transform_dir: str, catalogue_dir: str,
                     serving_model_dir: str, hp: SequentialHParams, serving_k: int,
                     eval_k: int) -> ExportMetadata:
    """Trains GRU4Rec on the train split's contexts and saves its export; its metadata."""
    data = load_training_data(transform_dir, train_files, catalogue_dir)
    history = inputs.user_history(data.dataset(train_files))
    model, fit, seconds = train(data, hp, train_files, history)
    written = distribute.output_dir(serving_model_dir)
    metadata = export_model(model, data, history, written, hp=hp, serving_k=serving_k,
                            eval_k=eval_k, training=Training.of(seconds, fit, hp))
    distribute.discard(written, serving_model_dir)
    return metadata


def run_fn(fn_args) -> None:
    """TFX Trainer entry point."""
    config = fn_args.custom_config or {}
    train_and_export(
        train_files=fn_args.train_files,
        transform_dir=fn_args.transform_output,
        catalogue_dir=fn_args.catalogue_uri,
        serving_model_dir=fn_args.serving_model_dir,
        hp=from_custom_config(SequentialHParams, config["hparams"]),
        serving_k=int(config["serving_k"]),
        eval_k=int(config["eval_k"]),
    )
