"""``create_pipeline(config)``: the TFX DAG, shared by every runner (local and Kubeflow).

MovieLensExampleGen -> StatisticsGen -> ImportSchemaGen (curated schema) -> ExampleValidator
-> AnomalyGate -> Transform. No runner code lives here.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from tfx import v1 as tfx

from recsys_pipeline.components.anomaly_gate import AnomalyGate
from recsys_pipeline.components.movielens_example_gen import MovieLensExampleGen
from recsys_pipeline.data import movielens
from recsys_pipeline.errors import ConfigError, DataError
from recsys_pipeline.pipeline.config import PipelineConfig

PREPROCESSING_FN = "recsys_pipeline.transform.preprocessing.preprocessing_fn"


def schema_path(layout: str) -> str:
    """The curated schema for a layout (demographics or not)."""
    name = "movielens.pbtxt" if layout == "csv" else "movielens_demographics.pbtxt"
    return str(resources.files("recsys_pipeline.pipeline").joinpath("schemas", name))


def source_fingerprint(package: str) -> str:
    """Hash of a package's Python sources.

    Transform is given its preprocessing_fn by import path, so TFX's cache key would not see
    code edits; this hash goes into the component's custom_config to make it.
    """
    h = hashlib.sha256()
    root = resources.files(package)
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            h.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return h.hexdigest()[:16]


def resolve_layout(config: PipelineConfig) -> tuple[str, str]:
    """(layout, input fingerprint) for the configured data directory."""
    data_dir = config.data.data_dir
    if not data_dir:
        raise ConfigError("data.data_dir is not set: the runner must resolve the dataset "
                          "directory (--data-dir, $RECSYS_DATA_DIR, cache or download) first.")
    try:
        dataset = movielens.detect_layout(data_dir, config.data.layout)
    except DataError:
        if config.data.layout != "auto":
            # A remote or not-yet-existing location (e.g. a Kubeflow runtime parameter):
            # trust the explicit layout; ExampleGen checks it when it runs.
            return config.data.layout, ""
        raise
    return dataset.spec.kind, movielens.fingerprint(dataset)


def create_pipeline(config: PipelineConfig) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline described by ``config``."""
    config.validate()
    layout, fingerprint = resolve_layout(config)

    example_gen = MovieLensExampleGen(
        data_dir=config.data.data_dir,
        layout=layout,
        split_config=config.split_config_json(),
        max_orphan_fraction=config.data.max_orphan_fraction,
        input_fingerprint=fingerprint,
    )
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_path(layout))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={
            "timestamp_buckets": config.transform.timestamp_buckets,
            "source_fingerprint": source_fingerprint("recsys_pipeline.transform"),
        },
    )
    # Transform consumes ExampleGen's output directly; this edge makes it wait for the gate.
    transform.add_upstream_node(anomaly_gate)

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate,
                    transform],
        enable_cache=config.enable_cache,
        # Used by LocalDagRunner; Kubeflow runners bring their own metadata store.
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path),
        beam_pipeline_args=list(config.beam.pipeline_args),
    )
