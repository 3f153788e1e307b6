"""The DAG's node ids, model branches and served model names, declared once.

Everything that names a node or a served model -- the DAG builder, the run summary, history
and lineage, the report, the Kubeflow compiler, the benchmarks -- reads it from here, so a new
branch is one ``Branch`` entry plus its Trainer module. ``tests/test_registry.py`` fails if
another module spells one of these names as a literal.

A *branch* is one model family from Trainer to serving: its Trainer, its Evaluator (the gate,
against an absolute bound and the last blessed model), that model's Baseline (a lookup of its
Evaluator's blessing registry, on every target) and one Pusher per served model. The gated
metric's direction says which way a bound and a regression go. A *composed* branch trains
nothing: one node builds its model from other branches' blessed models and gates it (the
Evaluator's place), finding its baseline in its own blessing registry on every target (no
Baseline node).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

# Shared nodes, upstream of every branch.
EXAMPLE_GEN = "InteractionsExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "ImportSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
ANOMALY_GATE = "AnomalyGate"
TRANSFORM = "Transform"
# With span folders: the rolling window (after the gate) and, where TFX resolves it, the
# previous window it extends.
SPAN_WINDOW = "SpanWindow"
PREVIOUS_WINDOW = "PreviousWindow"
# The retrieval branch's ScaNN index, between its Evaluator and the ScaNN Pusher.
SCANN_INDEXER = "ScannIndexer"
# [bulk] enabled: every user's top k from the blessed recommender, written as Parquet.
BULK_RECOMMENDATIONS = "BulkRecommendations"

# Served model names: directories of the TF Serving model base and names in models.config.
SCANN_MODEL = "retrieval"
BRUTE_FORCE_MODEL = "retrieval_brute_force"
RANKING_MODEL = "ranking"
SEQUENTIAL_MODEL = "sequential"
RECOMMENDER_MODEL = "recommender"
RECOMMENDER_BRUTE_FORCE_MODEL = "recommender_brute_force"

# Gated metrics, as the branches declare them; the TFMA metric name comes from
# ``pipeline.evaluation.metric_name`` (the top-k one depends on ``evaluation.top_k``).
TOP_K_ACCURACY = "top_k_accuracy"
RMSE = "rmse"
NDCG = "ndcg"


@dataclasses.dataclass(frozen=True)
class Metric:
    """A gated metric kind: its name in evaluations and its title in tables and charts, at the
    k that the [evaluation] field ``k_field`` sets (none for RMSE)."""

    kind: str
    name_format: str
    title_format: str
    k_field: Optional[str] = None

    def name(self, evaluation: object) -> str:
        return self.name_format.format(k=getattr(evaluation, self.k_field, None)
                                       if self.k_field else None)

    def title(self, evaluation: object) -> str:
        return self.title_format.format(k=getattr(evaluation, self.k_field, None)
                                        if self.k_field else None)

    def matches(self, name: str) -> bool:
        """Whether ``name`` is this metric at any k."""
        pattern = re.escape(self.name_format).replace(re.escape("{k}"), r"\d+")
        return re.fullmatch(pattern, name) is not None


METRICS = {m.kind: m for m in (
    Metric(TOP_K_ACCURACY, "top_{k}_accuracy", "top-{k} accuracy", "top_k"),
    Metric(RMSE, "root_mean_squared_error", "RMSE"),
    Metric(NDCG, "ndcg_at_{k}", "NDCG@{k}", "ndcg_k"))}

# The models' signatures and outputs that the gates, the bulk job and clients read.
EVAL_SIGNATURE = "evaluate"  # per eval example, for TFMA and the health check
HIT_OUTPUT = "top_k_hit"  # 1.0 when the rated item is in the model's top k (retrieval)
RATING_OUTPUT = "rating"  # the predicted rating (ranking)
SCORE_OUTPUT = "score"  # the score every evaluate signature gives its example
# serving_default's lists: the items' ids and display titles (the id where the data has none).
ITEM_IDS_OUTPUT = "item_ids"
ITEM_TITLES_OUTPUT = "item_titles"

# The naming generation of everything a run writes (features, signatures, export metadata,
# bulk columns; /2: MovieLens' demographics are declared user features). Output directories and
# exports stamped otherwise (or not at all: written before items were items, with movie names)
# are refused rather than misread.
NAMES = "users-items/2"

# The Trainers' model artifact property saying what the model started from (a warm start
# from a base model, or a cold start and why): components/recsys_trainer.py writes it.
WARM_START_PROPERTY = "warm_start"
# Artifact properties written by one component and read by others, the CLI and the report.
# ``blessed`` and ``pushed`` are the keys TFX's own Evaluator and Pusher write, so that TFX
# reads this project's blessings and pushes as its own.
BLESSED_PROPERTY = "blessed"
REASON_PROPERTY = "reason"  # why not blessed, not pushed, or pushed anew
SOURCE_MODEL_PROPERTY = "source_model"  # the trained model a served artifact comes from
BASELINE_MODEL_PROPERTY = "baseline_model"  # the blessed model a candidate was compared with
PUSHED_PROPERTY = "pushed"
PUSHED_DESTINATION_PROPERTY = "pushed_destination"


def verdict(properties: dict) -> "bool | None":
    """A blessing's verdict from its properties: None when it holds none (a step not run)."""
    if BLESSED_PROPERTY not in properties:
        return None
    return properties[BLESSED_PROPERTY] == 1


@dataclasses.dataclass(frozen=True)
class Push:
    """One served model: the Pusher node that publishes it and its name in TF Serving."""

    node_id: str
    model_name: str
    needs_scann: bool = False  # served only by ScaNN's TF Serving image (custom ops)


@dataclasses.dataclass(frozen=True)
class Branch:
    """One model family from Trainer to serving (see the module doc)."""

    name: str  # its config section and the model kind its exports record
    run_fn: Optional[str]  # the Trainer's module function, by import path (None: composed)
    trainer: Optional[str]  # None: composed, built by its evaluator node
    evaluator: str
    baseline: Optional[str]  # None: the evaluator reads its own blessing registry
    pushes: tuple[Push, ...]
    metric: str  # TOP_K_ACCURACY, RMSE or NDCG
    higher_is_better: bool
    bound: str  # the EvaluationConfig field holding the metric's absolute bound
    optional: bool = False  # its config section's `enabled` says whether it is in the DAG
    enabled_by_default: bool = True  # ... and that switch's default
    # On Kubeflow, run-time parameters of its epochs and bound (else fixed when compiled).
    epochs_parameter: Optional[str] = None
    bound_parameter: Optional[str] = None
    warm_starts: bool = False  # its section's `warm_start` may start it from the Baseline

    @property
    def bound_text(self) -> str:
        return ">=" if self.higher_is_better else "<="

    @property
    def composed(self) -> bool:
        return self.trainer is None

    @property
    def node_ids(self) -> tuple[str, ...]:
        """Its nodes, Pushers included."""
        return tuple(n for n in (self.trainer, self.evaluator, self.baseline) if n) + tuple(
            p.node_id for p in self.pushes)


RETRIEVAL = Branch(
    name="retrieval", run_fn="recsys_pipeline.trainer.retrieval_trainer.run_fn",
    trainer="RetrievalTrainer", evaluator="RetrievalEvaluator",
    baseline="RetrievalBaseline",
    pushes=(Push("ScannPusher", SCANN_MODEL, needs_scann=True),
            Push("BruteForcePusher", BRUTE_FORCE_MODEL)),
    metric=TOP_K_ACCURACY, higher_is_better=True, bound="min_top_k_accuracy",
    epochs_parameter="retrieval_epochs", bound_parameter="min_top_k_accuracy", warm_starts=True)
RANKING = Branch(
    name="ranking", run_fn="recsys_pipeline.trainer.ranking_trainer.run_fn",
    trainer="RankingTrainer", evaluator="RankingEvaluator",
    baseline="RankingBaseline", pushes=(Push("RankingPusher", RANKING_MODEL),),
    metric=RMSE, higher_is_better=False, bound="max_rmse",
    epochs_parameter="ranking_epochs", bound_parameter="max_rmse", warm_starts=True)
SEQUENTIAL = Branch(
    name="sequential", run_fn="recsys_pipeline.trainer.sequential_trainer.run_fn",
    trainer="SequentialTrainer", evaluator="SequentialEvaluator",
    baseline="SequentialBaseline", pushes=(Push("SequentialPusher", SEQUENTIAL_MODEL),),
    metric=TOP_K_ACCURACY, higher_is_better=True, bound="min_sequential_top_k_accuracy",
    optional=True, enabled_by_default=False)
# Retrieve -> drop rated -> rank in one servable (serving/two_stage.py), over the blessed ScaNN
# index and ranking model; a brute-force variant for stock TF Serving.
RECOMMENDER = Branch(
    name="recommender", run_fn=None, trainer=None, evaluator="Recommender", baseline=None,
    pushes=(Push("RecommenderPusher", RECOMMENDER_MODEL, needs_scann=True),
            Push("RecommenderBruteForcePusher", RECOMMENDER_BRUTE_FORCE_MODEL)),
    metric=NDCG, higher_is_better=True, bound="min_ndcg", optional=True)

BRANCHES: tuple[Branch, ...] = (RETRIEVAL, RANKING, SEQUENTIAL, RECOMMENDER)
PUSHES: tuple[Push, ...] = tuple(p for b in BRANCHES for p in b.pushes)
SCANN_PUSHER = RETRIEVAL.pushes[0].node_id
BRUTE_FORCE_PUSHER = RETRIEVAL.pushes[1].node_id

# Served model names: of the default DAG, of the opt-in branches, and those that need ScaNN.
MODEL_NAMES: tuple[str, ...] = tuple(
    p.model_name for b in BRANCHES if b.enabled_by_default for p in b.pushes)
OPTIONAL_MODEL_NAMES: tuple[str, ...] = tuple(
    p.model_name for b in BRANCHES if not b.enabled_by_default for p in b.pushes)
SCANN_MODELS: tuple[str, ...] = tuple(p.model_name for p in PUSHES if p.needs_scann)


def branch(name: str) -> Branch:
    """The branch called ``name`` (its config section)."""
    for b in BRANCHES:
        if b.name == name:
            return b
    raise KeyError(f"no model branch {name!r}; branches: {[b.name for b in BRANCHES]}")


def push_of_model(model_name: str) -> Optional[Push]:
    """The Push publishing served model ``model_name``, if any."""
    return next((p for p in PUSHES if p.model_name == model_name), None)


def push_of_node(node_id: str) -> Optional[Push]:
    """The Push of Pusher node ``node_id``, if it is one."""
    return next((p for p in PUSHES if p.node_id == node_id), None)


def branch_of_push(push: Push) -> Branch:
    return next(b for b in BRANCHES if push in b.pushes)


def names() -> frozenset[str]:
    """Every node id and served model name declared here (what no other module spells)."""
    ids = {EXAMPLE_GEN, STATISTICS_GEN, SCHEMA_GEN, EXAMPLE_VALIDATOR, ANOMALY_GATE, TRANSFORM,
           SCANN_INDEXER, SPAN_WINDOW, PREVIOUS_WINDOW, BULK_RECOMMENDATIONS}
    for b in BRANCHES:
        ids |= {*b.node_ids, b.name}
        ids |= {p.model_name for p in b.pushes}
    return frozenset(ids)


def keys() -> frozenset[str]:
    """The artifact property and signature keys that cross files (what no other module
    spells); the plain words among them (blessed, pushed, reason, rating, score) are left
    out, since they also head table columns and name data columns."""
    return frozenset({SOURCE_MODEL_PROPERTY, BASELINE_MODEL_PROPERTY,
                      PUSHED_DESTINATION_PROPERTY, WARM_START_PROPERTY,
                      EVAL_SIGNATURE, HIT_OUTPUT, ITEM_IDS_OUTPUT, ITEM_TITLES_OUTPUT}
                     | {m.name_format for m in METRICS.values()})
