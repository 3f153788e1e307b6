"""A tiny Transform output (graph, transformed train/eval, catalogue, raw eval) made in-test.

Thirty users who each like one genre rate twenty items; the layout mirrors the TFX artifacts
the Trainers read (Split-train / Split-eval gzipped tf.Examples, a transform_fn directory).
"""

import pathlib

import numpy as np
import tensorflow as tf

from recsys_pipeline.transform import features as F

GENRES = ["Action", "Comedy", "Drama", "Horror"]
BASE = 880_000_000

_DTYPES = {"bytes": tf.string, "int": tf.int64, "float": tf.float32}
# Every canonical raw feature but a declared log's weight, typed by
# features.RAW_FEATURE_KINDS (genres are a list), and three declared categorical user features,
# as MovieLens' demographics are declared.
USER_FEATURES = {F.user_feature(c): "categorical" for c in ("age", "gender", "occupation")}
RAW_SPEC = {
    **{name: (tf.io.VarLenFeature(_DTYPES[kind]) if name == F.ITEM_GENRES
              else tf.io.FixedLenFeature([], _DTYPES[kind]))
       for name, kind in F.RAW_FEATURE_KINDS.items() if name != F.WEIGHT},
    **{name: tf.io.VarLenFeature(tf.string) for name in USER_FEATURES}}


def items():
    return [(f"m{i}", f"Item {i} ({1990 + i})", [GENRES[i % 4]] + ([GENRES[(i + 1) % 4]]
                                                                      if i % 5 == 0 else []))
            for i in range(20)]


def ratings(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(30):
        liked = GENRES[u % 4]
        for item, title, genres in items():
            if rng.random() < 0.6:
                rating = 5.0 if liked in genres else float(rng.integers(1, 3))
                rows.append({
                    F.USER_ID: f"u{u}".encode(), F.ITEM_ID: item.encode(),
                    F.ITEM_TITLE: title.encode(), F.ITEM_GENRES: [g.encode() for g in genres],
                    F.TIMESTAMP: BASE + int(rng.integers(0, 10**7)), F.USER_RATING: rating,
                    F.user_feature("gender"): [b"MF"[u % 2:u % 2 + 1]],
                    F.user_feature("age"): [str(20 + u % 3).encode()],
                    F.user_feature("occupation"): [[b"writer", b"other"][u % 2]]})
    return [rows[i] for i in rng.permutation(len(rows))]


def to_example(row):
    feature = {}
    for key, value in row.items():
        values = value if isinstance(value, (list, np.ndarray)) else [value]
        values = list(np.asarray(values).reshape(-1)) if not isinstance(value, list) else values
        if values and isinstance(values[0], (bytes, np.bytes_)):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif values and isinstance(values[0], (float, np.floating)):
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        else:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(
                value=[int(v) for v in values]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_records(directory: pathlib.Path, rows) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(directory / "data-00000-of-00001.gz"), options) as w:
        for row in rows:
            w.write(to_example(row).SerializeToString())


class TinyArtifacts:
    def __init__(self, root: pathlib.Path):
        self.root = root
        self.transform_dir = str(root / "transform_graph")
        self.train_files = [str(root / "transformed" / "Split-train" / "*")]
        self.eval_files = [str(root / "transformed" / "Split-eval" / "*")]
        self.catalogue_dir = str(root / "catalogue" / "Split-catalogue")
        self.raw_eval_dir = str(root / "examples" / "Split-eval")


K = 5


def assert_unrated(users, served, rated, catalogue):
    """No served item is one the user rated; the places left over are -inf padding."""
    for user, items, scores in zip(users, served["item_ids"], served["scores"], strict=True):
        finite = np.isfinite(scores)
        assert not set(items[finite]) & rated[user]
        assert finite.sum() == min(K, catalogue - len(rated[user]))


def rated_items(tiny):
    """user id -> the item ids the user rated in ``tiny``'s train split (raw bytes)."""
    out: dict[bytes, set] = {}
    for r in tiny.raw_train_rows:
        out.setdefault(r[F.USER_ID], set()).add(r[F.ITEM_ID])
    return out
