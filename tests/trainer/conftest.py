"""A tiny Transform output (graph, transformed train/eval, catalogue, raw eval) made in-test.

Thirty users who each like one genre rate twenty movies; the layout mirrors the TFX artifacts
the Trainers read (Split-train / Split-eval gzipped tf.Examples, a transform_fn directory).
"""

import pathlib
import pickle

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from recsys_pipeline.trainer.common import load_training_data
from recsys_pipeline.transform import features as F
from recsys_pipeline.transform.preprocessing import preprocessing_fn
from tests.conftest import beam_pipeline

GENRES = ["Action", "Comedy", "Drama", "Horror"]
BASE = 880_000_000

_DTYPES = {"bytes": tf.string, "int": tf.int64, "float": tf.float32}
# Every raw feature but the zip code, typed by features.RAW_FEATURE_KINDS; genres are a list.
RAW_SPEC = {
    name: (tf.io.VarLenFeature(_DTYPES[kind]) if name == F.MOVIE_GENRES
           else tf.io.FixedLenFeature([], _DTYPES[kind]))
    for name, kind in F.RAW_FEATURE_KINDS.items() if name != F.USER_ZIP_CODE}


def movies():
    return [(f"m{i}", f"Movie {i} ({1990 + i})", [GENRES[i % 4]] + ([GENRES[(i + 1) % 4]]
                                                                      if i % 5 == 0 else []))
            for i in range(20)]


def ratings(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(30):
        liked = GENRES[u % 4]
        for movie, title, genres in movies():
            if rng.random() < 0.6:
                rating = 5.0 if liked in genres else float(rng.integers(1, 3))
                rows.append({
                    F.USER_ID: f"u{u}".encode(), F.MOVIE_ID: movie.encode(),
                    F.MOVIE_TITLE: title.encode(), F.MOVIE_GENRES: [g.encode() for g in genres],
                    F.TIMESTAMP: BASE + int(rng.integers(0, 10**7)), F.USER_RATING: rating,
                    F.USER_GENDER: b"MF"[u % 2:u % 2 + 1], F.USER_AGE: 20 + u % 3,
                    F.USER_OCCUPATION: [b"writer", b"other"][u % 2]})
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


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyArtifacts:
    root = tmp_path_factory.mktemp("tiny")
    rows = ratings()
    train, evaluation = rows[: int(len(rows) * 0.8)], rows[int(len(rows) * 0.8):]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with beam_pipeline() as p, tft_beam.Context(temp_dir=str(root / "tmp")):
        fn = lambda inputs: preprocessing_fn(inputs, {"timestamp_buckets": 4})  # noqa: E731
        (out_train, _), transform_fn = (
            (p | "train" >> beam.Create(train), metadata)
            | tft_beam.AnalyzeAndTransformDataset(fn))
        out_eval, _ = (((p | "eval" >> beam.Create(evaluation), metadata), transform_fn)
                       | tft_beam.TransformDataset())
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform_graph"))
        for name, pcoll in (("train", out_train), ("eval", out_eval)):
            path = root / f"{name}.pkl"
            _ = (pcoll | f"list_{name}" >> beam.combiners.ToList()
                 | f"save_{name}" >> beam.Map(
                     lambda rs, path=path: path.write_bytes(pickle.dumps(rs))))
    # TFX's Transform also writes the raw schema next to transform_fn; exports parse with it.
    metadata_io.write_metadata(metadata, str(root / "transform_graph" / "metadata"))
    artifacts = TinyArtifacts(root)
    for name in ("train", "eval"):
        transformed = pickle.loads((root / f"{name}.pkl").read_bytes())
        write_records(root / "transformed" / f"Split-{name}", transformed)
    write_records(root / "catalogue" / "Split-catalogue",
                  [{F.MOVIE_ID: m.encode(), F.MOVIE_TITLE: t.encode(),
                    F.MOVIE_GENRES: [g.encode() for g in gs]} for m, t, gs in movies()])
    train_users = {r[F.USER_ID] for r in train}
    # Serving looks demographics up by user id: compare on users the train split knows.
    evaluation = [r for r in evaluation if r[F.USER_ID] in train_users]
    write_records(root / "examples" / "Split-eval", evaluation)
    artifacts.raw_eval_rows = evaluation
    artifacts.raw_train_rows = train
    return artifacts


K = 5


@pytest.fixture(scope="session")
def retrieval(tiny, tmp_path_factory):
    """(in-memory model, export path, metadata) of a retrieval model trained on ``tiny``."""
    from recsys_pipeline.trainer import retrieval_trainer
    from recsys_pipeline.trainer.hparams import RetrievalHParams

    data = load_training_data(tiny.transform_dir, tiny.train_files, tiny.catalogue_dir)
    # Title words on: the export must carry every candidate feature the tower reads.
    hp = RetrievalHParams(embedding_dim=8, epochs=3, title_text=True)
    model, _, _ = retrieval_trainer.train(data, hp, tiny.train_files)
    path = tmp_path_factory.mktemp("export") / "retrieval"
    metadata = retrieval_trainer.export_model(model, data, str(path), serving_k=K, eval_k=K)
    return model, str(path), metadata


@pytest.fixture(scope="module")
def data(tiny):
    return load_training_data(tiny.transform_dir, tiny.train_files, tiny.catalogue_dir)


@pytest.fixture(scope="module")
def excluding(retrieval, data, tiny, tmp_path_factory):
    """The ``retrieval`` fixture's model exported with the exclusion list."""
    from recsys_pipeline.trainer import retrieval_trainer

    model, _, _ = retrieval
    rated = retrieval_trainer.rated_by_user(data, tiny.train_files)
    path = tmp_path_factory.mktemp("export") / "excluding"
    metadata = retrieval_trainer.export_model(model, data, str(path), serving_k=K, eval_k=K,
                                              rated=rated)
    return str(path), metadata


def assert_unrated(users, served, rated, catalogue):
    """No served movie is one the user rated; the places left over are -inf padding."""
    for user, movies, scores in zip(users, served["movie_ids"], served["scores"], strict=True):
        finite = np.isfinite(scores)
        assert not set(movies[finite]) & rated[user]
        assert finite.sum() == min(K, catalogue - len(rated[user]))


def rated_movies(tiny):
    """user id -> the movie ids the user rated in ``tiny``'s train split (raw bytes)."""
    out: dict[bytes, set] = {}
    for r in tiny.raw_train_rows:
        out.setdefault(r[F.USER_ID], set()).add(r[F.MOVIE_ID])
    return out
