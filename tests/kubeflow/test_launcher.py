"""The compiled spec executes: every task's container command run as a subprocess, in
dependency order, with inputs wired from upstream outputs as KFP's launcher does -- ending
with pushed models -- over two spans, both sent what open-source KFP's driver sends (inputs
without their type, the executor-logs output it adds): first span 1, then span "latest"
(span 2), against the first run's baselines and warm-started from them. What Vertex AI's
driver sends has its own run (test_launcher_vertex.py). Plus the launcher's own rules on tiny
hand-made specs."""

import json
import os
import pathlib
import sys

import pytest

from recsys_pipeline.kubeflow import compile as kf_compile
from recsys_pipeline.kubeflow.launcher import LaunchError, run_spec, topological_order
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.serving import layout
from tests.conftest import write_subset

REPO = pathlib.Path(__file__).resolve().parents[2]


def _task(*deps, inputs=None):
    task = {"dependentTasks": list(deps)}
    if inputs:
        task["inputs"] = {"artifacts": {k: {"taskOutputArtifact": {
            "producerTask": v, "outputArtifactKey": "out"}} for k, v in inputs.items()}}
    return task


def test_topological_order_respects_dependencies_and_inputs():
    tasks = {"c": _task("b"), "b": _task(inputs={"x": "a"}), "a": _task(), "d": _task()}
    order = topological_order(tasks)
    assert order.index("a") < order.index("b") < order.index("c")


def test_cycle_is_refused():
    with pytest.raises(LaunchError, match="cycle"):
        topological_order({"a": _task("b"), "b": _task("a")})


def _one_task_spec(executor):
    return {"pipelineInfo": {"name": "p"},
            "root": {"dag": {"tasks": {"t": {"componentRef": {"name": "c"}}}}},
            "components": {"c": {"executorLabel": "e"}},
            "deploymentSpec": {"executors": {"e": executor}}}


def test_resolver_executor_is_refused_by_name(tmp_path):
    spec = _one_task_spec({"resolver": {"outputArtifactQueries": {}}})
    with pytest.raises(LaunchError, match="resolver executors are not supported"):
        run_spec(spec, pipeline_root=str(tmp_path), progress=lambda _: None)


def test_failing_task_reports_its_log(tmp_path):
    spec = _one_task_spec({"container": {"image": "i", "command": [
        sys.executable, "-c", "import sys; print('boom at row 7'); sys.exit(3)"]}})
    with pytest.raises(LaunchError, match=r"(?s)task t exited with 3.*boom at row 7"):
        run_spec(spec, pipeline_root=str(tmp_path), progress=lambda _: None)


def test_each_task_gets_a_temp_dir_that_goes_with_it(tmp_path, monkeypatch):
    # Like a pod's /tmp: what a step leaves in its temp directory (TFX's sdist of itself, in
    # every Beam step) is gone when the step ends, and never lands in the machine's.
    monkeypatch.setenv("TMPDIR", str(tmp_path / "machine-tmp"))
    (tmp_path / "machine-tmp").mkdir()
    spec = _one_task_spec({"container": {"image": "i", "command": [
        sys.executable, "-c", "import tempfile; print('TMP', tempfile.mkdtemp())"]}})
    [result] = run_spec(spec, pipeline_root=str(tmp_path / "root"), progress=lambda _: None)
    left = pathlib.Path(result.log_path).read_text().split("TMP ")[1].strip()
    assert "recsys-task-t-" in left and not os.path.exists(left)
    assert list((tmp_path / "machine-tmp").iterdir()) == []


def test_remote_pipeline_root_is_refused():
    with pytest.raises(LaunchError, match="local pipeline root"):
        run_spec(_one_task_spec({}), pipeline_root="gs://bucket/root")


@pytest.fixture(scope="module")
def small_subset(real_ml100k, tmp_path_factory):
    """5,000 ratings of MovieLens 100K in two time-ordered span folders (the catalogue shared)."""
    data = write_subset(real_ml100k, tmp_path_factory.mktemp("kf-subset") / "ml-100k", 5_000)
    lines = sorted((data / "u.data").read_text().splitlines(),
                   key=lambda line: int(line.split("\t")[3]))
    for number, part in ((1, lines[:2500]), (2, lines[2500:])):
        (data / f"span-{number}").mkdir()
        (data / f"span-{number}" / "u.data").write_text("\n".join(part) + "\n")
    (data / "u.data").unlink()
    return data


def test_each_driver_sends_its_own_forms(tmp_path):
    spec = _one_task_spec({"container": {"image": "i", "command": [
        sys.executable, "-c", "import sys, json, pathlib; pathlib.Path('input.json')"
        ".write_text(sys.argv[1]); print('step says hello')", "{{$}}"]}})
    typed = "title: tfx.Examples\ntype: object\n"
    spec["root"]["dag"]["tasks"]["u"] = {"componentRef": {"name": "producer"}}
    spec["root"]["dag"]["tasks"]["t"]["inputs"] = {"artifacts": {"examples": {
        "taskOutputArtifact": {"producerTask": "u", "outputArtifactKey": "examples"}}}}
    spec["components"]["producer"] = {"executorLabel": "p", "outputDefinitions": {
        "artifacts": {"examples": {"artifactType": {"instanceSchema": typed}}}}}
    spec["deploymentSpec"]["executors"]["p"] = {"container": {"image": "i", "command": [
        sys.executable, "-c", "import sys, json; out = json.loads(sys.argv[1])['outputs'];"
        "open(out['outputFile'], 'w').write(json.dumps({'artifacts': {'examples': {"
        "'artifacts': [{'metadata': {'span': 2, 'split_names': '[\"train\"]'}}]}}}))",
        "{{$}}"]}}
    sent, results = {}, {}
    for driver in ("oss", "vertex"):
        results[driver] = run_spec(spec, pipeline_root=str(tmp_path / driver),
                                   progress=lambda _: None, driver=driver)
        consumer = pathlib.Path(results[driver][-1].log_path).parent / "input.json"
        sent[driver] = json.loads(consumer.read_text())
    [oss_input] = sent["oss"]["inputs"]["artifacts"]["examples"]["artifacts"]
    produced = results["oss"][0].artifacts["examples"]
    # The store's id as the name, no type, numbers as doubles (metadata/client.go 1144,
    # converter.go 181-221), under <root>/<pipeline>/<run>/<task>/<uuid>/<key>.
    assert oss_input == {"name": produced["name"], "uri": produced["uri"],
                         "type": {"instanceSchema": ""},
                         "metadata": {"span": 2.0, "split_names": '["train"]'}}
    relative = pathlib.Path(produced["uri"]).relative_to(tmp_path / "oss" / "p")
    run_id, task, salt, key = relative.parts
    assert (task, key, len(salt)) == ("u", "examples", 36), relative
    # KFP's executor-logs output (driver.go 754-768), qualified by the retry index, filled
    # with the step's log by the launcher.
    [logs] = sent["oss"]["outputs"]["artifacts"]["executor-logs"]["artifacts"]
    assert logs["type"] == {"schemaTitle": "system.Artifact"}
    assert logs["name"] == "executor-logs" and logs["uri"].endswith("/executor-logs-0")
    assert "step says hello" in pathlib.Path(logs["uri"]).read_text()
    assert "executor-logs" not in results["oss"][-1].artifacts
    [vertex_input] = sent["vertex"]["inputs"]["artifacts"]["examples"]["artifacts"]
    assert vertex_input["type"] == {"instanceSchema": typed}
    assert "executor-logs" not in sent["vertex"]["outputs"]["artifacts"]
    with pytest.raises(LaunchError, match="unknown driver 'argo'"):
        run_spec(spec, pipeline_root=str(tmp_path), driver="argo")


def test_a_parameter_the_task_does_not_set_follows_kfps_resolve_rules(tmp_path):
    spec = _one_task_spec({"container": {"image": "i", "command": [
        sys.executable, "-c", "import sys, pathlib; pathlib.Path('input.json')"
        ".write_text(sys.argv[1])", "{{$}}"]}})
    spec["components"]["c"]["inputDefinitions"] = {"parameters": {
        "defaulted": {"parameterType": "STRING", "defaultValue": "d"},
        "optional": {"parameterType": "STRING", "isOptional": True}}}
    [result] = run_spec(spec, pipeline_root=str(tmp_path / "a"), progress=lambda _: None)
    sent = json.loads((pathlib.Path(result.log_path).parent / "input.json").read_text())
    assert sent["inputs"]["parameterValues"] == {}  # resolve.go 184-199: neither is sent
    spec["components"]["c"]["inputDefinitions"]["parameters"]["needed"] = {
        "parameterType": "STRING"}
    with pytest.raises(LaunchError, match="task t: neither value nor default value provided "
                       "for non-optional parameter 'needed'"):
        run_spec(spec, pipeline_root=str(tmp_path / "b"), progress=lambda _: None)


def test_until_runs_a_task_and_what_it_waits_for(tmp_path):
    spec = _one_task_spec({"container": {"image": "i", "command": [sys.executable, "-c", ""]}})
    for name, deps in (("a", []), ("b", ["a"]), ("c", ["b"]), ("d", [])):
        spec["root"]["dag"]["tasks"][name] = {"componentRef": {"name": "c"},
                                              "dependentTasks": deps}
    ran = run_spec(spec, pipeline_root=str(tmp_path), progress=lambda _: None, until="b")
    assert [r.name for r in ran] == ["a", "b"]
    with pytest.raises(LaunchError, match="no task 'z' in the spec"):
        run_spec(spec, pipeline_root=str(tmp_path), until="z")


def _e2e_config(tmp_path):
    config = PipelineConfig()
    config.kubeflow.image = "recsys-pipeline:test"
    config.kubeflow.pipeline_root = str(tmp_path / "root")
    config.kubeflow.project_dir = str(REPO)  # where the image has the project, here the repo
    config.kubeflow.volume_mount_path = str(tmp_path / "volume")  # the PVC, here a folder
    config.evaluation.min_top_k_accuracy = 0.01
    config.evaluation.max_rmse = 2.0
    config.evaluation.min_ndcg = 0.0
    # Whatever one epoch on a few thousand ratings learns, the second run's gates pass: that
    # each finds its baseline is what is tested here.
    config.evaluation.top_k_tolerance = config.evaluation.rmse_tolerance = 1.0
    config.evaluation.ndcg_tolerance = 1.0
    config.ranking.ensemble = 1  # what runs task by task is tested here, not the model
    config.index.min_recall = 0.9  # nor the index: few queries measure recall within points
    config.kubeflow.span_folders = True
    return config


# As in the image, `python` is the project's environment's interpreter.
def _env():
    return {**os.environ, "PATH": f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}"}


def _assert_pushed(tmp_path, by_name):
    serving_dir = tmp_path / "volume" / "serving"
    for model in nodes.MODEL_NAMES:
        version = layout.latest_version_dir(str(serving_dir), model)
        assert version and (pathlib.Path(version) / "saved_model.pb").is_file(), model
        pushed = by_name[nodes.push_of_model(model).node_id]
        assert pushed.artifacts["pushed_model"]["metadata"]["pushed_destination"] == version
    return serving_dir


@pytest.mark.e2e
def test_compiled_spec_runs_task_by_task_and_pushes(small_subset, tmp_path):
    config = _e2e_config(tmp_path)
    spec = kf_compile.compile_pipeline(config, str(tmp_path / "pipeline.yaml"))
    env = _env()
    parameters = {"data_dir": str(small_subset), "retrieval_epochs": 1, "ranking_epochs": 1}
    results = run_spec(spec, parameters={**parameters, "span": "1"}, env=env, driver="oss")
    assert len(results) == len(spec["root"]["dag"]["tasks"]) == 20
    by_name = {r.name: r for r in results}
    # Each step was sent its inputs without a type, and the entrypoint typed them as
    # declared; KFP's executor-logs output was left to KFP.
    trainer_log = pathlib.Path(by_name["RetrievalTrainer"].log_path).read_text()
    assert "RetrievalTrainer: input examples: arrived an empty instance schema; typed " \
        "tfx.Examples" in trainer_log
    assert "RetrievalTrainer: input transform_graph: arrived an empty instance schema; " \
        "typed tfx.TransformGraph" in trainer_log
    assert "RetrievalTrainer: output executor-logs: added by KFP's driver" in trainer_log
    # The run-time parameters reached the steps.
    example_gen_log = pathlib.Path(by_name["InteractionsExampleGen"].log_path).read_text()
    assert str(small_subset) in example_gen_log
    # First run: no baseline yet, every gate blessed, every model pushed.
    for name in ("RetrievalEvaluator", "RankingEvaluator", "Recommender"):
        blessing = by_name[name].artifacts["blessing"]
        assert blessing["metadata"]["blessed"] == 1, blessing
    serving_dir = _assert_pushed(tmp_path, by_name)
    # The blessings were recorded where the next run's lookup reads them.
    from recsys_pipeline.components.registry import latest_blessed

    registry = tmp_path / "root" / "blessings" / "RetrievalEvaluator"
    record = latest_blessed(str(registry))
    assert record["model_uri"] == by_name["RetrievalTrainer"].artifacts["model"]["uri"]

    # Second run of the same spec, sent the same forms: each Evaluator now compares against
    # the first run's model, found by BlessedModelLookup (the spec has no Resolver), the
    # Trainers warm-start from it, and the Recommender finds the first run's in its registry.
    second = {r.name: r for r in run_spec(spec, parameters={**parameters, "span": "latest"},
                                          env=env, driver="oss")}
    assert "arrived an empty instance schema" in pathlib.Path(
        second["RetrievalTrainer"].log_path).read_text()
    window = second[nodes.SPAN_WINDOW].artifacts["window"]["metadata"]
    assert (int(window["span"]), window["window_spans"]) == (2, "1,2"), window
    assert by_name[nodes.SPAN_WINDOW].artifacts["window"]["metadata"]["window_spans"] == "1"
    for name in ("Retrieval", "Ranking"):
        first_model = by_name[f"{name}Trainer"].artifacts["model"]["uri"]
        assert second[f"{name}Baseline"].artifacts["model"]["metadata"]["baseline_model"] == \
            first_model
        blessing = second[f"{name}Evaluator"].artifacts["blessing"]["metadata"]
        assert blessing["baseline_model"] == first_model, blessing
        start = second[f"{name}Trainer"].artifacts["model"]["metadata"][
            nodes.WARM_START_PROPERTY]
        assert start.startswith(f"warm start from {first_model}/Format-Serving"), start
    composed = second["Recommender"].artifacts["blessing"]["metadata"]
    assert composed["baseline_model"] == by_name["Recommender"].artifacts["model"]["uri"], (
        composed)
    assert composed["blessed"] == 1, composed
    for model in nodes.MODEL_NAMES:  # only complete versions, whatever was pushed
        model_dir = serving_dir / model
        assert all((v / "saved_model.pb").is_file() for v in model_dir.iterdir()
                   if v.name.isdigit())
        assert not [v for v in model_dir.iterdir() if v.name.startswith(".staging")]

