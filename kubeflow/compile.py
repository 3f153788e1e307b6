"""Compiles ``create_pipeline(config)`` with TFX's Kubeflow V2 runner.

Two targets, one DAG:

* ``kfp`` (open-source Kubeflow Pipelines 2.x): KFP's upload API takes a ``PipelineSpec``
  document (YAML or JSON) of schema version 2.1.0 -- not the ``PipelineJob`` wrapper TFX
  writes -- so the spec is taken out of the job, and the pipeline root TFX keeps in the job's
  runtime config becomes the spec's ``defaultPipelineRoot``. TFX's Resolver nodes compile to
  KFP ``resolver`` executors, which this backend does not implement, so this target builds
  the DAG without them (baselines come from ``BlessedModelLookup`` on every target, the
  previous span window from SpanWindow's registry: ``pipeline/target.py``).
* ``vertex`` (Vertex AI Pipelines): TFX's ``PipelineJob`` JSON as it is; Vertex runs the
  previous window's Resolver natively.

On both, InteractionsExampleGen is compiled with caching off: its inputs are a directory name
and settings, so a cache hit would silently reuse old data after the files there changed.
Everything downstream then sees a new artifact and recomputes. The Baselines
(``BlessedModelLookup``) are uncached too: they have no inputs, so a cache hit would keep
handing every later run the first run's baseline.

Every step runs ``recsys_pipeline.kubeflow.entrypoint`` in front of TFX's executor entrypoint,
with the step's declared artifact types and the spec format (see ``kubeflow/entrypoint.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Optional

from recsys_pipeline import files
from recsys_pipeline.errors import ConfigError
from recsys_pipeline.kubeflow import entrypoint
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig

SCHEMA_VERSION = "2.1.0"
CONTAINER_ENV = (("TF_USE_LEGACY_KERAS", "1"),)


def build_job(config: PipelineConfig, target: str) -> dict[str, Any]:
    """TFX's PipelineJob (as a dict) for the DAG built for ``target``."""
    from tfx import v1 as tfx

    from recsys_pipeline.pipeline.pipeline import create_pipeline
    from recsys_pipeline.pipeline.target import Target

    pipeline = create_pipeline(config, Target.named(config, target))
    defaults = runtime_parameter_defaults(pipeline)
    runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
        display_name=config.pipeline_name, default_image=config.kubeflow.image,
        use_pipeline_spec_2_1=True)
    with tempfile.TemporaryDirectory() as scratch:
        runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=runner_config, output_dir=scratch)
        job = runner.run(pipeline, parameter_values=defaults, write_out=False)
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    uncached = [nodes.EXAMPLE_GEN] + [b.baseline for b in nodes.BRANCHES if b.baseline in tasks]
    for name in uncached:
        tasks[name]["cachingOptions"] = {"enableCache": False}
    _use_entrypoint(job["pipelineSpec"])
    return job


def _use_entrypoint(spec: dict[str, Any]) -> None:
    """Puts ``kubeflow/entrypoint.py`` in front of TFX's executor entrypoint in every step."""
    executors = spec["deploymentSpec"]["executors"]
    for name, component in spec["components"].items():
        container = executors[component["executorLabel"]].get("container")
        if container is None:
            continue
        if container["command"][-1] != entrypoint.TFX_EXECUTOR_MODULE:
            raise ConfigError(f"component {name}: TFX compiled the command "
                              f"{container['command']}, not its executor entrypoint; this "
                              "TFX release is not supported")
        types = entrypoint.ArtifactTypes.of_component(name, component)
        container["command"] = ["python", "-m", entrypoint.MODULE]
        container["args"] = ["--component", name, "--spec_format",
                             str(entrypoint.SPEC_FORMAT), "--artifact_types",
                             types.to_json(), *container["args"]]
        # TFX's entrypoint imports TensorFlow before any of our modules could select Keras 2
        # (which TFRS needs); the image sets it too, this keeps other images honest.
        container["env"] = [dict(name=k, value=v) for k, v in CONTAINER_ENV]


def check_spec_format(spec: dict[str, Any], path: str) -> None:
    """Refuses a spec whose steps this version's entrypoint would not run as compiled."""
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor.get("container")
        if container is None:
            continue
        command, args = container.get("command", []), container.get("args", [])
        found = (args[args.index("--spec_format") + 1]
                 if entrypoint.MODULE in command and "--spec_format" in args[:-1] else None)
        if found != str(entrypoint.SPEC_FORMAT):
            what = (f"spec format {found}" if found else
                    f"a step command ({' '.join(command)}) from before the recsys entrypoint")
            raise ConfigError(f"{path}: executor {name} has {what}; this version of "
                              f"recsys-pipeline runs spec format {entrypoint.SPEC_FORMAT}. "
                              f"Recompile it: recsys kubeflow compile --output {path}")


def runtime_parameter_defaults(pipeline) -> dict[str, Any]:
    """{name: default} of the pipeline's run-time parameters that have a default.

    TFX's compiler leaves defaults out of the spec; they are given back as the job's
    parameter values (Vertex) and as the root's input defaults (KFP).
    """
    from tfx.orchestration import data_types

    defaults = {}
    for component in pipeline.components:
        for value in component.exec_properties.values():
            if isinstance(value, data_types.RuntimeParameter) and value.default is not None:
                defaults[value.name] = value.default
    return defaults


def kfp_pipeline_spec(job: dict[str, Any]) -> dict[str, Any]:
    """The PipelineSpec that KFP 2.x's upload API accepts, from TFX's PipelineJob."""
    spec = dict(job["pipelineSpec"])
    if spec.get("schemaVersion") != SCHEMA_VERSION:
        raise ConfigError(f"KFP 2.x accepts pipeline spec schema {SCHEMA_VERSION} only; "
                          f"TFX wrote {spec.get('schemaVersion')!r}")
    runtime = job.get("runtimeConfig", {})
    if runtime.get("gcsOutputDirectory"):
        spec["defaultPipelineRoot"] = runtime["gcsOutputDirectory"]
    spec["root"] = json.loads(json.dumps(spec["root"]))
    parameters = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    for name, value in runtime.get("parameterValues", {}).items():
        parameters[name]["defaultValue"] = value
    return spec


def check_pipeline_spec(spec: dict[str, Any]):
    """Parses ``spec`` as KFP's PipelineSpec proto (unknown fields are an error)."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    message = pipeline_spec_pb2.PipelineSpec()
    json_format.ParseDict(spec, message)
    return message


def platform_spec(spec: dict[str, Any], claim: str, mount_path: str) -> dict[str, Any]:
    """KFP's Kubernetes platform spec mounting ``claim`` at ``mount_path`` in every step.

    The same document kfp-kubernetes' ``mount_pvc`` writes; it travels as the second YAML
    document of the upload. ``constant`` names the claim: the form every KFP 2.x backend reads.
    """
    mount = {"constant": claim, "mountPath": mount_path}
    executors = {name: {"pvcMount": [dict(mount)]}
                 for name, executor in spec["deploymentSpec"]["executors"].items()
                 if "container" in executor}
    return {"platforms": {"kubernetes": {"deploymentSpec": {"executors": executors}}}}


def render(documents: list[dict[str, Any]], path: str) -> str:
    """JSON for .json paths (one document), YAML otherwise (KFP's upload takes either)."""
    if path.endswith(".json"):
        if len(documents) != 1:
            raise ConfigError(f"{path}: the volume mount travels as a second YAML document; "
                              "write a .yaml file (or set kubeflow.volume_claim = \"\")")
        return json.dumps(documents[0], indent=2, sort_keys=True) + "\n"
    import yaml

    return yaml.safe_dump_all(documents, sort_keys=True, width=100)


def load_package(path: str) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """(PipelineSpec, platform spec or None) from a compiled file, as KFP's upload reads it.

    A Vertex PipelineJob yields its ``pipelineSpec``.
    """
    import yaml

    spec, platform = None, None
    with open(path) as f:
        for document in yaml.safe_load_all(f):
            if not isinstance(document, dict):
                continue
            if "pipelineSpec" in document:
                document = document["pipelineSpec"]
            if "pipelineInfo" in document:
                spec = document
            elif "platforms" in document:
                platform = document
    if spec is None:
        raise ConfigError(f"{path} holds no pipeline spec (compile it with recsys kubeflow "
                          "compile)")
    return spec, platform


def compile_pipeline(config: PipelineConfig, output_path: str) -> dict[str, Any]:
    """Writes the compiled pipeline for ``config.kubeflow.target``; returns the document."""
    target = config.kubeflow.target
    job = build_job(config, target)
    if target == "vertex":
        document = job
        check_pipeline_spec(job["pipelineSpec"])
        documents = [job]
    else:
        document = kfp_pipeline_spec(job)
        check_pipeline_spec(document)
        documents = [document]
        if config.kubeflow.volume_claim:
            documents.append(platform_spec(document, config.kubeflow.volume_claim,
                                           config.kubeflow.volume_mount_path))
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    files.atomic_write(output_path, render(documents, output_path))
    return document


RESOLVER_SUFFIXES = ("-model-blessing-resolver", "-model-resolver")


def _node_of(task: str) -> str:
    for suffix in RESOLVER_SUFFIXES:
        if task.endswith(suffix):
            return task[: -len(suffix)]
    return task


def task_graph(spec: dict[str, Any]) -> dict[str, list[str]]:
    """{node: sorted upstream nodes} of a compiled PipelineSpec's root DAG.

    Upstream means a dependency or an input produced by that task. TFX compiles a
    latest-blessed-model Resolver (Vertex target) into two resolver tasks named after it;
    they count as the one node they came from.
    """
    from recsys_pipeline.kubeflow.launcher import upstream_tasks

    graph: dict[str, set] = {}
    for name, task in spec["root"]["dag"]["tasks"].items():
        node = _node_of(name)
        graph.setdefault(node, set()).update(_node_of(u) for u in upstream_tasks(task))
    return {node: sorted(up - {node}) for node, up in sorted(graph.items())}
