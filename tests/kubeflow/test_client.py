"""`recsys kubeflow` upload, run, schedule(s), runs, status, wait, terminate and pipelines
delete against a local server implementing the KFP v2beta1 REST API (tests/kubeflow/fake_kfp.py),
which checks every request body against the API's schema; and the errors: unreachable host,
refused credentials, bad cron, unknown ids, a finished run, a pipeline still in use."""

import re
import socket

import pytest

from recsys_pipeline import cli
from recsys_pipeline.kubeflow import client as kfc
from recsys_pipeline.kubeflow import compile as kf_compile
from recsys_pipeline.pipeline.config import PipelineConfig
from tests.kubeflow.fake_kfp import FakeKFP, schema_errors


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    path = tmp_path_factory.mktemp("package") / "pipeline.yaml"
    kf_compile.compile_pipeline(PipelineConfig(), str(path))
    return str(path)


@pytest.fixture
def server():
    with FakeKFP() as fake:
        yield fake


ROOT = "gs://bucket/recsys-pipeline"


def _recsys(*args):
    """``recsys kubeflow ARGS``; a run or schedule with a usable pipeline root, unless the
    arguments name one."""
    root = ["--pipeline-root", ROOT] if args and args[0] in ("run", "schedule") \
        and "--pipeline-root" not in args else []
    return cli.main(["kubeflow", *args, *root])


def test_schema_check_catches_wrong_fields_and_types():
    assert schema_errors({"display_name": "x", "max_concurrency": "1",
                          "trigger": {"cron_schedule": {"cron": "0 0 3 * * *"}},
                          "mode": "ENABLE"}, "V2beta1RecurringRun") == []
    assert schema_errors({"maxConcurrencyy": 1}, "V2beta1RecurringRun") == [
        "body.maxConcurrencyy: not a field of V2beta1RecurringRun"]
    assert schema_errors({"mode": "ON"}, "V2beta1RecurringRun")[0].startswith("body.mode: 'ON'")
    assert schema_errors({"no_catchup": "yes"}, "V2beta1RecurringRun") == [
        "body.no_catchup: 'yes' is not bool"]


def test_upload_run_schedule_list_disable(server, package, capsys):
    host = ["--host", server.host]
    assert _recsys("upload", package, *host) == 0
    assert _recsys("upload", package, *host, "--version", "v2") == 0  # a second version
    (pipeline,) = server.pipelines.values()
    assert pipeline["display_name"] == "recsys-pipeline"
    versions = server.versions[pipeline["pipeline_id"]]
    assert [v["display_name"] for v in versions] == ["recsys-pipeline", "v2"]
    spec, platform = kf_compile.load_package(package)
    assert server.specs[versions[-1]["pipeline_version_id"]] == spec
    assert platform is not None  # the PVC mount went along (and parsed as a PlatformSpec)

    assert _recsys("run", *host, "--param", "retrieval_epochs=3",
                   "--param", "data_dir=gs://bucket/ml-100k") == 0
    (run,) = server.runs.values()
    assert run["pipeline_version_reference"] == {
        "pipeline_id": pipeline["pipeline_id"],
        "pipeline_version_id": versions[-1]["pipeline_version_id"]}  # newest version
    assert run["runtime_config"]["parameters"] == {"retrieval_epochs": 3,
                                                   "data_dir": "gs://bucket/ml-100k"}
    assert run["runtime_config"]["pipeline_root"] == server.roots[run["run_id"]] == ROOT
    (experiment,) = server.experiments.values()
    assert experiment["display_name"] == "recsys" and run["experiment_id"] == \
        experiment["experiment_id"]

    assert _recsys("schedule", *host, "--cron", "0 3 * * *", "--name", "nightly",
                   "--param", "max_rmse=0.95") == 0
    (recurring,) = server.recurring.values()
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert int(recurring["max_concurrency"]) == 1 and recurring["no_catchup"] is True
    assert recurring["mode"] == "ENABLE" and recurring["display_name"] == "nightly"
    assert recurring["runtime_config"]["parameters"] == {"max_rmse": 0.95}
    assert server.roots[recurring["recurring_run_id"]] == ROOT
    assert len(server.experiments) == 1  # the experiment was found, not created again

    capsys.readouterr()
    assert _recsys("schedules", *host) == 0
    listing = capsys.readouterr().out
    assert recurring["recurring_run_id"] in listing and "0 0 3 * * *" in listing
    assert _recsys("schedules", "disable", recurring["recurring_run_id"], *host) == 0
    assert server.recurring[recurring["recurring_run_id"]]["mode"] == "DISABLE"
    assert server.errors == []  # every body fitted the API schema


def test_the_pipeline_root_is_sent_and_one_this_pipeline_cannot_use_is_refused(
        server, package, capsys, tmp_path):
    host = ["--host", server.host]
    assert _recsys("upload", package, *host) == 0
    # The configured root goes in the runtime config: KFP ignores the spec's own.
    config = tmp_path / "recsys.toml"
    config.write_text('[kubeflow]\npipeline_root = "gs://team/recsys"\n')
    assert cli.main(["kubeflow", "run", *host, "--config", str(config)]) == 0
    (run,) = server.runs.values()
    assert server.roots[run["run_id"]] == "gs://team/recsys"
    # The placeholder and roots the TFX steps cannot write are refused before the call.
    assert cli.main(["kubeflow", "run", *host]) == 2
    assert "kubeflow.pipeline_root is still the placeholder 'gs://YOUR-BUCKET/" in \
        capsys.readouterr().err
    for root in ("minio://mlpipeline/v2/artifacts", "s3://bucket/root", "/mnt/volume/root"):
        assert _recsys("schedule", *host, "--cron", "0 3 * * *", "--pipeline-root", root) == 2
        assert f"pipeline root '{root}' (--pipeline-root) cannot hold this pipeline's " \
            "artifacts" in capsys.readouterr().err
    assert server.recurring == {} and len(server.runs) == 1
    # Without a root KFP's driver falls back on the cluster's minio:// default, which the
    # server (standing for the run that would fail) refuses in KFP's error shape.
    connection = kfc.Connection(server.host)
    with pytest.raises(kfc.KubeflowError, match="HTTP 400.*pipeline root "
                       "minio://mlpipeline/v2/artifacts: the pipeline's TFX steps cannot"):
        kfc.Pipelines(connection).run("recsys-pipeline", "recsys")


def test_unknown_parameter_is_refused_before_the_call(server, package, capsys):
    assert _recsys("upload", package, "--host", server.host) == 0
    assert _recsys("run", "--host", server.host, "--param", "epochs=3") == 2
    err = capsys.readouterr().err
    assert "unknown run-time parameter 'epochs'" in err and "retrieval_epochs" in err
    assert server.runs == {}


def test_run_before_upload_says_what_to_do(server, capsys):
    assert _recsys("run", "--host", server.host) == 2
    assert "upload it first" in capsys.readouterr().err


def test_unreachable_host(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    assert _recsys("schedules", "--host", f"http://127.0.0.1:{port}") == 2
    err = capsys.readouterr().err
    assert f"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}" in err
    assert "port-forward" in err


def test_missing_host(capsys, monkeypatch):
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert _recsys("schedules") == 2
    assert "no Kubeflow Pipelines host" in capsys.readouterr().err


@pytest.mark.parametrize("token", [None, "wrong"])
def test_auth_failure(package, capsys, token):
    with FakeKFP(token="s3cret") as fake:
        args = ["--host", fake.host] + (["--token", token] if token else [])
        assert _recsys("upload", package, *args) == 2
        err = capsys.readouterr().err
        assert "authentication to Kubeflow Pipelines" in err and "HTTP 401" in err
        assert ("refused" if token else "no token was given") in err
        assert fake.pipelines == {}


def test_token_from_the_environment_is_sent(package, monkeypatch):
    with FakeKFP(token="s3cret") as fake:
        monkeypatch.setenv("KFP_TOKEN", "s3cret")
        monkeypatch.setenv("KFP_HOST", fake.host)
        assert _recsys("upload", package) == 0
        assert fake.requests and all(
            {k.lower(): v for k, v in r["headers"].items()}.get("authorization") == "Bearer s3cret"
            for r in fake.requests)


@pytest.mark.parametrize("cron, message", [
    ("0 3 * *", "4 fields"),
    ("0 0 25 * * *", "hour 25 is outside 0-23"),
    ("0 61 * * * *", "minute 61 is outside 0-59"),
    ("0 0 3 * * MON-FRX", "day-of-week field has 'MON-FRX'"),
    ("0 0 3 ? * * *", "7 fields"),
    ("0 0 5-3 * * *", "empty range '5-3'"),
    ("0 */0 * * * *", "step '0'"),
])
def test_bad_cron_is_refused_before_any_call(server, capsys, cron, message):
    assert _recsys("schedule", "--host", server.host, "--cron", cron) == 2
    err = capsys.readouterr().err
    assert f"invalid cron expression {cron!r}" in err and message in err, err
    assert "second minute hour day-of-month month day-of-week" in err
    assert server.recurring == {} and not [r for r in server.requests if r["method"] == "POST"]


@pytest.mark.parametrize("cron, normalized", [
    ("0 3 * * *", "0 0 3 * * *"), ("*/15 * * * * *", "*/15 * * * * *"),
    ("0 30 2 * * MON-FRI", "0 30 2 * * MON-FRI"), ("@daily", "@daily"),
    ("0 0 0 1,15 JAN-JUN ?", "0 0 0 1,15 JAN-JUN ?"), ("@every 6h", "@every 6h")])
def test_good_cron(cron, normalized):
    assert kfc.normalize_cron(cron) == normalized


# --- Following and managing what runs ---------------------------------------------------------

def _started(server, package, capsys, n=1):
    host = ["--host", server.host]
    assert _recsys("upload", package, *host) == 0
    for _ in range(n):
        assert _recsys("run", *host) == 0
    capsys.readouterr()
    return host, list(server.runs)


def test_runs_status_wait_terminate(server, package, capsys):
    host, (first, second) = _started(server, package, capsys, n=2)
    server.set_run(first, "FAILED", tasks=[
        ("InteractionsExampleGen", "SUCCEEDED", ""),
        ("RetrievalTrainer", "FAILED", "task RetrievalTrainer exited with 1: DataError")],
        error="1 task failed")
    server.set_run(second, "RUNNING", tasks=[("InteractionsExampleGen", "RUNNING", "")])

    assert _recsys("runs", *host) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listing[1:]] == [[second, "RUNNING"],
                                                         [first, "FAILED"]]
    assert _recsys("runs", *host, "--status", "failed") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [first]
    assert _recsys("runs", *host, "--status", "BROKEN") == 2
    assert "unknown run state 'BROKEN'" in capsys.readouterr().err
    assert _recsys("runs", *host, "--experiment", "recsys") == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert _recsys("runs", *host, "--experiment", "nope") == 2  # listed, not created
    assert "no experiment named 'nope'" in capsys.readouterr().err
    assert len(server.experiments) == 1

    assert _recsys("status", first, *host) == 0
    out = capsys.readouterr().out
    assert f"run {first}" in out and "FAILED" in out and "error: 1 task failed" in out
    assert re.search(r"^  RetrievalTrainer +FAILED$", out, flags=re.M), out
    assert "error: task RetrievalTrainer exited with 1: DataError" in out

    assert _recsys("wait", first, *host) == 1  # failed: exit 1
    assert _recsys("wait", second, *host, "--timeout", "0") == 3  # still running: exit 3
    err = capsys.readouterr().err
    assert f"run {second} has not finished after 0s (still RUNNING)" in err
    assert f"recsys kubeflow terminate {second}" in err

    server.set_run(second, "SKIPPED")
    assert _recsys("wait", second, *host) == 4  # nothing ran: not a success
    server.set_run(second, "RUNNING")

    assert _recsys("terminate", second, *host) == 0
    assert server.runs[second]["state"] == "CANCELING"
    assert _recsys("terminate", first, *host) == 2
    assert f"run {first} has already finished (FAILED" in capsys.readouterr().err
    for command in ("status", "wait", "terminate"):
        assert _recsys(command, "run-404", *host) == 2
        assert "no run 'run-404'" in capsys.readouterr().err
    assert server.errors == []


def test_wait_follows_the_run_until_it_ends(server, package, capsys):
    _, (run_id,) = _started(server, package, capsys)
    kfp = kfc.Pipelines(kfc.Connection(server.host))
    states = iter(["RUNNING", "RUNNING", "SUCCEEDED"])
    seen = []
    final = kfp.wait(run_id, timeout=60, poll=5, progress=seen.append,
                     sleep=lambda _: server.set_run(run_id, next(states)))
    assert final.state == "SUCCEEDED" and final.finished
    assert seen == [f"run {run_id}: PENDING", f"run {run_id}: RUNNING",
                    f"run {run_id}: SUCCEEDED"]
    assert _recsys("wait", run_id, "--host", server.host) == 0


def test_schedules_enable_disable_delete(server, package, capsys):
    host = ["--host", server.host]
    assert _recsys("upload", package, *host) == 0
    assert _recsys("schedule", *host, "--cron", "0 3 * * *") == 0
    (recurring_id,) = server.recurring
    assert _recsys("schedules", "disable", recurring_id, *host) == 0
    assert server.recurring[recurring_id]["mode"] == "DISABLE"
    assert _recsys("schedules", *host, "enable", recurring_id) == 0  # options either side
    assert server.recurring[recurring_id]["mode"] == "ENABLE"
    capsys.readouterr()
    assert _recsys("schedules", *host) == 0
    assert "ENABLE" in capsys.readouterr().out
    assert _recsys("schedules", "delete", recurring_id, *host) == 0
    assert server.recurring == {}
    for action in ("enable", "disable", "delete"):
        assert _recsys("schedules", action, recurring_id, *host) == 2
        assert f"no recurring run {recurring_id!r}" in capsys.readouterr().err
    assert server.errors == []


def test_deleting_a_pipeline_in_use_is_refused(server, package, capsys):
    host = ["--host", server.host]
    assert _recsys("upload", package, *host) == 0
    assert _recsys("upload", package, *host, "--version", "v2") == 0
    assert _recsys("run", *host) == 0
    assert _recsys("schedule", *host, "--cron", "0 3 * * *", "--name", "nightly") == 0
    (run_id,) = server.runs
    (recurring_id,) = server.recurring
    capsys.readouterr()

    assert _recsys("pipelines", "delete", "recsys-pipeline", *host) == 2
    err = capsys.readouterr().err
    assert "pipeline 'recsys-pipeline' is still in use; nothing was deleted" in err
    assert f"recurring run nightly ({recurring_id}" in err
    assert f"recsys kubeflow schedules delete {recurring_id}" in err
    assert f"({run_id}, PENDING): wait for it or recsys kubeflow terminate {run_id}" in err
    assert len(server.versions[next(iter(server.pipelines))]) == 2  # nothing deleted

    # The first version is not what the run and the schedule use (they took the newest).
    assert _recsys("pipelines", "delete", "recsys-pipeline", "--version", "recsys-pipeline",
                   *host) == 0
    assert _recsys("pipelines", "delete", "recsys-pipeline", "--version", "v9", *host) == 2
    assert "has no version 'v9'" in capsys.readouterr().err

    assert _recsys("schedules", "delete", recurring_id, *host) == 0
    server.set_run(run_id, "SUCCEEDED")  # a finished run keeps its own copy of the spec
    assert _recsys("pipelines", "delete", "recsys-pipeline", *host) == 0
    assert server.pipelines == {} and server.specs == {}
    assert _recsys("pipelines", "delete", "recsys-pipeline", *host) == 2
    assert "no pipeline named 'recsys-pipeline'" in capsys.readouterr().err
    assert server.errors == []
