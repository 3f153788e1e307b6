"""The pipeline's one configuration object, loadable from TOML or YAML.

Every knob is a dataclass field with a ``doc``; ``recsys config`` prints them all as a
commented TOML file, which is also a valid starting point for ``--config``. Loading is strict:
an unknown key or a value of the wrong type is an error naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from recsys_pipeline.data.declaration import KIND as INTERACTIONS
from recsys_pipeline.data.declaration import InteractionsLayout
from recsys_pipeline.data.download import DEFAULT_BASE_URL
from recsys_pipeline.errors import ConfigError
from recsys_pipeline.knobs import knob
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving.index_params import IndexParams
from recsys_pipeline.trainer import hparams
from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams, SequentialHParams
from recsys_pipeline.transform import features as F

LAYOUTS = ("auto", "ml-100k", "ml-1m", "csv", INTERACTIONS)
SPLIT_KINDS = ("random", "temporal", "next_span")
DRIFT_MODES = ("block", "warn", "off")
KUBEFLOW_TARGETS = ("kfp", "vertex")
# Where each downloadable dataset's files follow which layout (for compiling with layout auto).
DATASET_LAYOUTS = {"ml-100k": "ml-100k", "ml-1m": "ml-1m", "ml-latest-small": "csv",
                   "ml-25m": "csv"}

# Run-time parameters of the compiled Kubeflow pipeline (name -> type).
# "span" only where the data has span folders (kubeflow.span_folders): latest or a number.
SPAN_PARAMETER = "span"
RUNTIME_PARAMETERS = {"data_dir": str,
                      **{b.epochs_parameter: int for b in nodes.BRANCHES if b.epochs_parameter},
                      **{b.bound_parameter: float for b in nodes.BRANCHES if b.bound_parameter},
                      SPAN_PARAMETER: str}



@dataclass
class DataConfig:
    """[data] Which dataset to read and how strictly."""

    dataset: str = knob(
        "ml-100k",
        "GroupLens dataset to download when no data directory is given: ml-100k, ml-1m, "
        "ml-latest-small or ml-25m. Also names the cache folder.")
    layout: str = knob(
        "auto",
        "File layout: auto (detect), ml-100k (u.data/u.item/u.user), ml-1m (*.dat), csv "
        "(ratings.csv + movies.csv), or interactions (your own log, as the [interactions] "
        "section declares it; never detected). Must be explicit when compiling for Kubeflow "
        "with a remote data directory.")
    data_dir: Optional[str] = knob(
        None,
        "Directory holding the dataset's files. Unset: --data-dir, then $RECSYS_DATA_DIR, then "
        "the cache, then a download from GroupLens.")
    cache_dir: Optional[str] = knob(
        None,
        "Where downloaded datasets are kept. Unset: $XDG_CACHE_HOME/recsys-pipeline/datasets.")
    download_base_url: str = knob(
        DEFAULT_BASE_URL, "Base URL of the GroupLens archives.")
    span: Optional[int] = knob(
        None,
        "The span-<N> folder of data_dir to ingest when it holds span folders (data/spans.py). "
        "Unset: recsys run --span (default latest: the newest span not yet ingested).")
    window_spans: int = knob(
        7,
        "With span folders: how many spans Transform, the Trainers and the Evaluators read, "
        "the run's own span and the newest spans accepted before it (fewer when fewer "
        "exist).")
    max_orphan_fraction: float = knob(
        0.01,
        "Ratings whose item id is missing from the item file are dropped and counted; the run "
        "fails if they exceed this fraction of all ratings.")


@dataclass
class SplitConfig:
    """[split] How ratings are divided into train and eval."""

    kind: str = knob(
        "random",
        "random: seeded hash split, reproducible; temporal: one global time cutoff, eval is "
        "everything at or after it; next_span (span folders only): train on the window's "
        "older spans, evaluate on its newest (a lone span is split by time).")
    eval_fraction: float = knob(
        0.2, "Share of ratings in eval (random), or used to place the cutoff (temporal).")
    seed: int = knob(42, "Seed of the random split.")
    cutoff_timestamp: Optional[int] = knob(
        None,
        "Temporal split cutoff in Unix seconds. Unset: the (1 - eval_fraction) quantile of all "
        "timestamps.")


@dataclass
class ValidationConfig:
    """[validation] With span folders: the drift gate between a span and the one before it."""

    drift: str = knob(
        "block",
        f"One of {', '.join(DRIFT_MODES)}. The new span's statistics are compared with the "
        "previous accepted span's (TFDV drift comparators, train splits): block stops the run "
        "before Transform, naming the feature and the distance; warn records and logs it.")
    categorical_threshold: float = knob(
        0.3, "L-infinity distance (the largest change of one value's share) beyond which the "
        "item ids have drifted, unless the curated schema sets its own comparator (the "
        "schema may also add one for the user id, which changes daily by nature).")
    numeric_threshold: float = knob(
        0.2, "Jensen-Shannon divergence beyond which the rating distribution has drifted, "
        "unless the curated schema sets its own comparator.")


@dataclass
class TransformConfig:
    """[transform] Feature preprocessing (tf.Transform)."""

    timestamp_buckets: int = knob(
        F.DEFAULT_TIMESTAMP_BUCKETS,
        "Number of quantile buckets of the timestamp (embedded by the query tower).")
    statistics: bool = knob(
        False, "Have Transform compute TFDV statistics of its input and of the transformed "
        "features (its pre/post_transform_stats outputs): two more passes over the data. Off: "
        "StatisticsGen already describes the input, and nothing downstream reads them.")


@dataclass
class EvaluationConfig:
    """[evaluation] The TFMA gates: a model is blessed (and pushed) only if it passes both."""

    top_k: int = knob(
        100, "k of the retrieval metric: the share of eval ratings whose item is in the "
        "model's top k over the whole catalogue (TFRS FactorizedTopK).")
    min_top_k_accuracy: float = knob(
        0.2, "Retrieval is blessed only with top-k accuracy at least this (absolute bound).")
    top_k_tolerance: float = knob(
        0.01, "...and at most this much below the last blessed retrieval model's (baseline).")
    min_sequential_top_k_accuracy: float = knob(
        0.2, "[sequential] enabled: GRU4Rec is blessed only with top-k accuracy at least this "
        "(its query is the user's earlier train items; the same tolerance to its baseline).")
    max_rmse: float = knob(
        1.0, "Ranking is blessed only with RMSE on the eval split at most this.")
    rmse_tolerance: float = knob(
        0.01, "...and at most this much above the last blessed ranking model's (baseline).")
    ndcg_k: int = knob(
        10, "k of the recommender's gate: NDCG@k of its final list on the eval split, each "
        "eval rating's gain its rating, the user's train items never counted (they are "
        "dropped before ranking).")
    min_ndcg: float = knob(
        0.1, "The recommender (and its brute-force variant) is blessed only with NDCG@k at "
        "least this...")
    ndcg_tolerance: float = knob(
        0.01, "...and at most this much below the last blessed recommender's, scored on the "
        "same eval split.")


@dataclass
class ServingConfig:
    """[serving] Where blessed models are pushed (a TF Serving model base directory)."""

    base_dir: Optional[str] = knob(
        None, "TF Serving model base directory. Unset: <output_dir>/serving.")
    version_labels: bool = knob(
        False, "Serve each model by TF Serving version labels instead of its newest version: "
        "a model's first push is 'stable', each later one 'canary' until `recsys promote "
        "--model M` makes it stable; `recsys rollback` moves stable back "
        "(serving/model_config.py). Off: every push serves all traffic at once.")
    max_batch_size: int = knob(
        64, "TF Serving batching (serving/server_settings.py, batching.config beside "
        "models.config): the most requests merged into one batch.")
    batch_timeout_micros: int = knob(
        1000, "...how long a batch waits for more requests (adds at most this to a request).")
    num_batch_threads: int = knob(2, "...threads running batches (the cores).")
    max_enqueued_batches: int = knob(
        100, "...waiting batches beyond which a request is refused at once, not queued.")
    prometheus_path: str = knob(
        "/monitoring/prometheus/metrics",
        "TF Serving's Prometheus metrics on its REST port (monitoring.config).")


@dataclass
class RecommenderConfig:
    """[recommender] One servable for retrieve -> drop rated -> rank (serving/two_stage.py),
    built from the blessed ScaNN index and ranking model, gated on NDCG and pushed as
    'recommender' (ScaNN) and 'recommender_brute_force' (stock TF Serving)."""

    enabled: bool = knob(
        True, "Build, gate and push the two-stage recommender after the index and ranking "
        "gates.")
    candidates: int = knob(
        100, "N: candidates retrieved per request before the user's rated items are dropped "
        "and the rest ranked (at most the catalogue).")
    rank_weight: float = knob(
        0.25, "The final score: this x the ranking score + (1 - this) x the retrieval score, "
        "each standardized over the request's candidates (0: retrieval's order; 1: predicted "
        "rating alone). The default is the best of bench/quality.py's sweep "
        "(bench/RESULTS.md).")


@dataclass
class BulkConfig:
    """[bulk] Every user's top k from the blessed recommender, as Parquet (recsys bulk does the
    same from the served one)."""

    enabled: bool = knob(
        False, "Add the BulkRecommendations node after the recommender's gate (TFX "
        "BulkInferrer style): it writes recommendations.parquet and the catalogue coverage "
        "into its artifact, and the report shows the coverage.")
    k: int = knob(10, "Items per user.")
    batch_size: int = knob(256, "Users per request to the recommender.")


@dataclass
class BeamConfig:
    """[beam] Apache Beam settings for every Beam-using component."""

    # Not Beam's default runner: with network access, Beam's DirectRunner downloads the
    # Prism runner from GitHub on first use and runs there instead (falling back to the
    # FnApiRunner offline), so the same run would execute differently on different machines.
    pipeline_args: list = knob(
        ["--runner=FnApiRunner"],
        "Beam pipeline arguments, passed unchanged to every Beam-using component (e.g. "
        "--runner=DataflowRunner --project=... --region=... --temp_location=gs://...). The "
        "default: Beam's FnApiRunner in this process, one worker, whether or not the machine "
        "can reach GitHub (Beam's DirectRunner would fetch and use its Prism runner).")


@dataclass
class KubeflowConfig:
    """[kubeflow] Compiling for and scheduling on Kubeflow Pipelines 2.x or Vertex AI."""

    target: str = knob(
        "kfp",
        "kfp: a PipelineSpec YAML for open-source Kubeflow Pipelines 2.x (upload API); "
        "vertex: TFX's PipelineJob JSON for Vertex AI Pipelines.")
    image: str = knob(
        "recsys-pipeline:latest",
        "Container image of every step, built from kubeflow/Dockerfile and pushed to a registry "
        "the cluster can pull from (e.g. us-docker.pkg.dev/PROJECT/REPO/recsys-pipeline:TAG).")
    pipeline_root: str = knob(
        "gs://YOUR-BUCKET/recsys-pipeline",
        "Root of every artifact of every run: gs://... on Kubeflow Pipelines and Vertex AI "
        "(KFP's launcher needs an object store, and the TFX steps read it with tf.io.gfile, "
        "which has no s3:// or minio:// in TensorFlow 2.20). An absolute path only serves "
        "`recsys kubeflow run-local`.")
    data_dir: Optional[str] = knob(
        None,
        "Default of the data_dir run-time parameter: the dataset directory as the steps see it "
        "(gs://... or a mounted path). Unset: data.data_dir.")
    project_dir: str = knob(
        "/opt/recsys-pipeline",
        "Where kubeflow/Dockerfile puts this project inside the image (schemas are read from "
        "there).")
    volume_claim: str = knob(
        "recsys-serving",
        "PersistentVolumeClaim mounted in every step at volume_mount_path (kubeflow/serving/"
        "pvc.yaml; ReadWriteMany, shared with TF Serving). Pushes land on it: publishing a "
        "version is a directory rename, which object stores cannot do atomically. Empty: no "
        "mount (then serving.base_dir must be a volume the steps have by other means).")
    volume_mount_path: str = knob(
        "/mnt/recsys", "Where volume_claim is mounted; pushes go to <this>/serving unless "
        "serving.base_dir is set.")
    runtime_parameters: bool = knob(
        True,
        "Expose data_dir, retrieval_epochs, ranking_epochs, min_top_k_accuracy and max_rmse "
        "(and span, with span_folders) as run-time parameters of the compiled pipeline "
        "(defaults: this configuration).")
    span_folders: bool = knob(
        False,
        "The data directory the runs read holds span-<N> folders (the compiler cannot look): "
        "the compiled pipeline takes the run-time parameter span (latest, the newest span no "
        "run of it ingested, or a number) and gets the rolling window, the drift gate and "
        "warm starts.")
    host: Optional[str] = knob(
        None, "Kubeflow Pipelines API endpoint, e.g. http://localhost:8080 after "
        "kubectl port-forward. Overridden by --host or $KFP_HOST.")
    namespace: Optional[str] = knob(
        None, "Kubernetes namespace (multi-user Kubeflow). Overridden by --namespace or "
        "$KFP_NAMESPACE.")
    experiment: str = knob("recsys", "Experiment that runs and recurring runs are filed under.")
    service_account: str = knob(
        "", "Kubernetes service account of the runs (must be able to write pipeline_root).")


@dataclass
class PipelineConfig:
    """The whole pipeline: top-level keys plus one section per stage."""

    pipeline_name: str = knob("recsys-pipeline", "TFX pipeline name (MLMD context).")
    output_dir: str = knob(
        "outputs",
        "Root of every output: pipeline artifacts (tfx/), the MLMD store (metadata.sqlite) and "
        "later the serving directory (serving/).")
    enable_cache: bool = knob(True, "Reuse a component's earlier outputs when its inputs and "
                              "settings are unchanged (TFX caching).")
    data: DataConfig = field(default_factory=DataConfig)
    interactions: InteractionsLayout = field(default_factory=InteractionsLayout)
    split: SplitConfig = field(default_factory=SplitConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    transform: TransformConfig = field(default_factory=TransformConfig)
    retrieval: RetrievalHParams = field(default_factory=RetrievalHParams)
    ranking: RankingHParams = field(default_factory=RankingHParams)
    sequential: SequentialHParams = field(default_factory=SequentialHParams)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    index: IndexParams = field(default_factory=IndexParams)
    serving: ServingConfig = field(default_factory=ServingConfig)
    recommender: RecommenderConfig = field(default_factory=RecommenderConfig)
    bulk: BulkConfig = field(default_factory=BulkConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    kubeflow: KubeflowConfig = field(default_factory=KubeflowConfig)

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "tfx", self.pipeline_name)

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return self.serving.base_dir or os.path.join(self.output_dir, "serving")

    def validate(self) -> "PipelineConfig":
        """Checks values (types are checked on load); returns self."""
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"invalid configuration: {key} {msg}")

        if self.data.layout not in LAYOUTS:
            raise bad("data.layout", f"is {self.data.layout!r}; expected one of {LAYOUTS}")
        if self.data.layout == INTERACTIONS and self.interactions.problems():
            raise ConfigError(f"invalid configuration: {self.interactions.problems()[0]}")
        if not 0.0 <= self.data.max_orphan_fraction <= 1.0:
            raise bad("data.max_orphan_fraction", "must be between 0 and 1")
        if self.split.kind not in SPLIT_KINDS:
            raise bad("split.kind", f"is {self.split.kind!r}; expected one of {SPLIT_KINDS}")
        if not 0.0 <= self.recommender.rank_weight <= 1.0:
            raise bad("recommender.rank_weight", "must be between 0 and 1")
        if self.recommender.candidates < 1:
            raise bad("recommender.candidates", "must be at least 1")
        if self.bulk.enabled and not self.recommender.enabled:
            raise bad("bulk.enabled", "needs recommender.enabled: the bulk recommendations "
                      "come from the blessed recommender")
        for key in ("k", "batch_size"):
            if getattr(self.bulk, key) < 1:
                raise bad(f"bulk.{key}", "must be at least 1")
        if self.data.window_spans < 1:
            raise bad("data.window_spans", "must be at least 1")
        if not 0.0 < self.split.eval_fraction < 1.0:
            raise bad("split.eval_fraction", "must be strictly between 0 and 1")
        if self.split.cutoff_timestamp is not None and self.split.kind != "temporal":
            raise bad("split.cutoff_timestamp", "only applies to split.kind = \"temporal\"")
        if self.validation.drift not in DRIFT_MODES:
            raise bad("validation.drift",
                      f"is {self.validation.drift!r}; expected one of {DRIFT_MODES}")
        for key in ("categorical_threshold", "numeric_threshold"):
            if not 0.0 <= getattr(self.validation, key) <= 1.0:
                raise bad(f"validation.{key}",
                          f"is {getattr(self.validation, key)}; must be in [0, 1]")
        if self.transform.timestamp_buckets < 2:
            raise bad("transform.timestamp_buckets", "must be at least 2")
        if not self.pipeline_name or any(c in self.pipeline_name for c in "/\\ "):
            raise bad("pipeline_name", "must be non-empty without spaces or slashes")
        if not all(isinstance(a, str) for a in self.beam.pipeline_args):
            raise bad("beam.pipeline_args", "must be a list of strings")
        problems = (hparams.check(self.retrieval, nodes.RETRIEVAL.name)
                    + hparams.check(self.ranking, nodes.RANKING.name)
                    + hparams.check(self.sequential, nodes.SEQUENTIAL.name))
        if problems:
            raise ConfigError(f"invalid configuration: {problems[0]}")
        ev = self.evaluation
        if ev.top_k < 1:
            raise bad("evaluation.top_k", "must be at least 1")
        if ev.ndcg_k < 1:
            raise bad("evaluation.ndcg_k", "must be at least 1")
        for key in ("min_top_k_accuracy", "min_sequential_top_k_accuracy", "top_k_tolerance",
                    "rmse_tolerance", "min_ndcg", "ndcg_tolerance"):
            if not 0.0 <= getattr(ev, key) <= 1.0:
                raise bad(f"evaluation.{key}", f"is {getattr(ev, key)}; must be in [0, 1]")
        if not ev.max_rmse > 0:
            raise bad("evaluation.max_rmse", "must be positive")
        for key in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self.serving, key) < 1:
                raise bad(f"serving.{key}", "must be at least 1")
        if self.serving.batch_timeout_micros < 0:
            raise bad("serving.batch_timeout_micros", "must be 0 or positive")
        if not self.serving.prometheus_path.startswith("/"):
            raise bad("serving.prometheus_path", "must start with /")
        ix = self.index
        if not 0.0 <= ix.min_recall <= 1.0:
            raise bad("index.min_recall", f"is {ix.min_recall}; must be in [0, 1]")
        for key in ("k", "recall_k", "max_queries", "dimensions_per_block",
                    "training_iterations"):
            if getattr(ix, key) < 1:
                raise bad(f"index.{key}", "must be at least 1")
        for key in ("num_leaves", "num_leaves_to_search", "num_reordering_candidates"):
            if getattr(ix, key) < 0:
                raise bad(f"index.{key}", "must be 0 (automatic) or positive")
        if ix.recall_k > ix.k:
            raise bad("index.recall_k", f"({ix.recall_k}) must not exceed index.k ({ix.k})")
        if 0 < ix.num_reordering_candidates < ix.k:
            # ScaNN returns at most the candidates it rescores: the rest of k would be empty.
            raise bad("index.num_reordering_candidates",
                      f"({ix.num_reordering_candidates}) is below index.k ({ix.k}); the index "
                      f"would return at most {ix.num_reordering_candidates} items")
        kf = self.kubeflow
        if kf.target not in KUBEFLOW_TARGETS:
            raise bad("kubeflow.target", f"is {kf.target!r}; expected one of {KUBEFLOW_TARGETS}")
        if not kf.image or any(c.isspace() for c in kf.image):
            raise bad("kubeflow.image", f"is {kf.image!r}; expected an image reference")
        if not kf.pipeline_root.startswith(("gs://", "/")):
            # Every TFX step reads and writes artifacts through tf.io.gfile, and TensorFlow
            # 2.20 has no S3 filesystem (tensorflow-io has no build for it).
            raise bad("kubeflow.pipeline_root",
                      f"is {kf.pipeline_root!r}; expected gs://... (or an absolute path, for "
                      "`recsys kubeflow run-local` only): s3:// and minio:// are not readable "
                      "by TensorFlow 2.20")
        if not kf.volume_mount_path.startswith("/"):
            raise bad("kubeflow.volume_mount_path", "must be an absolute path")
        return self

    @property
    def kubeflow_serving_dir(self) -> str:
        """Where the pushers write when the DAG runs on Kubeflow (a mounted volume)."""
        return self.serving.base_dir or os.path.join(self.kubeflow.volume_mount_path, "serving")

    def split_config_json(self) -> str:
        """The split settings as the JSON exec property the ExampleGen reads."""
        return json.dumps(dataclasses.asdict(self.split), sort_keys=True)


# --- Loading --------------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, source)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table/section, got {value!r}")
        return _from_dict(typing.cast(type, tp), value, source, prefix=f"{key}.")
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r} "
                              f"({type(value).__name__})")
        return list(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"{source}: {key} must be {_type_name(tp)}, got {value!r} "
                          f"({type(value).__name__})")
    return value


def _from_dict(cls: type, data: dict, source: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}' (known keys here: {', '.join(names)})"
        )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}", source) for k, v in data.items()}
    return cls(**kwargs)


def config_from_dict(data: dict, source: str = "<dict>") -> PipelineConfig:
    """Builds and validates a config from nested plain data (missing keys take defaults)."""
    return _from_dict(PipelineConfig, data, source).validate()


def load_config(path: str) -> PipelineConfig:
    """Loads a TOML (.toml) or YAML (.yaml/.yml) config file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path!r}: {e.strerror}") from None
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".toml":
            import tomllib

            data = tomllib.loads(raw.decode("utf-8"))
        elif ext in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(raw) or {}
        else:
            raise ConfigError(f"config file {path!r}: use a .toml, .yaml or .yml file")
    except ConfigError:
        raise
    except Exception as e:  # tomllib/yaml parse errors carry line and column
        raise ConfigError(f"config file {path!r} does not parse: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path!r}: top level must be a mapping")
    return config_from_dict(data, source=path)


# --- Rendering ------------------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def render_toml(config: PipelineConfig) -> str:
    """The config as TOML with every knob's documentation as a comment."""
    lines: list[str] = ["# recsys-pipeline configuration (recsys run --config FILE)."]

    def emit(obj: Any) -> None:
        # A section's own knobs first, then those it shares with others (a base class's).
        own = type(obj).__dict__.get("__annotations__", {})
        for f in sorted(dataclasses.fields(obj), key=lambda f: f.name not in own):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                continue
            lines.append(f"# {f.metadata.get('doc', '')}")
            if value is None:
                lines.append(f"# {f.name} =  (unset)")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")

    emit(config)
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        if dataclasses.is_dataclass(section):
            lines.append("")
            doc = " ".join((type(section).__doc__ or "").split())
            lines.append(f"# {doc}")
            lines.append(f"[{f.name}]")
            emit(section)
    return "\n".join(lines) + "\n"


def reference_page(config: PipelineConfig) -> str:
    """docs/configuration.md: ``render_toml``'s output as a Markdown page (``make docs``)."""
    return ("# Configuration reference\n\n"
            "Every knob with its documentation and default, as `recsys config` prints it "
            "(generated by `make docs`; a test fails when it is out of date). Copy it, edit "
            "it, and pass it with `--config FILE` (TOML or YAML).\n\n"
            "```toml\n" + render_toml(config) + "```\n")
