"""The fixtures many test folders share, registered once, by tests/conftest.py only.

A fixture function imported into several conftest or test modules becomes one fixture per
module, each built anew (a "session" fixture included): so these are defined here, and no
other module imports them. Each xdist worker then builds the tiny Transform output, the
retrieval model and the two-stage exports once. Heavy imports stay inside the functions, so
that collecting any test does not import TensorFlow.
"""

import pytest

CANDIDATES = 20  # the whole tiny catalogue: a reference sees every candidate
WHEN = 880_000_000


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The tiny Transform output (tests/trainer/conftest.py, TinyArtifacts)."""
    import pickle

    import apache_beam as beam
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from recsys_pipeline.transform import features as F
    from recsys_pipeline.transform.preprocessing import preprocessing_fn
    from tests.conftest import beam_pipeline
    from tests.trainer.conftest import (
        RAW_SPEC,
        USER_FEATURES,
        TinyArtifacts,
        items,
        ratings,
        write_records,
    )

    root = tmp_path_factory.mktemp("tiny")
    rows = ratings()
    train, evaluation = rows[: int(len(rows) * 0.8)], rows[int(len(rows) * 0.8):]
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    with beam_pipeline() as p, tft_beam.Context(temp_dir=str(root / "tmp")):
        fn = lambda inputs: preprocessing_fn(  # noqa: E731
            inputs, {"timestamp_buckets": 4, F.DECLARED_FEATURES_CONFIG: USER_FEATURES})
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
                  [{F.ITEM_ID: m.encode(), F.ITEM_TITLE: t.encode(),
                    F.ITEM_GENRES: [g.encode() for g in gs]} for m, t, gs in items()])
    train_users = {r[F.USER_ID] for r in train}
    # Serving looks user features up by user id: compare on users the train split knows.
    evaluation = [r for r in evaluation if r[F.USER_ID] in train_users]
    write_records(root / "examples" / "Split-eval", evaluation)
    artifacts.raw_eval_rows = evaluation
    artifacts.raw_train_rows = train
    return artifacts


def _training_data(tiny):
    from recsys_pipeline.trainer.common import load_training_data

    return load_training_data(tiny.transform_dir, tiny.train_files, tiny.catalogue_dir)


@pytest.fixture(scope="session")
def retrieval(tiny, tmp_path_factory):
    """(in-memory model, export path, metadata) of a retrieval model trained on ``tiny``."""
    from recsys_pipeline.trainer import retrieval_trainer
    from recsys_pipeline.trainer.hparams import RetrievalHParams
    from tests.trainer.conftest import K

    data = _training_data(tiny)
    # Title words on: the export must carry every candidate feature the tower reads.
    hp = RetrievalHParams(embedding_dim=8, epochs=3, title_text=True)
    model, _, _ = retrieval_trainer.train(data, hp, tiny.train_files)
    path = tmp_path_factory.mktemp("export") / "retrieval"
    metadata = retrieval_trainer.export_model(model, data, str(path), serving_k=K, eval_k=K)
    return model, str(path), metadata


@pytest.fixture(scope="module")
def data(tiny):
    return _training_data(tiny)


@pytest.fixture(scope="module")
def excluding(retrieval, data, tiny, tmp_path_factory):
    """The ``retrieval`` fixture's model exported with the exclusion list."""
    from recsys_pipeline.trainer import retrieval_trainer
    from tests.trainer.conftest import K

    model, _, _ = retrieval
    rated = retrieval_trainer.rated_by_user(data, tiny.train_files)
    path = tmp_path_factory.mktemp("export") / "excluding"
    metadata = retrieval_trainer.export_model(model, data, str(path), serving_k=K, eval_k=K,
                                              rated=rated)
    return str(path), metadata


@pytest.fixture(scope="session")
def stages(retrieval, tiny, tmp_path_factory):
    """(retrieval dir, ScaNN dir, ranking dir): the retrieval export with its rated items
    (not excluded from its own serving), its ScaNN index, and a ranking export; read, never
    written, by the tests."""
    from recsys_pipeline.serving import index
    from recsys_pipeline.trainer import ranking_trainer, retrieval_trainer
    from recsys_pipeline.trainer.hparams import RankingHParams

    data = _training_data(tiny)
    root = tmp_path_factory.mktemp("two_stage")
    model, _, _ = retrieval
    rated = retrieval_trainer.rated_by_user(data, tiny.train_files)
    retrieval_dir = str(root / "retrieval")
    retrieval_trainer.export_model(model, data, retrieval_dir, serving_k=CANDIDATES, eval_k=5,
                                   rated=rated, exclude=False)
    users = sorted({r["user_id"].decode() for r in tiny.raw_train_rows})
    scann_dir = str(root / "scann")
    index.build_scann_export(retrieval_dir, scann_dir, index.IndexParams(
        k=CANDIDATES, recall_k=3, num_leaves=2, num_leaves_to_search=2,
        num_reordering_candidates=CANDIDATES), users, [WHEN] * len(users))
    ranking, _, _ = ranking_trainer.train(data, RankingHParams(epochs=1, ensemble=1),
                                          tiny.train_files, tiny.eval_files)
    ranking_dir = str(root / "ranking")
    ranking_trainer.export_model(ranking, data, ranking_dir)
    return retrieval_dir, scann_dir, ranking_dir
