"""Hyperparameters of the Trainers: sections [retrieval] and [ranking] of the pipeline config.

They travel to the Trainer's ``run_fn`` as plain JSON in ``custom_config`` (see
``to_custom_config`` / ``from_custom_config``), so a change of any of them changes the
Trainer's execution properties and so TFX's cache key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from recsys_pipeline.knobs import knob

OPTIMIZERS = ("adam", "adagrad", "sgd")
RANKING_ARCHITECTURES = ("mlp", "dcn")

T = TypeVar("T")


@dataclass
class InBatchSoftmaxHParams:
    """The knobs every model trained with TFRS's Retrieval task (in-batch softmax) has."""

    embedding_dim: int = knob(64, "Size of the query and candidate embeddings (dot product).")
    batch_size: int = knob(1024, "Batch size; the other items in a batch are the negatives.")
    temperature: float = knob(
        1.0, "Softmax temperature of the in-batch loss: lower sharpens it (1.0 = none).")
    popularity_correction: bool = knob(
        True, "Correct the in-batch softmax for popularity-proportional negatives (logQ).")
    remove_accidental_hits: bool = knob(
        False, "Do not count a batch's other ratings of the same item as negatives.")
    seed: int = knob(42, "Seed for initialization and shuffling.")


@dataclass
class RetrievalHParams(InBatchSoftmaxHParams):
    """[retrieval] The two-tower retrieval model (TFRS Retrieval task, in-batch softmax)."""

    id_embedding_dim: int = knob(
        64, "Size of the user, item and title id embeddings inside the towers.")
    context_embedding_dim: int = knob(
        16, "Size of the timestamp bucket, genre and declared feature embeddings.")
    title_text: bool = knob(
        False, "Add the mean embedding of the title's words (a vocabulary Transform fits) to "
        "the candidate tower.")
    hidden_layers: list = knob(
        [128], "Sizes of ReLU layers in each tower before the final linear projection to "
        "embedding_dim ([] = a linear projection only). A ReLU layer lets the towers combine "
        "features, which linear towers cannot (bench/quality.py compares them).")
    epochs: int = knob(12, "Training epochs over the train split.")
    warm_start: bool = knob(
        True, "With span folders: start from this branch's last blessed model (the Trainer's "
        "base_model input), embedding rows mapped by vocabulary value and dense layers "
        "copied, then train warm_epochs; a base model of another architecture, or none, "
        "gives a cold start, which the run summary says.")
    warm_epochs: int = knob(4, "Training epochs of a warm-started run.")
    learning_rate: float = knob(
        0.03, "Learning rate (0.1 makes the ReLU towers collapse to popularity).")
    optimizer: str = knob("adagrad", f"One of {', '.join(OPTIMIZERS)}.")
    min_rating: float = knob(
        0.0, "Implicit feedback: only ratings at or above this are positives (the others "
        "still serve as in-batch negatives for the rest); 0 = every rating is a positive.")
    exclude_rated: bool = knob(
        False, "Serve only items the user has not rated in the train split (a per-user "
        "exclusion list is exported with the model); the evaluated top-k excludes them too.")
    popular_half_life_days: float = knob(
        7.0, "Unknown users get the train split's most popular items, each rating weighted "
        "0.5 ** (its age before the newest train rating / this many days), so that the "
        "fallback follows what is popular now; 0 = every rating counts alike (most rated of "
        "all time). bench/replay.py measures both on new users.")


@dataclass
class SequentialHParams(InBatchSoftmaxHParams):
    """[sequential] GRU4Rec sequential retrieval: a GRU over the user's previous items is the
    query. Off by default; when on, the DAG trains, gates and pushes it as model "sequential".
    """

    enabled: bool = knob(
        False, "Add the GRU4Rec branch (SequentialTrainer, SequentialEvaluator, "
        "SequentialPusher) to the pipeline.")
    context_length: int = knob(10, "Previous items (time order) the query reads; padded.")
    id_embedding_dim: int = knob(64, "Size of the context items' embeddings (the GRU's input).")
    gru_units: int = knob(64, "Size of the GRU's state.")
    hidden_layers: list = knob([], "Sizes of ReLU layers after the GRU, before the projection.")
    epochs: int = knob(10, "Training epochs over the train split.")
    # Adam 0.002: leave-last-out HR@10 0.152/0.153 on two seeds; Adagrad 0.1 ranged
    # 0.105-0.155 over three (ML-100K, seen excluded).
    learning_rate: float = knob(0.002, "Learning rate.")
    optimizer: str = knob("adam", f"One of {', '.join(OPTIMIZERS)}.")


@dataclass
class RankingHParams:
    """[ranking] The rating regression model (TFRS Ranking task: MSE loss, RMSE metric)."""

    architecture: str = knob(
        "mlp", f"One of {', '.join(RANKING_ARCHITECTURES)}: mlp = ReLU layers over the "
        "concatenated embeddings; dcn = a deep & cross network (TFRS Cross layers, then the "
        "ReLU layers).")
    cross_layers: int = knob(2, "dcn: number of stacked Cross layers.")
    cross_projection_dim: int = knob(
        0, "dcn: low-rank size of each Cross layer's weight (0 = full rank).")
    bias_terms: bool = knob(
        False, "Add learned per-user and per-item rating offsets to the network's output.")
    ensemble: int = knob(
        5, "Members: rating models trained one after another, each with its own seed "
        "(initialization and shuffling), whose predictions are averaged; training time grows "
        "in proportion. Their errors are far from perfectly correlated, so the mean has a "
        "lower RMSE than any member (bench/quality.py).")
    embedding_dim: int = knob(32, "Size of the user and item id embeddings.")
    context_embedding_dim: int = knob(8, "Size of the genre and declared feature embeddings.")
    hidden_layers: list = knob([128, 64], "Sizes of the ReLU layers of the rating MLP.")
    epochs: int = knob(7, "Training epochs over the train split (more overfits ML-100K).")
    warm_start: bool = knob(
        True, "With span folders: start from this branch's last blessed model (the Trainer's "
        "base_model input), embedding rows mapped by vocabulary value and dense layers "
        "copied, then train warm_epochs; a base model of another architecture, or none, "
        "gives a cold start, which the run summary says.")
    warm_epochs: int = knob(2, "Training epochs of a warm-started run (per member).")
    batch_size: int = knob(1024, "Batch size.")
    learning_rate: float = knob(0.002, "Learning rate.")
    optimizer: str = knob("adam", f"One of {', '.join(OPTIMIZERS)}.")
    retrieval_weight: float = knob(
        0.0, "Multitask: add a retrieval task (in-batch softmax over the user and item "
        "embeddings' dot product) with this weight to the rating loss (0 = ranking only).")
    l2: float = knob(
        1e-3, "L2 penalty on the embeddings (per example): it lets the ranking train longer "
        "before the id embeddings overfit.")
    seed: int = knob(42, "Seed for initialization and shuffling.")


def check(hp: Any, section: str) -> list[str]:
    """Problems with a hyperparameter set, as "section.key message" strings."""
    problems = []
    for name in ("epochs", "warm_epochs", "batch_size", "embedding_dim", "context_length",
                 "gru_units", "ensemble"):
        if getattr(hp, name, 1) < 1:
            problems.append(f"{section}.{name} must be at least 1")
    if not hp.learning_rate > 0:
        problems.append(f"{section}.learning_rate must be positive")
    if hp.optimizer not in OPTIMIZERS:
        problems.append(f"{section}.optimizer is {hp.optimizer!r}; expected one of {OPTIMIZERS}")
    if not all(isinstance(n, int) and n > 0 for n in hp.hidden_layers):
        problems.append(f"{section}.hidden_layers must be a list of positive integers")
    for name in ("min_rating", "retrieval_weight"):
        if getattr(hp, name, 0.0) < 0:
            problems.append(f"{section}.{name} must not be negative")
    if getattr(hp, "temperature", 1.0) <= 0:
        problems.append(f"{section}.temperature must be positive")
    if getattr(hp, "architecture", "mlp") not in RANKING_ARCHITECTURES:
        problems.append(f"{section}.architecture is {hp.architecture!r}; expected one of "
                        f"{RANKING_ARCHITECTURES}")
    if getattr(hp, "cross_layers", 1) < 1 or getattr(hp, "cross_projection_dim", 0) < 0:
        problems.append(f"{section}.cross_layers must be at least 1 and "
                        f"{section}.cross_projection_dim at least 0")
    return problems


def to_custom_config(hp: Any) -> dict[str, Any]:
    return dataclasses.asdict(hp)


def from_custom_config(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuilds hyperparameters from ``custom_config`` (unknown keys are an error)."""
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**data)
