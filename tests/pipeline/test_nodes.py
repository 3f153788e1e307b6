"""The branch registry: the one place that spells a node id or a served model name."""

import ast
import pathlib

import pytest

from recsys_pipeline.pipeline import nodes

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Every source folder of the package, and the benchmarks; the tests may spell names out,
# since they check what the registry produces.
SOURCE_DIRS = ("pipeline", "components", "transform", "trainer", "serving", "kubeflow", "data",
               "recsys_pipeline", "bench")
REGISTRY = ROOT / "pipeline" / "nodes.py"


def registered_literals(source: str, names: frozenset[str]) -> list[tuple[int, str]]:
    """(line, value) of every string literal in ``source`` that is a registered name."""
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in names]


def test_no_module_outside_the_registry_spells_a_node_id_or_a_served_model_name():
    names = nodes.names()
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path != REGISTRY:
                found += [f"{path.relative_to(ROOT)}:{line}: {value!r}"
                          for line, value in registered_literals(path.read_text(), names)]
    assert not found, "use recsys_pipeline.pipeline.nodes instead of:\n" + "\n".join(found)


def test_no_module_outside_the_registry_spells_a_property_or_signature_key():
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path != REGISTRY:
                found += [f"{path.relative_to(ROOT)}:{line}: {value!r}"
                          for line, value in registered_literals(path.read_text(), nodes.keys())]
    assert not found, "use recsys_pipeline.pipeline.nodes instead of:\n" + "\n".join(found)


def test_metric_names_and_titles_follow_the_evaluation_config():
    from recsys_pipeline.pipeline.config import EvaluationConfig

    ev = EvaluationConfig(top_k=50, ndcg_k=5)
    assert [(m.name(ev), m.title(ev)) for m in nodes.METRICS.values()] == [
        ("top_50_accuracy", "top-50 accuracy"), ("root_mean_squared_error", "RMSE"),
        ("ndcg_at_5", "NDCG@5")]
    top_k = nodes.METRICS[nodes.TOP_K_ACCURACY]
    assert top_k.matches("top_7_accuracy") and not top_k.matches("top_k_accuracy")
    assert not top_k.matches("top_7_accuracy_x") and not top_k.matches("ndcg_at_5")


def test_the_literal_scan_finds_ids_and_model_names_but_not_other_strings():
    source = ('x = summary.output("RankingTrainer", "model")\n'
              'y = f"{name}Evaluator"\nmodel = "retrieval_brute_force"\n"""Transform docs."""\n')
    assert sorted(registered_literals(source, nodes.names())) == [
        (1, "RankingTrainer"), (3, "retrieval_brute_force")]


def test_every_branch_is_declared_once_with_distinct_nodes_and_models():
    ids = [n for b in nodes.BRANCHES for n in b.node_ids]
    assert len(ids) == len(set(ids))
    models = [p.model_name for p in nodes.PUSHES]
    assert len(models) == len(set(models))
    assert set(nodes.MODEL_NAMES) | set(nodes.OPTIONAL_MODEL_NAMES) == set(models)
    assert nodes.SCANN_MODELS == (nodes.SCANN_MODEL, nodes.RECOMMENDER_MODEL)
    assert [b.name for b in nodes.BRANCHES if b.optional] == [nodes.SEQUENTIAL.name,
                                                               nodes.RECOMMENDER.name]
    # Opt-in: the sequential branch. The recommender is on by default, and composed: built and
    # gated by one node, with no Trainer and no Baseline node.
    assert nodes.OPTIONAL_MODEL_NAMES == (nodes.SEQUENTIAL_MODEL,)
    assert [b.name for b in nodes.BRANCHES if b.composed] == [nodes.RECOMMENDER.name]
    assert nodes.RECOMMENDER.node_ids == (nodes.RECOMMENDER.evaluator, *(
        p.node_id for p in nodes.RECOMMENDER.pushes))


def test_lookups():
    assert nodes.branch("ranking") is nodes.RANKING
    assert nodes.push_of_model(nodes.BRUTE_FORCE_MODEL).node_id == nodes.BRUTE_FORCE_PUSHER
    assert nodes.push_of_node(nodes.SCANN_PUSHER).model_name == nodes.SCANN_MODEL
    assert nodes.branch_of_push(nodes.push_of_node(nodes.SCANN_PUSHER)) is nodes.RETRIEVAL
    assert nodes.push_of_model("nope") is None
    with pytest.raises(KeyError, match="no model branch 'nope'"):
        nodes.branch("nope")
