"""What Vertex AI's driver sends (every artifact with the type the spec declares, which the
entrypoint leaves as it is) runs the compiled spec too: span 1 up to Transform, every kind of
data artifact the models are built from passed typed between steps. The whole spec, twice, to
pushed models, runs with what open-source KFP sends (test_launcher.py); Vertex's typed Model
and ModelBlessing inputs are the forms TFX's own entrypoint was written for."""

import pathlib

import pytest

from recsys_pipeline.kubeflow import compile as kf_compile
from recsys_pipeline.kubeflow.launcher import run_spec
from recsys_pipeline.pipeline import nodes
from tests.kubeflow.test_launcher import _e2e_config, _env, small_subset  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def test_vertex_forms_run_the_spec_to_transform(small_subset, tmp_path):  # noqa: F811
    config = _e2e_config(tmp_path)
    spec = kf_compile.compile_pipeline(config, str(tmp_path / "pipeline.yaml"))
    parameters = {"data_dir": str(small_subset), "span": "1"}
    results = {r.name: r for r in run_spec(spec, parameters=parameters, env=_env(),
                                           driver="vertex", until=nodes.TRANSFORM)}
    assert set(results) == {nodes.SCHEMA_GEN, nodes.EXAMPLE_GEN, nodes.STATISTICS_GEN,
                            nodes.EXAMPLE_VALIDATOR, nodes.ANOMALY_GATE, nodes.SPAN_WINDOW,
                            nodes.TRANSFORM}, sorted(results)
    for result in results.values():  # nothing needed retyping, and KFP added no output
        log = pathlib.Path(result.log_path).read_text()
        assert "arrived" not in log and "executor-logs" not in log, result.name
    graph = pathlib.Path(results[nodes.TRANSFORM].artifacts["transform_graph"]["uri"])
    assert (graph / "transform_fn" / "saved_model.pb").is_file(), graph
    window = results[nodes.SPAN_WINDOW].artifacts["window"]["metadata"]
    assert window["window_spans"] == "1", window
