"""The step entrypoint: each input form open-source KFP sends (system.* kinds with and without
split_names, a PushedModel as system.Model, an empty instance schema, no type at all) becomes
the TFX artifact the spec declares -- checked with TFX's own parser, which fails on every one
of them as sent -- and what cannot be placed is refused by task, artifact and title. Then the
command itself: a shutdown crash after the output is written, directory markers, formats."""

import json
import signal
import sys
import textwrap

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as tfx_utils

from recsys_pipeline.kubeflow import entrypoint as ep

EXAMPLES = ("title: tfx.Examples\ntype: object\nproperties:\n  span:\n    type: integer\n"
            "  version:\n    type: integer\n  split_names:\n    type: string\n")
PUSHED = "title: tfx.PushedModel\ntype: object\n"
MODEL = "title: tfx.Model\ntype: object\n"
TYPES = ep.ArtifactTypes("Trainer", inputs={"examples": EXAMPLES, "model": MODEL,
                                            "pushed_model": PUSHED},
                         outputs={"examples": EXAMPLES})


def _input(**artifacts):
    return {"inputs": {"artifacts": {k: {"artifacts": [v]} for k, v in artifacts.items()}},
            "outputs": {"artifacts": {}, "outputFile": "/nonexistent/out.json"}}


def _tfx_artifacts(executor_input):
    """What TFX's entrypoint builds from an executor input (its own parser)."""
    message = pipeline_spec_pb2.ExecutorInput()
    json_format.ParseDict(executor_input, message)
    return tfx_utils.parse_raw_artifact_dict(message.inputs.artifacts, {})


def _examples(tmp_path, type_, metadata):
    uri = tmp_path / "examples"
    for split in ("train", "eval"):
        (uri / f"Split-{split}").mkdir(parents=True, exist_ok=True)
    artifact = {"name": "17", "uri": str(uri), "metadata": metadata}
    if type_ is not None:
        artifact["type"] = type_
    return artifact


FORMS = {
    "system.Dataset with split_names": ({"schemaTitle": "system.Dataset"},
                                        {"split_names": '["train", "eval"]', "span": 3.0}),
    "system.Dataset without split_names": ({"schemaTitle": "system.Dataset"}, {"span": 3.0}),
    "empty instance schema": ({"instanceSchema": ""}, {"span": 3.0}),
    "untyped": (None, {"span": 3.0}),
}


@pytest.mark.parametrize("form", FORMS)
def test_each_oss_input_form_becomes_the_declared_tfx_artifact(tmp_path, form):
    type_, metadata = FORMS[form]
    sent = _input(examples=_examples(tmp_path, type_, metadata))
    with pytest.raises((ImportError, AttributeError, UnboundLocalError, ValueError)):
        _tfx_artifacts(sent)  # as sent, TFX cannot take it

    normalized, fixes = ep.normalize(sent, TYPES)
    (examples,) = _tfx_artifacts(normalized)["examples"]
    assert type(examples).__name__ == "Examples"
    assert sorted(json.loads(examples.split_names)) == ["eval", "train"]
    assert examples.span == 3 and isinstance(examples.span, int)
    assert examples.uri == str(tmp_path / "examples")
    assert fixes and fixes[0].key == "examples" and "typed tfx.Examples" in fixes[0].change
    if "split_names" not in metadata:
        assert any("read from its Split-* folders" in f.change for f in fixes)
    assert sent["inputs"]["artifacts"]["examples"]["artifacts"][0].get("type") == type_


def test_system_model_with_pushed_is_the_declared_pushed_model():
    sent = _input(pushed_model={"name": "9", "uri": "/serving/ranking/3",
                                "type": {"schemaTitle": "system.Model"},
                                "metadata": {"pushed": 1.0, "pushed_destination": "/x/3"}},
                  model={"name": "8", "uri": "/models/8", "type": {"schemaTitle": "system.Model"},
                         "metadata": {}})
    normalized, _ = ep.normalize(sent, TYPES)
    built = _tfx_artifacts(normalized)
    (pushed,) = built["pushed_model"]
    assert type(pushed).__name__ == "PushedModel"
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == "/x/3"
    assert type(built["model"][0]).__name__ == "Model"


def test_what_vertex_sends_is_left_as_it_is(tmp_path):
    artifact = _examples(tmp_path, {"instanceSchema": EXAMPLES},
                         {"split_names": '["train"]', "span": 0})
    sent = _input(examples=artifact)
    normalized, fixes = ep.normalize(sent, TYPES)
    assert fixes == [] and normalized == sent


@pytest.mark.parametrize("key, type_, expected", [
    ("examples", {"schemaTitle": "system.Model"}, "'system.Model', which cannot stand for the "
                                                  "'tfx.Examples'"),
    ("model", {"schemaTitle": "system.Dataset"}, "'system.Dataset', which cannot stand for the "
                                                 "'tfx.Model'"),
    ("examples", {"schemaTitle": "google.VertexDataset"}, "'google.VertexDataset'"),
    ("examples", {"instanceSchema": "title: tfx.Schema\n"}, "'tfx.Schema'"),
    ("statistics", {"schemaTitle": "system.Dataset"}, "is not declared by the compiled spec"),
])
def test_a_type_that_cannot_be_placed_names_task_artifact_and_title(key, type_, expected):
    sent = _input(**{key: {"name": "1", "uri": "/a", "type": type_, "metadata": {}}})
    with pytest.raises(ep.EntrypointError) as error:
        ep.normalize(sent, TYPES)
    message = str(error.value)
    assert f"task Trainer: input artifact {key!r}" in message and expected in message, message


# What KFP 2.14+'s driver adds to every step (backend/src/v2/driver/driver.go, line 761 at 2.17.0).
EXECUTOR_LOGS = {"artifacts": [{"name": "executor-logs", "uri": "/r/p/run/T/u/executor-logs-0",
                                "type": {"schemaTitle": "system.Artifact"}}]}


def test_the_executor_logs_kfp_adds_are_left_to_kfp_and_kept_from_tfx():
    sent = {"inputs": {}, "outputs": {"artifacts": {
        "examples": {"artifacts": [{"name": "examples", "uri": "/o",
                                    "type": {"instanceSchema": EXAMPLES}}]},
        "executor-logs": EXECUTOR_LOGS}, "outputFile": "/o/out.json"}}
    message = pipeline_spec_pb2.ExecutorInput()
    json_format.ParseDict(sent, message)
    with pytest.raises(ImportError):  # TFX, given it, tries to import "system.Artifact"
        tfx_utils.parse_raw_artifact_dict(message.outputs.artifacts, {})
    normalized, fixes = ep.normalize(sent, TYPES)
    assert set(normalized["outputs"]["artifacts"]) == {"examples"}
    assert sent["outputs"]["artifacts"]["executor-logs"] == EXECUTOR_LOGS  # untouched
    assert [str(f) for f in fixes] == ["output executor-logs: added by KFP's driver, written "
                                       "by its launcher: left to KFP, not given to TFX"]


@pytest.mark.parametrize("section", ["inputs", "outputs"])
def test_an_undeclared_artifact_is_still_refused_by_name(section):
    other = "inputs" if section == "outputs" else "outputs"
    key = "executor-logs" if section == "inputs" else "statistics"
    sent = {section: {"artifacts": {key: EXECUTOR_LOGS}}, other: {"artifacts": {}}}
    with pytest.raises(ep.EntrypointError, match=rf"task Trainer: {section[:-1]} artifact "
                       rf"'{key}' is not declared by the compiled spec"):
        ep.normalize(sent, TYPES)


def test_outputs_are_typed_too():
    sent = {"inputs": {}, "outputs": {"artifacts": {"examples": {"artifacts": [
        {"name": "examples", "uri": "/o", "type": {"schemaTitle": "system.Dataset"}}]}},
        "outputFile": "/o/out.json"}}
    normalized, fixes = ep.normalize(sent, TYPES)
    message = pipeline_spec_pb2.ExecutorInput()
    json_format.ParseDict(normalized, message)
    (out,) = tfx_utils.parse_raw_artifact_dict(message.outputs.artifacts, {})["examples"]
    assert type(out).__name__ == "Examples" and fixes[0].direction == "output"


# --- The command ----------------------------------------------------------------------------

FAKE_EXECUTOR = textwrap.dedent("""
    import json, os, sys
    args = sys.argv[1:]
    invocation = json.loads(args[args.index("--json_serialized_invocation_args") + 1])
    mode = os.environ["FAKE_MODE"]
    with open(os.environ["FAKE_SEEN"], "w") as f:
        json.dump(invocation, f)
    if mode in ("write-then-crash", "write"):
        with open(invocation["outputs"]["outputFile"], "w") as f:
            json.dump({"artifacts": {}}, f)
    if mode == "fail":
        sys.exit(3)
    if mode in ("write-then-crash", "crash"):
        os.abort()
""")


def _argv(tmp_path, fmt=ep.SPEC_FORMAT, outputs=None):
    executor_input = _input(examples=_examples(tmp_path, {"schemaTitle": "system.Dataset"}, {}))
    executor_input["outputs"] = {"artifacts": outputs or {},
                                 "outputFile": str(tmp_path / "executor_output.json")}
    return ["--component", "Trainer", "--spec_format", str(fmt),
            "--artifact_types", TYPES.to_json(), "--executor_class_path", "x.Y",
            "--json_serialized_invocation_args", json.dumps(executor_input), "--runner=X"]


@pytest.fixture
def fake_executor(tmp_path, monkeypatch):
    (tmp_path / "fake_executor.py").write_text(FAKE_EXECUTOR)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("FAKE_SEEN", str(tmp_path / "seen.json"))

    def run(mode, argv=None):
        monkeypatch.setenv("FAKE_MODE", mode)
        lines = []
        code = ep.run(argv or _argv(tmp_path), executor_module="fake_executor",
                      log=lines.append)
        return code, lines
    return run


def test_the_executor_gets_the_normalized_input_and_the_other_flags(fake_executor, tmp_path):
    code, lines = fake_executor("write")
    assert code == 0
    seen = json.loads((tmp_path / "seen.json").read_text())
    (examples,) = seen["inputs"]["artifacts"]["examples"]["artifacts"]
    assert examples["type"] == {"instanceSchema": EXAMPLES}
    assert any("system.Dataset; typed tfx.Examples" in line for line in lines)


def test_a_crash_at_shutdown_after_the_output_is_written_is_a_success(fake_executor):
    code, lines = fake_executor("write-then-crash")
    assert code == 0
    assert any(f"exited with {-signal.SIGABRT} while shutting down" in line for line in lines)


@pytest.mark.parametrize("mode, code", [("fail", 3), ("crash", 128 + signal.SIGABRT)])
def test_a_failure_before_the_output_is_written_fails_the_step(fake_executor, mode, code):
    assert fake_executor(mode)[0] == code


def test_a_stale_output_file_does_not_make_a_crash_a_success(fake_executor, tmp_path):
    (tmp_path / "executor_output.json").write_text('{"parameterValues": {}}')  # a driver's
    assert fake_executor("crash")[0] == 128 + signal.SIGABRT


def test_a_spec_of_another_format_is_refused(tmp_path):
    with pytest.raises(ep.EntrypointError, match=r"compiled in spec format 1, and this image's "
                       r"recsys-pipeline runs format \d+\. Recompile"):
        ep.run(_argv(tmp_path, fmt=1), executor_module="never_run")


class _Blob:
    def __init__(self, name, size, deleted):
        self.name, self.size, self._deleted = name, size, deleted

    def delete(self):
        self._deleted.append(self.name)


class FakeStorage:
    """The part of google.cloud.storage.Client the marker cleanup uses."""

    def __init__(self, objects):
        self.objects, self.deleted, self.listed = objects, [], []

    def list_blobs(self, bucket, prefix=""):
        self.listed.append((bucket, prefix))
        return [_Blob(n, s, self.deleted) for n, s in self.objects.items()
                if n.startswith(prefix)]

    def bucket(self, name):
        storage = self

        class Bucket:
            def blob(self, blob_name):
                return _Blob(blob_name, storage.objects[blob_name], storage.deleted)
        return Bucket()


def test_directory_markers_under_gs_outputs_are_removed():
    storage = FakeStorage({"root/Trainer/model/": 0, "root/Trainer/model/Format-Serving/": 0,
                           "root/Trainer/model/Format-Serving/saved_model.pb": 120,
                           "root/Trainer/model/empty.txt": 0,
                           "root/Trainer/model_run/": 0})
    assert ep.remove_directory_markers(["gs://b/root/Trainer/model", "/local/path"],
                                       storage) == 2
    assert storage.deleted == ["root/Trainer/model/", "root/Trainer/model/Format-Serving/"]
    assert storage.listed == [("b", "root/Trainer/model/")]


def test_the_command_removes_markers_after_a_successful_step(fake_executor, tmp_path,
                                                              monkeypatch):
    storage = FakeStorage({"r/T/examples/Split-train/": 0, "r/T/examples/Split-train/a.gz": 9})
    monkeypatch.setenv("FAKE_MODE", "write")
    outputs = {"examples": {"artifacts": [{"name": "examples", "uri": "gs://b/r/T/examples",
                                           "type": {"instanceSchema": EXAMPLES}}]}}
    lines = []
    assert ep.run(_argv(tmp_path, outputs=outputs), executor_module="fake_executor",
                  storage_client=storage, log=lines.append) == 0
    assert storage.deleted == ["r/T/examples/Split-train/"]
    assert any("removed 1 zero-byte directory marker" in line for line in lines)


def test_tfx_runs_an_executor_from_what_oss_kfp_sends(tmp_path):
    """The real TFX entrypoint, in its own process, behind ours: the input arrives as
    ``system.Dataset`` without split_names, the outputs with KFP's ``executor-logs``, and the
    executor sees tfx.Examples with its splits."""
    out = tmp_path / "out"
    outputs = {"examples": {"artifacts": [{"name": "examples", "uri": str(out),
                                           "type": {"instanceSchema": EXAMPLES}}]},
               "executor-logs": EXECUTOR_LOGS}
    argv = _argv(tmp_path, outputs=outputs)
    argv[argv.index("x.Y")] = "tests.kubeflow.recording_executor.RecordingExecutor"
    assert ep.run(argv, log=lambda _: None) == 0
    seen = json.loads((out / "seen.json").read_text())
    assert seen["examples"][0]["class"] == "Examples"
    assert sorted(json.loads(seen["examples"][0]["split_names"])) == ["eval", "train"]
    written = json.loads((tmp_path / "executor_output.json").read_text())
    assert written["artifacts"]["examples"]["artifacts"][0]["uri"] == str(out)
    assert "executor-logs" not in written["artifacts"]  # KFP's launcher records it itself


def test_main_reports_an_entrypoint_error_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["entrypoint", *_argv(tmp_path, fmt=99)])
    with pytest.raises(SystemExit) as exit_:
        ep.main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("recsys entrypoint: task Trainer: the pipeline "
                                              "was compiled in spec format 99")


def test_artifact_types_come_from_the_component_definitions():
    component = {"inputDefinitions": {"artifacts": {"examples": {"artifactType": {
        "instanceSchema": EXAMPLES}}}, "parameters": {"x": {"parameterType": "STRING"}}},
        "outputDefinitions": {"artifacts": {"model": {"artifactType": {
            "instanceSchema": MODEL}}}}}
    types = ep.ArtifactTypes.of_component("Trainer", component)
    assert types == ep.ArtifactTypes("Trainer", {"examples": EXAMPLES}, {"model": MODEL})
    assert ep.ArtifactTypes.from_json("Trainer", types.to_json()) == types
