"""Compiling for Kubeflow: the spec's task graph is the local DAG's, it parses as KFP's
PipelineSpec, carries the configured image and run-time parameters, and matches the checked-in
golden spec once volatile fields are removed.

To accept an intended change of the compiled spec, regenerate the golden file with
``RECSYS_UPDATE_GOLDEN=1 .venv/bin/pytest tests/kubeflow/test_compile.py`` and review its diff.
"""

import json
import os
import pathlib
import re

import pytest

from recsys_pipeline.errors import ConfigError
from recsys_pipeline.kubeflow import compile as kf_compile
from recsys_pipeline.kubeflow import entrypoint
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import RUNTIME_PARAMETERS, SPAN_PARAMETER, PipelineConfig
from recsys_pipeline.pipeline.pipeline import create_pipeline

GOLDEN = pathlib.Path(__file__).parent / "golden" / "pipeline_spec.json"
IMAGE = "registry.example.com/ml/recsys-pipeline:golden"


def _config(target="kfp"):
    config = PipelineConfig()
    config.kubeflow.image = IMAGE
    config.kubeflow.target = target
    return config


@pytest.fixture(scope="module")
def kfp_spec(tmp_path_factory):
    out = tmp_path_factory.mktemp("compile") / "pipeline.yaml"
    document = kf_compile.compile_pipeline(_config(), str(out))
    return document, out


def _local_graph(ml100k_dir):
    config = PipelineConfig()
    config.data.data_dir = str(ml100k_dir)
    return {c.id: sorted(u.id for u in c.upstream_nodes)
            for c in create_pipeline(config).components}


def normalized(spec: dict) -> dict:
    """The spec without what changes with the TFX release or any source edit."""
    text = json.dumps(spec, sort_keys=True)
    text = re.sub(r'(\\*"source_fingerprint\\*": \\*")[0-9a-f]{16}', r"\1<hash>", text)
    # A component's own fingerprint parameter (not inside a custom_config).
    text = re.sub(r'("source_fingerprint": \{"runtimeValue": \{"constant": ")[0-9a-f]{16}',
                  r"\1<hash>", text)
    document = json.loads(text)
    document["sdkVersion"] = "<tfx version>"
    return document


def test_task_graph_equals_the_local_dag(kfp_spec, ml100k):
    spec, _ = kfp_spec
    assert kf_compile.task_graph(spec) == dict(sorted(_local_graph(ml100k).items()))


def test_vertex_target_has_the_same_graph_and_looks_baselines_up_as_kfp(tmp_path, ml100k):
    job = kf_compile.compile_pipeline(_config("vertex"), str(tmp_path / "job.json"))
    spec = job["pipelineSpec"]
    assert kf_compile.task_graph(spec) == dict(sorted(_local_graph(ml100k).items()))
    executors = spec["deploymentSpec"]["executors"]
    # Without span folders no Resolver is left (a previous window's is the only one).
    assert not [k for k, v in executors.items() if "resolver" in v]
    tasks = spec["root"]["dag"]["tasks"]
    assert all(tasks[b.baseline]["cachingOptions"] == {"enableCache": False}
               for b in nodes.BRANCHES if b.baseline in tasks)
    # Every step runs the entrypoint there too (what Vertex sends passes through it as it is).
    assert {tuple(e["container"]["command"]) for e in executors.values()
            if "container" in e} == {("python", "-m", entrypoint.MODULE)}
    kf_compile.check_spec_format(spec, "job.json")
    # Vertex takes the PipelineJob with the parameters' defaults in its runtime config.
    assert job["runtimeConfig"]["gcsOutputDirectory"] == PipelineConfig().kubeflow.pipeline_root
    assert job["runtimeConfig"]["parameterValues"]["min_top_k_accuracy"] == 0.2


def test_sequential_branch_compiles_with_the_same_graph_as_locally(tmp_path, ml100k):
    config = _config()
    config.sequential.enabled = True
    spec = kf_compile.compile_pipeline(config, str(tmp_path / "pipeline.yaml"))
    local = PipelineConfig()
    local.data.data_dir = str(ml100k)
    local.sequential.enabled = True
    graph = {c.id: sorted(u.id for u in c.upstream_nodes)
             for c in create_pipeline(local).components}
    assert kf_compile.task_graph(spec) == dict(sorted(graph.items()))
    assert {"SequentialTrainer", "SequentialEvaluator", "SequentialPusher"} <= set(graph)


def test_spec_is_what_kfp_upload_accepts(kfp_spec):
    spec, path = kfp_spec
    written, platform = kf_compile.load_package(str(path))
    assert written == spec
    # The serving volume is mounted in every step, where the pushers write.
    mounts = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(mounts) == set(spec["deploymentSpec"]["executors"])
    assert {json.dumps(m) for m in mounts.values()} == {json.dumps(
        {"pvcMount": [{"constant": "recsys-serving", "mountPath": "/mnt/recsys"}]})}
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["ScannPusher"]["inputs"]["parameters"]["serving_dir"]["runtimeValue"][
        "constant"] == "/mnt/recsys/serving"
    message = kf_compile.check_pipeline_spec(spec)
    assert message.schema_version == "2.1.0"  # the only version KFP 2.x's backend accepts
    assert message.pipeline_info.name == "recsys-pipeline"
    assert spec["defaultPipelineRoot"] == PipelineConfig().kubeflow.pipeline_root
    executors = spec["deploymentSpec"]["executors"]
    assert all("container" in e for e in executors.values()), "no resolver executors on KFP"
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    for name, component in spec["components"].items():
        container = executors[component["executorLabel"]]["container"]
        assert container["command"] == ["python", "-m", "recsys_pipeline.kubeflow.entrypoint"]
        args = container["args"]
        assert args[:4] == ["--component", name, "--spec_format", str(entrypoint.SPEC_FORMAT)]
        # The step's declared artifact types travel with it, then TFX's own arguments.
        assert entrypoint.ArtifactTypes.from_json(name, args[5]) == \
            entrypoint.ArtifactTypes.of_component(name, component)
        assert args[6] == "--executor_class_path" and "{{$}}" in args
        assert {"name": "TF_USE_LEGACY_KERAS", "value": "1"} in container["env"]
    # Tasks whose inputs do not change when their result would: never served from KFP's cache.
    uncached = {n for n, t in tasks.items() if not t["cachingOptions"]["enableCache"]}
    assert uncached == {"InteractionsExampleGen", "RetrievalBaseline", "RankingBaseline"}


def test_a_spec_from_before_the_entrypoint_is_refused(kfp_spec, tmp_path, capsys):
    from recsys_pipeline import cli

    spec, _ = kfp_spec
    old = json.loads(json.dumps(spec))
    for executor in old["deploymentSpec"]["executors"].values():
        container = executor["container"]
        container["command"] = ["python", "-m", entrypoint.TFX_EXECUTOR_MODULE]
        container["args"] = container["args"][6:]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert cli.main(["kubeflow", "run-local", str(path)]) == 2
    err = capsys.readouterr().err
    assert "from before the recsys entrypoint" in err
    assert f"Recompile it: recsys kubeflow compile --output {path}" in err
    other = json.loads(json.dumps(spec))
    args = other["deploymentSpec"]["executors"]["Transform_executor"]["container"]["args"]
    args[args.index("--spec_format") + 1] = "1"
    with pytest.raises(ConfigError, match="executor Transform_executor has spec format 1"):
        kf_compile.check_spec_format(other, "other.json")
    assert cli.main(["kubeflow", "upload", str(path), "--host", "http://127.0.0.1:9"]) == 2
    assert "from before the recsys entrypoint" in capsys.readouterr().err  # before any call


def test_span_folders_make_span_a_run_time_parameter_with_window_and_warm_starts(tmp_path):
    config = _config()
    config.kubeflow.span_folders = True
    spec = kf_compile.compile_pipeline(config, str(tmp_path / "pipeline.yaml"))
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params[SPAN_PARAMETER] == {"parameterType": "STRING", "defaultValue": "latest"}
    tasks = spec["root"]["dag"]["tasks"]
    example_gen = tasks[nodes.EXAMPLE_GEN]["inputs"]["parameters"]
    assert example_gen["span_choice"]["componentInputParameter"] == SPAN_PARAMETER
    assert example_gen["span_registry"]["runtimeValue"]["constant"] == \
        f"{config.kubeflow.pipeline_root}/spans/{nodes.EXAMPLE_GEN}"
    assert nodes.SPAN_WINDOW in tasks and nodes.PREVIOUS_WINDOW not in tasks  # no Resolver
    for branch in (nodes.RETRIEVAL, nodes.RANKING):
        base = tasks[branch.trainer]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
        assert base == {"producerTask": branch.baseline, "outputArtifactKey": "model"}
    window = tasks[nodes.SPAN_WINDOW]["inputs"]
    assert set(window["artifacts"]) == {"examples", "statistics", "schema"}


def test_runtime_parameters_with_defaults(kfp_spec):
    spec, _ = kfp_spec
    params = spec["root"]["inputDefinitions"]["parameters"]
    kinds = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}
    assert {k: v["parameterType"] for k, v in params.items()} == {
        k: kinds[t] for k, t in RUNTIME_PARAMETERS.items() if k != SPAN_PARAMETER}
    defaults = {k: v.get("defaultValue") for k, v in params.items()}
    config = PipelineConfig()
    assert defaults == {"data_dir": None,  # no data directory configured: required at run time
                        "retrieval_epochs": config.retrieval.epochs,
                        "ranking_epochs": config.ranking.epochs,
                        "min_top_k_accuracy": config.evaluation.min_top_k_accuracy,
                        "max_rmse": config.evaluation.max_rmse}
    tasks = spec["root"]["dag"]["tasks"]

    def source(task, name):
        return tasks[task]["inputs"]["parameters"][name]["componentInputParameter"]

    assert source("InteractionsExampleGen", "data_dir") == "data_dir"
    assert source("RetrievalTrainer", "epochs") == "retrieval_epochs"
    assert source("RankingTrainer", "epochs") == "ranking_epochs"
    assert source("RetrievalEvaluator", "value_bound") == "min_top_k_accuracy"
    assert source("RankingEvaluator", "value_bound") == "max_rmse"


def test_beam_args_reach_every_beam_component(tmp_path):
    config = _config()
    config.beam.pipeline_args = ["--runner=DataflowRunner", "--project=p", "--region=r",
                                 "--temp_location=gs://b/tmp"]
    spec = kf_compile.compile_pipeline(config, str(tmp_path / "p.yaml"))
    executors = spec["deploymentSpec"]["executors"]
    for name in ("StatisticsGen", "Transform", "RetrievalEvaluator", "RankingEvaluator",
                 "InteractionsExampleGen"):
        assert executors[f"{name}_executor"]["container"]["args"][-4:] == \
            config.beam.pipeline_args, name
    # The entrypoint hands the Beam arguments on to TFX's untouched.
    args = executors["Transform_executor"]["container"]["args"]
    assert entrypoint.split_arguments(args)[1][-4:] == config.beam.pipeline_args


def test_matches_the_golden_spec(kfp_spec):
    spec, _ = kfp_spec
    actual = normalized(spec)
    if os.environ.get("RECSYS_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())
    assert actual == expected, (
        "the compiled spec changed; if intended, regenerate it (see this module's docstring)")


def test_cli_compile_for_vertex_with_flags(tmp_path, capsys):
    from recsys_pipeline import cli

    out = tmp_path / "job.json"
    assert cli.main(["kubeflow", "compile", "--target", "vertex", "--output", str(out),
                     "--image", "eu.gcr.io/p/recsys:7", "--pipeline-root", "gs://b/r"]) == 0
    job = json.loads(out.read_text())
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/r"
    images = {e["container"]["image"] for e in
              job["pipelineSpec"]["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {"eu.gcr.io/p/recsys:7"}
    assert "PipelineJob for Vertex AI" in capsys.readouterr().out


def test_cli_compile_refuses_what_kfp_could_not_use(tmp_path, capsys):
    from recsys_pipeline import cli

    assert cli.main(["kubeflow", "compile", "--pipeline-root", "s3://bucket/root"]) == 2
    assert "s3:// and minio:// are not readable" in capsys.readouterr().err
    assert cli.main(["kubeflow", "compile", "--output", str(tmp_path / "p.json")]) == 2
    assert "second YAML document" in capsys.readouterr().err
    assert not (tmp_path / "p.json").exists()
