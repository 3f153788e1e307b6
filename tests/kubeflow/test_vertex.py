"""`recsys kubeflow run --target vertex`: the compiled PipelineJob goes to Vertex AI through
google-cloud-aiplatform, against a local endpoint (tests/kubeflow/fake_vertex.py) that parses
the request strictly; and what stops a submit before it is sent."""

import builtins
import json

import pytest
from google.auth.credentials import AnonymousCredentials

from recsys_pipeline import cli
from recsys_pipeline.errors import ConfigError
from recsys_pipeline.kubeflow import compile as kf_compile
from recsys_pipeline.kubeflow import vertex
from recsys_pipeline.kubeflow.client import KubeflowError
from recsys_pipeline.pipeline.config import PipelineConfig
from tests.kubeflow.fake_vertex import FakeVertex


@pytest.fixture(scope="module")
def job_path(tmp_path_factory):
    config = PipelineConfig()
    config.kubeflow.target = "vertex"
    config.kubeflow.pipeline_root = "gs://bucket/recsys"
    path = tmp_path_factory.mktemp("vertex") / "pipeline.json"
    kf_compile.compile_pipeline(config, str(path))
    return str(path)


@pytest.fixture
def fake(monkeypatch):
    with FakeVertex() as server:
        # google-cloud-storage's documented emulator switch; the bucket lookup goes here.
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.host)
        yield server


def test_submit_sends_the_compiled_job_with_parameters(fake, job_path):
    target = vertex.VertexTarget("my-project", "europe-west4", api_endpoint=fake.host)
    name = vertex.submit(job_path, target, {"retrieval_epochs": 3},
                         service_account="runner@my-project.iam.gserviceaccount.com",
                         display_name="nightly", credentials=AnonymousCredentials())
    assert name.startswith("projects/my-project/locations/europe-west4/pipelineJobs/")
    sent = fake.jobs[name]
    compiled = json.loads(open(job_path).read())
    assert sent["displayName"] == "nightly"
    assert sent["serviceAccount"] == "runner@my-project.iam.gserviceaccount.com"
    assert sent["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/recsys"
    assert sent["runtimeConfig"]["parameterValues"]["retrieval_epochs"] == 3
    assert sent["pipelineSpec"]["root"] == compiled["pipelineSpec"]["root"]
    # The pipeline root's bucket did not exist: created, and the run's account may use it.
    bindings = {b["role"]: b["members"] for b in fake.buckets["bucket"]["bindings"]}
    assert bindings["roles/storage.objectCreator"] == [
        "serviceAccount:runner@my-project.iam.gserviceaccount.com"]
    assert fake.errors == []


def test_the_run_root_overrides_the_jobs_and_an_unusable_one_is_refused(fake, job_path):
    target = vertex.VertexTarget("my-project", "europe-west4", api_endpoint=fake.host)
    name = vertex.submit(job_path, target, {}, pipeline_root="gs://bucket/other",
                         credentials=AnonymousCredentials())
    assert fake.jobs[name]["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/other"
    with pytest.raises(KubeflowError, match="pipeline root 'minio://x' \\(--pipeline-root\\) "
                       "cannot hold this pipeline's artifacts"):
        vertex.submit(job_path, target, {}, pipeline_root="minio://x",
                      credentials=AnonymousCredentials())
    assert len(fake.jobs) == 1


def test_cli_needs_project_and_region(job_path, capsys):
    assert cli.main(["kubeflow", "run", "--target", "vertex", "--package", job_path]) == 2
    assert "--target vertex needs --project PROJECT and --region REGION" in \
        capsys.readouterr().err
    assert cli.main(["kubeflow", "run", "--target", "vertex", "--package", job_path,
                     "--project", "p", "--region", "Europe"]) == 2
    assert "'Europe' is not a Google Cloud region" in capsys.readouterr().err


def test_cli_without_credentials_says_how_to_get_them(fake, job_path, capsys, monkeypatch,
                                                     tmp_path):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login here
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # nor a metadata server to ask
    assert cli.main(["kubeflow", "run", "--target", "vertex", "--package", job_path,
                     "--project", "p", "--region", "europe-west4",
                     "--api-endpoint", fake.host]) == 2
    assert "no Google Cloud credentials for Vertex AI: run gcloud auth application-default " \
        "login" in capsys.readouterr().err
    assert fake.jobs == {}


def test_a_kfp_spec_is_not_a_vertex_job(tmp_path):
    path = tmp_path / "pipeline.yaml"
    kf_compile.compile_pipeline(PipelineConfig(), str(path))
    with pytest.raises(ConfigError, match="is not a Vertex PipelineJob"):
        vertex.load_job(str(path))
    with pytest.raises(ConfigError, match="does not exist: compile it"):
        vertex.load_job(str(tmp_path / "missing.json"))


def test_without_the_library_the_message_says_what_to_install(job_path, monkeypatch):
    real_import = builtins.__import__

    def no_aiplatform(name, *args, **kwargs):
        if name.startswith("google.cloud") and "aiplatform" in (
                name + str(args[2] if len(args) > 2 else "")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_aiplatform)
    with pytest.raises(KubeflowError, match="needs google-cloud-aiplatform: pip install"):
        vertex.submit(job_path, vertex.VertexTarget("p", "europe-west4"), {})
