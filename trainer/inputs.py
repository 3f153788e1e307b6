"""Trainer inputs: tf.data over the Transform output, the item catalogue, and the user table.

Everything here reads TFX artifacts by path and returns plain tensors/arrays; vocabulary
sizes come from the Transform output (``vocab_sizes``), never from code.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import numpy as np
import tensorflow as tf

from recsys_pipeline.errors import DataError
from recsys_pipeline.transform import features as F

AUTOTUNE = tf.data.AUTOTUNE
# Batch size of passes that only read the data (statistics, exclusion lists, evaluation):
# large, since nothing is trained on these batches.
READ_BATCH_SIZE = 8192


def vocab_sizes(tft_output) -> dict[str, int]:
    """Number of ids (out-of-vocabulary included) of every integer feature Transform wrote."""
    spec = tft_output.transformed_feature_spec()
    names = ((F.index_name(F.USER_ID),) + F.ITEM_INDEX_FEATURES + F.ITEM_LIST_FEATURES
             + (F.TIMESTAMP_BUCKET,) + F.declared_item_inputs(spec)[0]
             + F.declared_user_inputs(spec)[0])
    return {n: int(tft_output.num_buckets_for_transformed_feature(n)) for n in names if n in spec}


def numeric_features(tft_output) -> tuple[str, ...]:
    """The declared numeric item and user features (z-scores) Transform wrote, sorted."""
    spec = tft_output.transformed_feature_spec()
    return F.declared_item_inputs(spec)[1] + F.declared_user_inputs(spec)[1]


def to_model_features(parsed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """Parsed (or Transform-layer) features -> the Trainers' dense convention (features.py)."""
    out = {}
    for name, value in parsed.items():
        if isinstance(value, tf.SparseTensor):
            out[name] = tf.sparse.to_dense(
                value, default_value=tf.constant(F.LIST_PADDING, value.dtype))
        elif value.shape.rank == 2 and value.shape[1] == 1:
            out[name] = tf.squeeze(value, axis=1)
        else:
            out[name] = value
    return out


def files(patterns: str | list[str]) -> list[str]:
    """The data files of split directories or globs, sorted; an error if there are none."""
    found = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        if tf.io.gfile.isdir(pattern):
            pattern = os.path.join(pattern, "*")
        found += tf.io.gfile.glob(pattern)
    if not found:
        raise DataError(f"no data files match {patterns}")
    return sorted(found)


def transformed_dataset(pattern: str | list[str], feature_spec: dict, batch_size: int, *,
                        shuffle: bool = False, seed: int = 0,
                        cache: bool = True) -> tf.data.Dataset:
    """Batches of model features from gzipped tf.Example TFRecords (the Transform output).

    Records are cached serialized (small) and parsed per batch in parallel, so both cores
    parse while the model trains.
    """
    ds = tf.data.TFRecordDataset(files(pattern), compression_type="GZIP",
                                 num_parallel_reads=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(200_000, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda x: to_model_features(tf.io.parse_example(x, feature_spec)),
                num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


@dataclasses.dataclass
class Catalogue:
    """Every item, in a fixed row order: raw ids and titles, and transformed features."""

    item_ids: np.ndarray  # bytes, [N]
    titles: np.ndarray  # bytes, [N]
    # item_id_index/item_title_index and declared numeric z-scores [N]; id lists (genres,
    # title tokens, declared vocabulary features) [N, longest list]
    features: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.item_ids)

    def row_of(self) -> dict[bytes, int]:
        return {m: i for i, m in enumerate(self.item_ids)}


def load_catalogue(catalogue_dir: str, tft_output) -> Catalogue:
    """Reads ExampleGen's catalogue split and applies the Transform graph to it."""
    raw_spec = {k: v for k, v in tft_output.raw_feature_spec().items()
                if k in F.ITEM_FEATURES or F.is_item_feature(k)}
    layer = tft_output.transform_features_layer()
    transformed_spec = tft_output.transformed_feature_spec()
    declared_lists, numeric = F.declared_item_inputs(transformed_spec)
    lists = [n for n in F.ITEM_LIST_FEATURES if n in transformed_spec] + list(declared_lists)
    scalars = F.ITEM_INDEX_FEATURES + numeric
    ids, titles, feats = [], [], []
    ds = tf.data.TFRecordDataset(files(catalogue_dir), compression_type="GZIP").batch(4096)
    for batch in ds:
        raw = tf.io.parse_example(batch, raw_spec)
        transformed = to_model_features(layer(raw))
        ids.append(transformed[F.ITEM_ID].numpy())
        titles.append(transformed[F.ITEM_TITLE].numpy())
        feats.append({n: transformed[n].numpy() for n in scalars + tuple(lists)})
    if not ids:
        raise DataError(f"the item catalogue at {catalogue_dir} is empty")
    features = {n: np.concatenate([f[n] for f in feats]) for n in scalars}
    for name in lists:  # each batch is padded to its own longest list: pad to the longest of all
        width = max(f[name].shape[1] for f in feats)
        features[name] = np.concatenate([
            np.pad(f[name], ((0, 0), (0, width - f[name].shape[1])),
                   constant_values=F.LIST_PADDING) for f in feats])
    return Catalogue(np.concatenate(ids), np.concatenate(titles), features)


@dataclasses.dataclass
class UserTable:
    """Each train user's features as a request cannot send them: the declared user features
    (MovieLens' demographics among them), one row per user in sorted id order (the values of
    the user's first train example read). The export looks a request's user up in it."""

    ids: np.ndarray  # bytes [U], sorted
    # [U] vocabulary ids or z-scores; [U, longest list] id lists padded with LIST_PADDING
    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


def _user_columns(batch: dict[str, np.ndarray]) -> tuple[str, ...]:
    lists, numeric = F.declared_user_inputs(batch)
    return lists + numeric


def _pad(blocks: list[np.ndarray]) -> np.ndarray:
    """Blocks of [rows] or [rows, width] into one array, lists padded to the widest."""
    if blocks[0].ndim == 1:
        return np.concatenate(blocks)
    width = max(b.shape[1] for b in blocks)
    return np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1])),
                                  constant_values=F.LIST_PADDING) for b in blocks])


def user_table(ids: list[np.ndarray], blocks: dict[str, list[np.ndarray]]) -> UserTable:
    """The table of per-batch (ids, columns) blocks: each user's first row."""
    if not ids:
        return UserTable(np.zeros(0, object), {})
    all_ids = np.concatenate(ids)
    users, first = np.unique(all_ids, return_index=True)
    return UserTable(users.astype(object), {n: _pad(b)[first] for n, b in blocks.items()})


@dataclasses.dataclass
class TrainStats:
    """What one pass over the train split tells the Trainers and the export."""

    num_examples: int
    mean_rating: float
    latest_timestamp: int
    item_counts: dict[bytes, int]
    item_index_counts: np.ndarray  # train ratings per item_id_index
    users: UserTable
    # Every train rating's item id and timestamp, for fallbacks of any recency weighting.
    rated_item_ids: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, object))
    rated_timestamps: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros(0, np.int64))

    def popular(self, n: int) -> list[tuple[bytes, int]]:
        """The n most-rated items (ties by id, for determinism)."""
        return sorted(self.item_counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]

    def recent_popular(self, n: int, half_life_days: float) -> list[tuple[bytes, float]]:
        """The n items with the most recency-weighted ratings: each rating counts
        0.5 ** (its age before the newest train rating / half_life_days); 0 = counts."""
        if half_life_days <= 0:
            return [(m, float(c)) for m, c in self.popular(n)]
        return recent_popular(self.rated_item_ids, self.rated_timestamps, n, half_life_days)


DAY = 86_400  # seconds


def recent_popular(item_ids: np.ndarray, timestamps: np.ndarray, n: int,
                   half_life_days: float) -> list[tuple[bytes, float]]:
    """The n items with the highest sum over their ratings of 0.5 ** (age / half_life_days),
    age in days before the newest rating (ties by id); 0 = rating counts."""
    items, inverse = np.unique(item_ids, return_inverse=True)
    if half_life_days > 0:
        age_days = (timestamps.max() - timestamps) / DAY
        weights = 0.5 ** (age_days / half_life_days)
    else:
        weights = np.ones(len(item_ids))
    scores = np.bincount(inverse, weights=weights, minlength=len(items))
    return sorted(zip(items.tolist(), scores.tolist(), strict=True),
                  key=lambda kv: (-kv[1], kv[0]))[:n]


def train_stats(dataset: tf.data.Dataset, num_item_ids: int) -> TrainStats:
    """One pass over batched model features (see ``transformed_dataset``)."""
    n, rating_sum, latest = 0, 0.0, 0
    index_counts = np.zeros(num_item_ids, np.int64)
    counts: dict[bytes, int] = {}
    user_ids: list[np.ndarray] = []
    user_blocks: dict[str, list[np.ndarray]] = {}
    rated: list[np.ndarray] = []
    rated_at: list[np.ndarray] = []
    for batch in _numpy_batches(dataset):
        n += len(batch[F.ITEM_ID])
        rating_sum += float(batch[F.LABEL].sum())
        latest = max(latest, int(batch[F.TIMESTAMP].max()))
        index_counts += np.bincount(batch[F.index_name(F.ITEM_ID)], minlength=num_item_ids)
        items, item_counts = np.unique(batch[F.ITEM_ID], return_counts=True)
        for m, c in zip(items.tolist(), item_counts.tolist(), strict=True):
            counts[m] = counts.get(m, 0) + c
        rated.append(batch[F.ITEM_ID])
        rated_at.append(batch[F.TIMESTAMP])
        ids, first = np.unique(batch[F.USER_ID], return_index=True)
        user_ids.append(ids)
        for name in _user_columns(batch):
            user_blocks.setdefault(name, []).append(batch[name][first])
    if n == 0:
        raise DataError("the train split is empty: nothing to train on (check split.eval_fraction "
                        "or split.cutoff_timestamp)")
    return TrainStats(n, rating_sum / n, latest, counts, index_counts,
                      user_table(user_ids, user_blocks),
                      np.concatenate(rated), np.concatenate(rated_at).astype(np.int64))


def rated_items(dataset: tf.data.Dataset, users: np.ndarray,
                 catalogue: Catalogue) -> tuple[np.ndarray, np.ndarray]:
    """Catalogue rows each user rated, as ragged row splits over ``users`` (sorted ids).

    Returns ``(values, splits)``: user i rated ``values[splits[i]:splits[i + 1]]``. ``splits``
    has one extra entry so that row ``len(users)`` (an unknown user) is empty. Built from
    numpy arrays per batch: no Python object per rating.
    """
    by_id = np.argsort(catalogue.item_ids)
    sorted_items = catalogue.item_ids[by_id]
    user_rows, item_rows = [], []
    for batch in _numpy_batches(dataset):
        user_rows.append(_rows(users, batch[F.USER_ID]))
        found = _rows(sorted_items, batch[F.ITEM_ID])
        item_rows.append(np.where(found >= 0, by_id[np.maximum(found, 0)], -1))
    u = np.concatenate(user_rows) if user_rows else np.zeros(0, np.int64)
    m = np.concatenate(item_rows) if item_rows else np.zeros(0, np.int64)
    keep = (m >= 0) & (u >= 0)
    u, m = u[keep], m[keep]
    order = np.lexsort((m, u))
    counts = np.bincount(u, minlength=len(users))
    splits = np.concatenate([[0], np.cumsum(counts), [len(u)]]).astype(np.int64)
    return m[order].astype(np.int64), splits


# A (user, time) key: user_id_index in the high bits, the timestamp (seconds, clipped to 32
# bits) in the low ones, so one sorted int64 array orders ratings by user, then time.
_TIME_BITS = 32
_MAX_TIME = (1 << _TIME_BITS) - 1


def history_key(user_index, timestamp):
    """The (user, time) sort key of ``UserHistory`` (numpy arrays or tensors)."""
    if isinstance(user_index, np.ndarray):
        return (user_index.astype(np.int64) << _TIME_BITS) | np.clip(
            timestamp, 0, _MAX_TIME).astype(np.int64)
    return tf.bitwise.bitwise_or(
        tf.bitwise.left_shift(tf.cast(user_index, tf.int64), _TIME_BITS),
        tf.clip_by_value(tf.cast(timestamp, tf.int64), 0, _MAX_TIME))


@dataclasses.dataclass
class UserHistory:
    """Every train rating as (user, time) key and item_id_index, sorted by key, then item.

    The GRU4Rec context of a (user, time) is read from it (``history_context``) in the same way
    at training, evaluation and serving. The last entry is a sentinel (largest key, no item),
    so that a lookup never indexes past the end, even with no history at all.
    """

    keys: np.ndarray
    items: np.ndarray


def user_history(dataset: tf.data.Dataset) -> UserHistory:
    """One pass over batched model features; numpy arrays per batch, no object per rating."""
    keys, items = [np.array([np.iinfo(np.int64).max])], [np.array([F.LIST_PADDING])]
    for batch in _numpy_batches(dataset):
        keys.append(history_key(batch[F.index_name(F.USER_ID)], batch[F.TIMESTAMP]))
        items.append(batch[F.index_name(F.ITEM_ID)])
    k, m = np.concatenate(keys).astype(np.int64), np.concatenate(items).astype(np.int64)
    order = np.lexsort((m, k))
    return UserHistory(k[order], m[order])


def history_context(keys: tf.Tensor, items: tf.Tensor, user_index: tf.Tensor,
                    timestamp: tf.Tensor, length: int) -> tf.Tensor:
    """[batch, length] item_id_index: each user's items rated *strictly* before
    ``timestamp`` (a same-second rating is not before), oldest first, the most recent last,
    left-padded with LIST_PADDING. ``keys``/``items``: a ``UserHistory``'s arrays."""
    start = tf.searchsorted(keys, history_key(user_index, tf.zeros_like(timestamp)),
                            out_type=tf.int64)
    cut = tf.searchsorted(keys, history_key(user_index, timestamp), out_type=tf.int64)
    positions = cut[:, None] - length + tf.range(length, dtype=tf.int64)[None, :]
    found = tf.gather(items, tf.maximum(positions, 0))
    return tf.where(positions >= start[:, None], found, tf.constant(F.LIST_PADDING, tf.int64))


def _rows(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Positions of ``keys`` in ``sorted_keys``; -1 where absent."""
    if len(sorted_keys) == 0:
        return np.full(len(keys), -1)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == keys, pos, -1)


def _numpy_batches(dataset: tf.data.Dataset) -> Iterator[dict[str, np.ndarray]]:
    for batch in dataset:
        yield {k: v.numpy() for k, v in batch.items()}
