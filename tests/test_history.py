"""Run history's reading of evaluations: the recommender's list evaluation as TFMA's."""

from types import SimpleNamespace

from recsys_pipeline import history, model_summary
from recsys_pipeline.serving.list_metrics import ListEvaluation


def test_lineage_names_the_variant_beside_the_candidate_and_the_failures(tmp_path):
    ListEvaluation({"candidate": {"ndcg_at_10": 0.25, "users": 943.0},
                    "brute_force": {"ndcg_at_10": 0.2458},
                    "baseline": {"ndcg_at_10": 0.3}},
                   ["ndcg_at_10 differs from the last blessed model's by -0.0500, beyond the "
                    "tolerance"]).write(str(tmp_path))
    lines = history._metrics([SimpleNamespace(uri=str(tmp_path))])
    assert lines == ["ndcg_at_10 (brute_force): 0.2458 (baseline -)",
                     "ndcg_at_10: 0.2500 (baseline 0.3000)",
                     "not blessed: ndcg_at_10 differs from the last blessed model's by -0.0500, "
                     "beyond the tolerance"]
    found = model_summary.read_evaluation(str(tmp_path))
    assert found.value("ndcg_at_10") == 0.25 and found.value("ndcg_at_10", "baseline") == 0.3
    assert found.value("ndcg_at_10", "brute_force") == 0.2458
