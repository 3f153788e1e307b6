"""What Vertex AI's driver sends (every artifact with the type the spec declares, which the
entrypoint leaves as it is) runs the compiled spec too: span 1 up to the retrieval model's
gate, which blesses it. The whole spec, twice, runs with what open-source KFP sends
(test_launcher.py)."""

import pathlib

import pytest

from recsys_pipeline.kubeflow import compile as kf_compile
from recsys_pipeline.kubeflow.launcher import run_spec
from tests.kubeflow.test_launcher import _e2e_config, _env, small_subset  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def test_vertex_forms_run_the_spec_to_a_blessed_retrieval_model(small_subset,  # noqa: F811
                                                                 tmp_path):
    config = _e2e_config(tmp_path)
    spec = kf_compile.compile_pipeline(config, str(tmp_path / "pipeline.yaml"))
    parameters = {"data_dir": str(small_subset), "retrieval_epochs": 1, "span": "1"}
    results = {r.name: r for r in run_spec(spec, parameters=parameters, env=_env(),
                                           driver="vertex", until="RetrievalEvaluator")}
    assert "RankingTrainer" not in results and "RetrievalTrainer" in results
    for result in results.values():  # nothing needed retyping, and KFP added no output
        log = pathlib.Path(result.log_path).read_text()
        assert "arrived" not in log and "executor-logs" not in log, result.name
    blessing = results["RetrievalEvaluator"].artifacts["blessing"]["metadata"]
    assert blessing["blessed"] == 1, blessing
