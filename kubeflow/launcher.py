"""Runs a compiled PipelineSpec on this machine, task by task, as KFP's launcher would.

``recsys kubeflow run-local pipeline.yaml`` (and the tests) use it to prove that what was
compiled executes -- not only that it parses -- before it is uploaded anywhere. For each task
of the root DAG, in dependency order, it:

1. resolves the task's inputs: constants, the pipeline's run-time parameters, and upstream
   outputs (artifacts with the metadata their producer reported);
2. gives each output artifact a URI under the run's folder (see the driver forms below);
3. builds the ``ExecutorInput`` JSON the way the chosen orchestrator's driver does (see
   ``DRIVERS``), substitutes it for ``{{$}}`` in the container's
   arguments and runs the container's command as a subprocess (in the current environment,
   not the image: ``python`` is whatever is first on ``PATH``), with a temp directory of
   its own that is removed when it ends, as a pod's ``/tmp`` is;
4. reads the ``ExecutorOutput`` the step wrote and records its artifacts' metadata.

``driver="oss"`` (the default) sends what open-source KFP 2.x's driver sends, read at KFP
2.17.0 (``kubeflow/pipelines``; each form cites its file and line):

* an input artifact with the store's artifact id as its name, ``type: {instanceSchema: ""}``
  (the driver rebuilds it from ML Metadata without its schema:
  ``backend/src/v2/metadata/client.go`` lines 1141-1145, "TODO(Bobgy): figure out how to get
  schema", and ``ToRuntimeArtifact``, lines 245-259), and its metadata from the store's
  properties, every number a double (``backend/src/v2/metadata/converter.go``, lines
  181-221);
* each declared output named by its key, typed as declared, at
  ``<root>/<pipeline>/<run id>/<task>/<uuid>/<key>`` (``backend/src/v2/metadata/client.go``
  line 420 puts ``<pipeline>/<run id>`` under the root; ``backend/src/v2/driver/driver.go``,
  ``provisionOutputs``, lines 741-790, adds ``<task>/<uuid>/<key>``);
* one more output, ``executor-logs`` (``schemaTitle: system.Artifact``), that no spec
  declares (``driver.go`` lines 754-768, on unless the driver's ``--publish_logs`` is false,
  its default "true" in ``backend/src/v2/cmd/driver/main.go`` line 102), its URI qualified by
  the retry index, ``-0`` on a first try (``backend/src/v2/component/launcher_v2.go``, lines
  531-597); after the step, the launcher writes the step's log there, as KFP's launcher
  uploads it (``launcher_v2.go`` lines 777-830);
* a parameter the task does not set is not sent, whether or not the component declares a
  default; one neither set, optional nor defaulted fails the task
  (``backend/src/v2/driver/resolve.go`` lines 184-199).

``driver="vertex"`` sends what Vertex AI sends: every artifact with the type the spec declares,
and outputs under ``<root>/<pipeline>/<run id>/<task>/<key>``. The step's entrypoint
(``kubeflow/entrypoint.py``) must run both. Not emulated: KFP's caching, retries beyond the
first try, ``PipelineTaskFinalStatus``, and the object store (the root is a local folder).

Only what TFX's compiled pipelines use is implemented; anything else (``resolver`` or
``importer`` executors, other placeholders, conditions, loops) is refused by name, which is
also what open-source KFP does with ``resolver``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from typing import Any, Callable, Mapping, Optional

from recsys_pipeline.errors import RecsysError

logger = logging.getLogger(__name__)

DRIVERS = ("oss", "vertex")
EXECUTOR_LOGS = "executor-logs"  # the output KFP's driver adds (see the module doc)


class LaunchError(RecsysError):
    """A compiled task could not be run, or failed."""


@dataclasses.dataclass
class TaskResult:
    """What one task did."""

    name: str
    seconds: float
    artifacts: dict[str, dict[str, Any]]
    log_path: str


def upstream_tasks(task: dict) -> set[str]:
    """The tasks a compiled task waits for: its dependencies and its inputs' producers."""
    found = set(task.get("dependentTasks", []))
    for kind in ("artifacts", "parameters"):
        for source in task.get("inputs", {}).get(kind, {}).values():
            for key in ("taskOutputArtifact", "taskOutputParameter"):
                if key in source:
                    found.add(source[key]["producerTask"])
    return found


def topological_order(tasks: Mapping[str, dict]) -> list[str]:
    """Task names so that every task comes after the tasks it depends on."""
    pending = {name: upstream_tasks(task) for name, task in tasks.items()}
    order: list[str] = []
    while pending:
        ready = sorted(n for n, up in pending.items() if not up - set(order))
        if not ready:
            raise LaunchError(f"the DAG has a cycle among {sorted(pending)}")
        for name in ready:
            order.append(name)
            del pending[name]
    return order


def _parameter_value(source: dict, task: str, name: str, parameters: Mapping[str, Any],
                     outputs: Mapping[str, dict]) -> Any:
    if "runtimeValue" in source:
        value = source["runtimeValue"]
        return value["constant"] if "constant" in value else value["constantValue"]
    if "componentInputParameter" in source:
        key = source["componentInputParameter"]
        if key not in parameters:
            raise LaunchError(f"task {task}: input {name} needs the pipeline parameter {key!r}, "
                              "which has no value and no default")
        return parameters[key]
    if "taskOutputParameter" in source:
        ref = source["taskOutputParameter"]
        return outputs[ref["producerTask"]]["parameters"][ref["outputParameterKey"]]
    raise LaunchError(f"task {task}: input parameter {name} has an unsupported source {source}")


def _as_input(produced: dict[str, Any], driver: str) -> dict[str, Any]:
    """An upstream output as ``driver`` hands it to a consumer."""
    if driver == "vertex":
        return produced
    metadata = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
                for k, v in produced.get("metadata", {}).items()}
    return {"name": produced["name"], "uri": produced["uri"], "type": {"instanceSchema": ""},
            "metadata": metadata}


def _executor_input(spec: dict, name: str, run_dir: str, parameters: Mapping[str, Any],
                    outputs: Mapping[str, dict], next_id: Callable[[], str],
                    driver: str = "oss") -> dict:
    task = spec["root"]["dag"]["tasks"][name]
    component = spec["components"][task["componentRef"]["name"]]
    inputs: dict[str, Any] = {"parameterValues": {}, "artifacts": {}}
    given = task.get("inputs", {}).get("parameters", {})
    for key, source in given.items():
        inputs["parameterValues"][key] = _parameter_value(source, name, key, parameters, outputs)
    for key, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
        if key not in given and not definition.get("isOptional") \
                and "defaultValue" not in definition:
            raise LaunchError(f"task {name}: neither value nor default value provided for "
                              f"non-optional parameter {key!r}")
    for key, source in task.get("inputs", {}).get("artifacts", {}).items():
        if "taskOutputArtifact" not in source:
            raise LaunchError(f"task {name}: input artifact {key} has an unsupported source")
        ref = source["taskOutputArtifact"]
        produced = outputs[ref["producerTask"]]["artifacts"][ref["outputArtifactKey"]]
        inputs["artifacts"][key] = {"artifacts": [_as_input(produced, driver)]}
    task_dir = os.path.join(run_dir, name)
    artifacts_dir = task_dir if driver == "vertex" else os.path.join(task_dir,
                                                                     str(uuid.uuid4()))
    out: dict[str, Any] = {"artifacts": {}, "parameters": {},
                           "outputFile": os.path.join(task_dir, "executor_output.json")}
    for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
        out["artifacts"][key] = {"artifacts": [{
            "name": next_id() if driver == "vertex" else key, "type": definition["artifactType"],
            "uri": os.path.join(artifacts_dir, key), "metadata": {}}]}
    if driver == "oss":
        out["artifacts"][EXECUTOR_LOGS] = {"artifacts": [{
            "name": EXECUTOR_LOGS, "type": {"schemaTitle": "system.Artifact"},
            "uri": os.path.join(artifacts_dir, EXECUTOR_LOGS) + "-0"}]}
    for key in component.get("outputDefinitions", {}).get("parameters", {}):
        out["parameters"][key] = {"outputFile": os.path.join(task_dir, "parameters", key)}
    return {"inputs": inputs, "outputs": out}


def _substitute(arguments: list[str], executor_input: dict, task: str) -> list[str]:
    result = []
    for argument in arguments:
        argument = argument.replace("{{$}}", json.dumps(executor_input))
        if "{{$" in argument:
            raise LaunchError(f"task {task}: placeholder not supported here: {argument[:80]}")
        result.append(argument)
    return result


def _merge_output(planned: dict, output_file: str, next_id: Callable[[], str]) -> dict[str, Any]:
    artifacts = {key: {**value["artifacts"][0], "name": next_id()}
                 for key, value in planned.items()}
    parameters: dict[str, Any] = {}
    if os.path.exists(output_file):
        with open(output_file) as f:
            reported = json.load(f)
        for key, value in reported.get("artifacts", {}).items():
            if key in artifacts and value.get("artifacts"):
                artifacts[key]["metadata"] = value["artifacts"][0].get("metadata", {})
        parameters = dict(reported.get("parameterValues", {}))
    return {"artifacts": artifacts, "parameters": parameters}


def upstream_closure(tasks: Mapping[str, dict], name: str) -> set[str]:
    """Task ``name`` and every task it waits for, directly or not."""
    if name not in tasks:
        raise LaunchError(f"no task {name!r} in the spec (its tasks: {', '.join(sorted(tasks))})")
    found, pending = set(), [name]
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(upstream_tasks(tasks[current]))
    return found


def run_spec(spec: dict, pipeline_root: Optional[str] = None,
             parameters: Optional[Mapping[str, Any]] = None,
             env: Optional[Mapping[str, str]] = None,
             progress: Callable[[str], None] = print,
             driver: str = "oss", until: Optional[str] = None) -> list[TaskResult]:
    """Runs every task of ``spec`` (a PipelineSpec dict), or only task ``until`` and what it
    waits for; returns what each did.

    ``driver`` is the orchestrator whose executor input is sent (see module doc).
    ``parameters`` override the root's defaults. Each task's output goes to ``task.log`` in
    its folder; a failing task raises LaunchError with the end of that log.
    """
    if driver not in DRIVERS:
        raise LaunchError(f"unknown driver {driver!r}; expected one of {DRIVERS}")
    root = pipeline_root or spec.get("defaultPipelineRoot")
    if not root or root.startswith(("gs://", "s3://", "minio://")):
        raise LaunchError(f"run-local needs a local pipeline root (got {root!r})")
    values = {name: definition["defaultValue"] for name, definition in
              spec["root"].get("inputDefinitions", {}).get("parameters", {}).items()
              if "defaultValue" in definition}
    values.update(parameters or {})
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    run_dir = os.path.join(root, spec["pipelineInfo"]["name"], run_id)
    env = dict(env if env is not None else os.environ)
    executors = spec["deploymentSpec"]["executors"]
    counter = iter(range(1, 1 << 62))

    def new_id() -> str:
        return str(next(counter))

    outputs: dict[str, dict] = {}
    results: list[Any] = []
    tasks = spec["root"]["dag"]["tasks"]
    if until is not None:
        tasks = {n: t for n, t in tasks.items() if n in upstream_closure(tasks, until)}
    for name in topological_order(tasks):
        component = spec["components"][tasks[name]["componentRef"]["name"]]
        executor = executors[component["executorLabel"]]
        if "container" not in executor:
            kind = next(iter(executor), "unknown")
            raise LaunchError(f"task {name}: {kind} executors are not supported (open-source "
                              "Kubeflow Pipelines does not implement resolver executors)")
        container = executor["container"]
        executor_input = _executor_input(spec, name, run_dir, values, outputs, new_id, driver)
        command = _substitute(list(container.get("command", [])) +
                              list(container.get("args", [])), executor_input, name)
        program = shutil.which(command[0], path=env.get("PATH"))
        if program is None:
            raise LaunchError(f"task {name}: {command[0]!r} is not on PATH")
        task_dir = os.path.join(run_dir, name)
        os.makedirs(task_dir, exist_ok=True)
        log_path = os.path.join(task_dir, "task.log")
        progress(f"[{len(results) + 1}/{len(tasks)}] {name} ({container.get('image')})")
        start = time.monotonic()
        # A temp directory per task, gone when it ends, like a pod's /tmp: TFX's Beam
        # executors leave a 41 MB sdist of TFX there every time.
        with open(log_path, "wb") as log, \
                tempfile.TemporaryDirectory(prefix=f"recsys-task-{name}-") as tmp:
            task_env = {**env, "TMPDIR": tmp,
                        **{e["name"]: e["value"] for e in container.get("env", [])}}
            code = subprocess.run([program] + command[1:], stdout=log,
                                  stderr=subprocess.STDOUT, env=task_env, cwd=task_dir).returncode
        seconds = time.monotonic() - start
        planned = dict(executor_input["outputs"]["artifacts"])
        logs = planned.pop(EXECUTOR_LOGS, None)
        if logs is not None:  # what KFP's launcher uploads there: the step's own log
            os.makedirs(os.path.dirname(logs["artifacts"][0]["uri"]), exist_ok=True)
            shutil.copyfile(log_path, logs["artifacts"][0]["uri"])
        if code != 0:
            with open(log_path, "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            raise LaunchError(f"task {name} exited with {code} after {seconds:.0f}s; "
                              f"log {log_path}:\n{tail}")
        outputs[name] = _merge_output(planned, executor_input["outputs"]["outputFile"], new_id)
        results.append(TaskResult(name, seconds, outputs[name]["artifacts"], log_path))
    return results
