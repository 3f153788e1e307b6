"""tf.Transform ``preprocessing_fn``: vocabularies, timestamp buckets and z-score.

Outputs, named in ``features.py``:
  * ``<name>_index`` for user_id, item_id, item_title, item_genres (sparse): ids from
    vocabulary files named after the raw feature (plus NUM_OOV_BUCKETS out-of-vocabulary
    ids). Trainers read the sizes from the Transform output, never from code.
  * ``item_title_tokens_index`` (sparse): the title's words (``title_tokens``) through a
    vocabulary Transform fits on them -- the candidate tower's text feature.
  * ``timestamp_bucket``: quantile bucket of the timestamp; ``timestamp_z``: its z-score.
  * ``user_rating`` (label) and the raw ids/title, passed through.
  * declared item and user features (``custom_config["declared_features"]``, raw name ->
    kind, each a list of 0 or 1 values, or more for multi_categorical; MovieLens'
    demographics are declared user features): ``<name>_index`` (sparse vocabulary ids:
    the value, the values, or the words of a text) or ``<name>_z`` (the z-score, of
    log(1 + x) for log_numeric; 0, the mean, for an item without a value).
"""

from __future__ import annotations

from typing import Any, Optional

import tensorflow as tf
import tensorflow_transform as tft

from recsys_pipeline.data import declaration as D
from recsys_pipeline.transform import features as F


def _vocab(values, name: str):
    return tft.compute_and_apply_vocabulary(
        values, vocab_filename=name, num_oov_buckets=F.NUM_OOV_BUCKETS)


def title_tokens(titles: tf.Tensor) -> tf.SparseTensor:
    """Words of each title: lower-cased runs of letters and digits ("Heat (1995)" -> heat, 1995).

    ``titles`` is [batch] or [batch, 1]; the result is [batch, words] sparse, one row per title.
    """
    text = tf.strings.lower(tf.reshape(titles, [-1]), encoding="utf-8")
    # RE2's Unicode classes keep accented letters (titles are UTF-8) inside their words.
    text = tf.strings.strip(tf.strings.regex_replace(text, r"[^\pL\pN]+", " "))
    return tf.strings.split(text).to_sparse()


def _one_column(values: tf.SparseTensor) -> tf.SparseTensor:
    """A [batch, at most 1] sparse feature as [batch, 1] (a batch where no row has a value
    has width 0)."""
    return tf.sparse.reset_shape(
        values, tf.stack([values.dense_shape[0], tf.constant(1, tf.int64)]))


def _declared(values: tf.SparseTensor, name: str, kind: str) -> tuple[str, Any]:
    """(transformed name, value) of one declared feature (see module docstring)."""
    if kind in (D.CATEGORICAL, D.MULTI_CATEGORICAL):
        return F.index_name(name), _vocab(values, name)
    if kind == D.TEXT:
        text = tf.sparse.to_dense(_one_column(values), default_value="")
        return F.index_name(name), _vocab(title_tokens(text), name)
    if kind in (D.NUMERIC, D.LOG_NUMERIC):
        numbers = tf.cast(values.values, tf.float64)
        if kind == D.LOG_NUMERIC:
            numbers = tf.math.log1p(numbers)
        z = tft.scale_to_z_score(tf.SparseTensor(values.indices, numbers, values.dense_shape))
        dense = tf.sparse.to_dense(_one_column(z))
        return F.numeric_name(name), tf.cast(tf.reshape(dense, [-1]), tf.float32)
    raise ValueError(f"item feature {name!r} has unknown kind {kind!r}")


def preprocessing_fn(inputs: dict[str, Any],
                     custom_config: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Maps raw features to model features (see module docstring)."""
    custom_config = custom_config or {}
    buckets = int(custom_config.get("timestamp_buckets", F.DEFAULT_TIMESTAMP_BUCKETS))
    outputs: dict[str, Any] = {}

    for name in F.VOCAB_FEATURES:
        outputs[F.index_name(name)] = _vocab(inputs[name], name)
    outputs[F.TITLE_TOKENS_INDEX] = _vocab(title_tokens(inputs[F.ITEM_TITLE]),
                                           F.ITEM_TITLE_TOKENS)

    timestamp = inputs[F.TIMESTAMP]
    outputs[F.TIMESTAMP_BUCKET] = tft.bucketize(timestamp, num_buckets=buckets)
    # float64: Unix seconds (~1e9) lose whole minutes in float32 before centering.
    outputs[F.TIMESTAMP_Z] = tf.cast(
        tft.scale_to_z_score(tf.cast(timestamp, tf.float64)), tf.float32)

    for name, kind in sorted(custom_config.get(F.DECLARED_FEATURES_CONFIG, {}).items()):
        transformed, value = _declared(inputs[name], name, kind)
        outputs[transformed] = value

    outputs[F.LABEL] = inputs[F.USER_RATING]
    if F.WEIGHT in inputs:  # declared by the log (its schema has it), else every example is 1
        outputs[F.WEIGHT] = inputs[F.WEIGHT]
    for name in F.PASSTHROUGH_FEATURES:
        outputs[name] = inputs[name]
    return outputs
