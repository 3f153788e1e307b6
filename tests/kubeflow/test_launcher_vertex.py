"""The compiled spec, run task by task as in test_launcher.py, sent what Vertex AI's driver
sends: every artifact with the type the spec declares, which the entrypoint leaves as it is.
A file of its own so that it runs beside the two-run test, not after it."""

import pathlib

import pytest

from recsys_pipeline.kubeflow import compile as kf_compile
from recsys_pipeline.kubeflow.launcher import run_spec
from tests.kubeflow.test_launcher import _assert_pushed, _e2e_config, _env, small_subset

__all__ = ["small_subset"]  # the module fixture, shared


@pytest.mark.e2e
def test_compiled_spec_runs_as_vertex_sends_it(small_subset, tmp_path):
    spec = kf_compile.compile_pipeline(_e2e_config(tmp_path), str(tmp_path / "pipeline.yaml"))
    results = run_spec(spec, parameters={"data_dir": str(small_subset), "retrieval_epochs": 1,
                                         "ranking_epochs": 1}, env=_env(), driver="vertex")
    by_name = {r.name: r for r in results}
    assert "arrived" not in pathlib.Path(by_name["RetrievalTrainer"].log_path).read_text()
    _assert_pushed(tmp_path, by_name)
