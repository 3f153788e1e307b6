"""Retrieval Trainer: ``run_fn`` (the TFX adapter) over ``train_and_export`` (plain paths).

custom_config: ``hparams`` (``RetrievalHParams`` as a dict), ``serving_k`` (items returned
by ``serving_default``) and ``eval_k`` (the k of the top-k accuracy the evaluate signature
reports). The catalogue comes from the Trainer's ``catalogue`` input channel
(``fn_args.catalogue_uri``, set by ``components.recsys_trainer``).
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
    save_warm_start,
    start_from,
)
from recsys_pipeline.trainer.export_metadata import ExportMetadata, Training
from recsys_pipeline.trainer.hparams import RetrievalHParams, from_custom_config
from recsys_pipeline.trainer.warm_start import WarmStart

MODEL_KIND = nodes.RETRIEVAL.name


def train(data: TrainingData, hp: RetrievalHParams, train_files: list[str],
          callbacks: Sequence[tf.keras.callbacks.Callback] = (), *,
          model: Optional[models.RetrievalModel] = None, epochs: Optional[int] = None):
    """Fits the two-tower model (``model``: one already built, e.g. warm-started, trained
    ``epochs``); returns (model, Keras history, seconds)."""
    model = model or models.build_retrieval(data.sizes, hp, data.stats.item_index_counts,
                                            numeric=data.numeric)
    epochs = epochs or hp.epochs
    started = time.monotonic()
    history = model.fit(distribute.shard(data.dataset(train_files, hp.batch_size, shuffle=True,
                                                      seed=hp.seed)),
                        epochs=epochs, verbose=0,
                        callbacks=[EpochProgress(MODEL_KIND, epochs), *callbacks])
    return model, history, time.monotonic() - started


def rated_by_user(data: TrainingData, train_files: list[str]):
    """The exclusion list: catalogue rows each train user rated (``inputs.rated_items``)."""
    users = data.stats.users.ids
    return inputs.rated_items(data.dataset(train_files), users, data.catalogue)


def export_model(model: models.RetrievalModel, data: TrainingData, path: str, *,
                 serving_k: int, eval_k: int, training: Optional[Training] = None,
                 rated: Optional[tuple[np.ndarray, np.ndarray]] = None,
                 start: Optional[WarmStart] = None,
                 hp: Optional[RetrievalHParams] = None,
                 exclude: Optional[bool] = None) -> ExportMetadata:
    """Saves the brute-force export of a trained model; returns its metadata.

    ``rated`` (see ``rated_by_user``): the items each user rated, exported for the two-stage
    recommender; ``exclude`` (default: when given) also drops them when serving and
    evaluating this model. ``hp`` (default: the defaults) sets the unknown users' fallback.
    """
    exclude = rated is not None if exclude is None else exclude and rated is not None
    features = export.ServingFeatures(data.tft_output, data.sizes, data.catalogue, data.stats)
    embeddings = export.catalogue_embeddings(model.candidate_tower, data.catalogue)
    module = export.RetrievalExport(model.query_tower, features, data.catalogue, embeddings,
                                    k=serving_k, eval_k=eval_k, rated=rated, exclude=exclude)
    sample_users = [u.decode() for u in data.stats.users.ids[:4]]
    metadata = export_metadata(
        MODEL_KIND, data, training,
        serving_k=min(serving_k, len(data.catalogue)), eval_k=eval_k,
        catalogue_size=len(data.catalogue),
        popular=export.popular_metadata(data.stats, data.catalogue,
                                         (hp or RetrievalHParams()).popular_half_life_days),
        warmup_inputs={"user_id": sample_users,
                       "timestamp": [data.stats.latest_timestamp] * len(sample_users)},
        exclude_rated=None if not exclude or rated is None else {
            "max_per_user": int(np.diff(rated[1]).max(initial=0)), "pairs": int(len(rated[0]))},
        rated_pairs=None if rated is None else int(len(rated[0])),
        warm_start=start.to_dict() if start else None)
    export.save(module, path, metadata)
    save_warm_start([model], MODEL_KIND, data, path)
    return metadata


def train_and_export(*, train_files: list[str], transform_dir: str, catalogue_dir: str,
                     serving_model_dir: str, hp: RetrievalHParams, serving_k: int,
                     eval_k: int, base_model: Optional[str] = None) -> ExportMetadata:
    """Trains the two-tower model, from ``base_model`` when it fits (``warm_start.py``), and
    saves the brute-force export; returns its metadata."""
    data = load_training_data(transform_dir, train_files, catalogue_dir)
    with distribute.strategy().scope():  # TF_CONFIG's replicas, else one process
        model = models.build_retrieval(data.sizes, hp, data.stats.item_index_counts,
                                       numeric=data.numeric)
        start = start_from(base_model, [model], MODEL_KIND, data, train_files, hp)
    model, history, seconds = train(data, hp, train_files, model=model, epochs=start.epochs)
    written = distribute.output_dir(serving_model_dir)
    metadata = export_model(model, data, written, serving_k=serving_k, eval_k=eval_k,
                            rated=rated_by_user(data, train_files), exclude=hp.exclude_rated,
                            training=Training.of(seconds, history, hp), start=start, hp=hp)
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
        hp=from_custom_config(RetrievalHParams, config["hparams"]),
        serving_k=int(config["serving_k"]),
        eval_k=int(config["eval_k"]),
        base_model=fn_args.base_model,
    )
