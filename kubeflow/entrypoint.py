"""The command every compiled step runs: normalizes what the orchestrator sends, then hands over
to TFX's ``kubeflow_v2_run_executor``.

TFX's executor entrypoint was written against Vertex AI, which sends each artifact with the
type the spec declares (``instanceSchema: "title: tfx.Examples ..."``). Open-source Kubeflow
Pipelines 2.x does not (see docs/kubeflow.md, "Troubleshooting"):

* input artifacts arrive typed by KFP's own artifact kinds (``system.Dataset`` for Examples,
  statistics, schemas alike; ``system.Model`` for Model and PushedModel), with an empty
  ``instanceSchema`` (``yaml.safe_load("")`` is ``None``), or with no type at all; TFX then
  fails to import ``system.Model`` or builds a generic artifact without ``split_names``;
* the launcher downloads GCS's zero-byte "directory marker" objects as files, which then block
  the directories a later step creates (kubeflow/pipelines#13476);
* the interpreter can crash in a C++ destructor at shutdown ("pure virtual method called")
  after the executor has written its output, failing a finished step;
* since KFP 2.14 the driver adds an ``executor-logs`` output (``schemaTitle:
  system.Artifact``) to every step it provisions, which no spec declares
  (``backend/src/v2/driver/driver.go``, ``provisionOutputs``, line 761 at 2.17.0) and which
  KFP's launcher fills and uploads itself (``backend/src/v2/component/launcher_v2.go``,
  ``uploadOutputArtifacts``, lines 789-830). TFX cannot import ``system.Artifact``, so such
  outputs (``KFP_OUTPUTS``) are withheld from TFX and left to the launcher, untouched.

So the compiler ships each step's declared artifact types with it (``--artifact_types``), and
this module, before TFX parses anything, gives every artifact its declared type (refusing one
whose type contradicts it), restores ``split_names`` from the artifact's ``Split-*`` folders
when the orchestrator dropped it, runs TFX's entrypoint in a child process (through
``run_executor.py``, which first makes a multi-worker Trainer's strategy), deletes directory
markers under the step's ``gs://`` outputs, and exits 0 once the executor output is written
even if the child's interpreter then crashes. It imports neither TensorFlow nor TFX.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
from typing import Any, Callable, Iterable, Optional, Sequence

import yaml

from recsys_pipeline.errors import RecsysError

# Bumped whenever the compiled command line changes in a way an older image or an older spec
# would misread; a spec and an image must agree on it.
SPEC_FORMAT = 2
MODULE = "recsys_pipeline.kubeflow.entrypoint"
TFX_EXECUTOR_MODULE = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
# What the step's child process runs: TFX's entrypoint, after the Trainers' strategy is made.
EXECUTOR_MODULE = "recsys_pipeline.kubeflow.run_executor"
INVOCATION_FLAG = "--json_serialized_invocation_args"

# Outputs KFP's driver adds to every step on its own account; KFP's launcher writes them.
KFP_OUTPUTS = frozenset({"executor-logs"})

# KFP's artifact kinds, and the TFX types each may stand for.
MODEL_TYPES = frozenset({"tfx.Model", "tfx.PushedModel"})
KFP_KINDS: dict[str, Callable[[str], bool]] = {
    "system.Artifact": lambda title: True,
    "system.Dataset": lambda title: title not in MODEL_TYPES,
    "system.Statistics": lambda title: title not in MODEL_TYPES,
    "system.Metrics": lambda title: title not in MODEL_TYPES,
    "system.Model": lambda title: title in MODEL_TYPES,
}


class EntrypointError(RecsysError):
    """What the orchestrator sent cannot be given to TFX."""


@dataclasses.dataclass(frozen=True)
class ArtifactTypes:
    """One compiled step's declared artifact types: {key: instanceSchema} per direction."""

    component: str
    inputs: dict[str, str]
    outputs: dict[str, str]

    @classmethod
    def of_component(cls, name: str, component: dict[str, Any]) -> "ArtifactTypes":
        """From a PipelineSpec component's input and output definitions."""
        def schemas(kind: str) -> dict[str, str]:
            artifacts = component.get(kind, {}).get("artifacts", {})
            return {key: spec["artifactType"]["instanceSchema"]
                    for key, spec in sorted(artifacts.items())}
        return cls(name, schemas("inputDefinitions"), schemas("outputDefinitions"))

    def to_json(self) -> str:
        return json.dumps({"inputs": self.inputs, "outputs": self.outputs}, sort_keys=True)

    @classmethod
    def from_json(cls, component: str, text: str) -> "ArtifactTypes":
        data = json.loads(text)
        return cls(component, dict(data["inputs"]), dict(data["outputs"]))


def schema_title(instance_schema: str) -> str:
    """The ``title`` of an instance schema ("" when there is none)."""
    data = yaml.safe_load(instance_schema or "") or {}
    return str(data.get("title") or "") if isinstance(data, dict) else ""


def declared_properties(instance_schema: str) -> set[str]:
    data = yaml.safe_load(instance_schema or "") or {}
    return set((data.get("properties") or {}) if isinstance(data, dict) else ())


def arrived_title(artifact: dict[str, Any]) -> str:
    """The type title an artifact arrived with ("" when untyped or the schema is empty)."""
    kind = artifact.get("type") or {}
    title = kind.get("schemaTitle", kind.get("schema_title"))
    if title is not None:
        return str(title)
    return schema_title(kind.get("instanceSchema", kind.get("instance_schema", "")))


def local_split_names(uri: str) -> Optional[list[str]]:
    """The splits of an artifact folder on a local or mounted file system, None elsewhere."""
    if "://" in uri or not os.path.isdir(uri):
        return None
    return sorted(name[len("Split-"):] for name in os.listdir(uri)
                  if name.startswith("Split-") and os.path.isdir(os.path.join(uri, name)))


@dataclasses.dataclass(frozen=True)
class Fix:
    """One change made to what the orchestrator sent (logged by the step)."""

    direction: str
    key: str
    change: str

    def __str__(self) -> str:
        return f"{self.direction} {self.key}: {self.change}"


def _place(artifact: dict[str, Any], schema: str, where: str) -> Optional[str]:
    """Gives ``artifact`` the declared ``schema``; says what changed, or refuses."""
    declared = schema_title(schema)
    title = arrived_title(artifact)
    if title == declared:
        if "instanceSchema" in (artifact.get("type") or {}):
            return None
        artifact["type"] = {"instanceSchema": schema}
        return None
    if title == "":
        before = "untyped" if not artifact.get("type") else "an empty instance schema"
    elif title in KFP_KINDS and KFP_KINDS[title](declared):
        before = title
    else:
        raise EntrypointError(
            f"{where} arrived as {title!r}, which cannot stand for the {declared!r} the "
            f"compiled spec declares there (expected {declared!r} or a KFP kind for it: "
            f"{', '.join(k for k, fits in KFP_KINDS.items() if fits(declared))}). Was the "
            "spec compiled from another version of the pipeline? Recompile and upload it "
            "(recsys kubeflow compile, recsys kubeflow upload).")
    artifact["type"] = {"instanceSchema": schema}
    return f"arrived {before}; typed {declared}"


def normalize(executor_input: dict[str, Any], types: ArtifactTypes,
              split_names: Callable[[str], Optional[list[str]]] = local_split_names
              ) -> tuple[dict[str, Any], list[Fix]]:
    """``executor_input`` with every artifact typed as the spec declares; and what changed.

    An artifact whose type declares ``split_names`` but arrived without it gets the splits
    found under its URI (``Split-<name>`` folders), which is where TFX's executors read them.
    """
    result = json.loads(json.dumps(executor_input))
    fixes: list[Fix] = []
    outputs = (result.get("outputs") or {}).get("artifacts") or {}
    for key in sorted(KFP_OUTPUTS & set(outputs) - set(types.outputs)):
        del outputs[key]
        fixes.append(Fix("output", key, "added by KFP's driver, written by its launcher: "
                                        "left to KFP, not given to TFX"))
    for direction, declared, section in (("input", types.inputs, "inputs"),
                                         ("output", types.outputs, "outputs")):
        for key, listing in (result.get(section, {}).get("artifacts") or {}).items():
            where = f"task {types.component}: {direction} artifact {key!r}"
            if key not in declared:
                raise EntrypointError(
                    f"{where} is not declared by the compiled spec (it declares "
                    f"{sorted(declared) or 'none'}); recompile and upload the pipeline")
            for artifact in listing.get("artifacts") or []:
                change = _place(artifact, declared[key], where)
                if change:
                    fixes.append(Fix(direction, key, change))
                metadata = artifact.setdefault("metadata", {})
                if "split_names" in declared_properties(declared[key]) and \
                        "split_names" not in metadata and direction == "input":
                    found = split_names(artifact.get("uri", ""))
                    if found:
                        metadata["split_names"] = json.dumps(found)
                        fixes.append(Fix(direction, key, f"split_names {found} read from "
                                                         "its Split-* folders"))
    return result, fixes


# --- Directory markers ----------------------------------------------------------------------

def remove_directory_markers(uris: Iterable[str], client=None) -> int:
    """Deletes zero-byte ``.../`` objects under the ``gs://`` URIs; returns how many.

    ``client`` is a ``google.cloud.storage.Client`` (made when needed).
    """
    removed = 0
    for uri in uris:
        if not uri.startswith("gs://"):
            continue
        if client is None:
            from google.cloud import storage

            client = storage.Client()
        bucket_name, _, prefix = uri[len("gs://"):].partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        bucket = client.bucket(bucket_name)
        for blob in list(client.list_blobs(bucket_name, prefix=prefix)):
            if blob.name.endswith("/") and not blob.size:
                bucket.blob(blob.name).delete()
                removed += 1
    return removed


# --- The command ----------------------------------------------------------------------------

def _split_invocation(args: list[str]) -> tuple[int, str]:
    """(index of the value, value) of the invocation flag in TFX's arguments."""
    for i, arg in enumerate(args):
        if arg == INVOCATION_FLAG and i + 1 < len(args):
            return i + 1, args[i + 1]
        if arg.startswith(INVOCATION_FLAG + "="):
            return i, arg[len(INVOCATION_FLAG) + 1:]
    raise EntrypointError(f"no {INVOCATION_FLAG} in the step's arguments")


def _stamp(path: str) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _output_written(path: str, before: Optional[tuple[int, int]]) -> bool:
    """The executor wrote its output file during this step (and it parses)."""
    after = _stamp(path)
    if after is None or after == before:
        return False
    try:
        with open(path) as f:
            json.load(f)
    except (OSError, ValueError):
        return False
    return True


def split_arguments(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(this entrypoint's arguments, TFX's arguments and the Beam arguments, in order)."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", allow_abbrev=False,
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--component", required=True, help="the compiled component's name")
    parser.add_argument("--spec_format", type=int, required=True,
                        help="the format the spec was compiled with")
    parser.add_argument("--artifact_types", required=True,
                        help="JSON: {inputs: {key: instanceSchema}, outputs: {...}}")
    return parser.parse_known_args(list(argv))


def run(argv: Sequence[str], executor_module: str = EXECUTOR_MODULE,
        storage_client=None, log: Callable[[str], None] = lambda line: print(
            line, file=sys.stderr, flush=True)) -> int:
    """Runs one step; returns its exit code (see module doc)."""
    args, rest = split_arguments(argv)
    if args.spec_format != SPEC_FORMAT:
        raise EntrypointError(
            f"task {args.component}: the pipeline was compiled in spec format "
            f"{args.spec_format}, and this image's recsys-pipeline runs format {SPEC_FORMAT}. "
            "Recompile it with the version in this image (recsys kubeflow compile) and upload "
            "the new file (recsys kubeflow upload).")
    types = ArtifactTypes.from_json(args.component, args.artifact_types)
    index, text = _split_invocation(rest)
    try:
        executor_input = json.loads(text)
    except ValueError as e:
        raise EntrypointError(f"task {args.component}: {INVOCATION_FLAG} is not JSON: {e}") \
            from None
    normalized, fixes = normalize(executor_input, types)
    for fix in fixes:
        log(f"recsys entrypoint: {args.component}: {fix}")
    value = json.dumps(normalized)
    rest[index] = value if rest[index] == text else f"{INVOCATION_FLAG}={value}"
    output_file = normalized.get("outputs", {}).get("outputFile", "")
    before = _stamp(output_file)

    child = subprocess.Popen([sys.executable, "-m", executor_module, *rest])
    forward = {sig: signal.signal(sig, lambda s, _f: child.send_signal(s))
               for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = child.wait()
    finally:
        for sig, handler in forward.items():
            signal.signal(sig, handler)
    if code != 0:
        if not _output_written(output_file, before):
            return code if code > 0 else 128 - code
        log(f"recsys entrypoint: {args.component}: the executor wrote its output "
            f"({output_file}), then its interpreter exited with {code} while shutting down; "
            "the step succeeded")
    outputs = [a.get("uri", "") for listing in
               (normalized.get("outputs", {}).get("artifacts") or {}).values()
               for a in listing.get("artifacts") or []]
    removed = remove_directory_markers(outputs, storage_client)
    if removed:
        log(f"recsys entrypoint: {args.component}: removed {removed} zero-byte directory "
            "marker(s) under the outputs (KFP's launcher would download them as files)")
    return 0


def main() -> None:
    try:
        sys.exit(run(sys.argv[1:]))
    except EntrypointError as e:
        print(f"recsys entrypoint: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
