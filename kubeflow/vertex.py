"""Starts one run of the compiled PipelineJob on Vertex AI Pipelines.

``recsys kubeflow run --target vertex`` submits the file ``recsys kubeflow compile --target
vertex`` wrote with ``google-cloud-aiplatform``'s ``PipelineJob`` (Vertex has no upload step:
each run carries its spec). The library is optional; without it, or without Google Cloud
credentials, the command says what to install or run instead of failing on an import.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from typing import Any, Mapping, Optional

from recsys_pipeline.errors import ConfigError
from recsys_pipeline.kubeflow.client import KubeflowError, run_pipeline_root

INSTALL = "pip install google-cloud-aiplatform (or uv pip install it into .venv)"


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    """Where to submit: a Google Cloud project and region (and an endpoint override)."""

    project: str
    region: str
    api_endpoint: Optional[str] = None

    def __post_init__(self):
        if not self.project or not self.region:
            raise ConfigError("--target vertex needs --project PROJECT and --region REGION "
                              "(e.g. --region europe-west4)")
        if not re.fullmatch(r"[a-z]+-[a-z]+\d+", self.region):
            raise ConfigError(f"--region {self.region!r} is not a Google Cloud region "
                              "(e.g. us-central1, europe-west4)")


def load_job(path: str) -> dict[str, Any]:
    """The PipelineJob JSON from ``path``; refuses a KFP PipelineSpec or an outdated spec."""
    from recsys_pipeline.kubeflow.compile import check_spec_format

    try:
        with open(path) as f:
            job = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist: compile it with recsys kubeflow compile "
                          f"--target vertex --output {path}") from None
    except ValueError:
        job = None
    if not isinstance(job, dict) or "pipelineSpec" not in job:
        raise ConfigError(f"{path} is not a Vertex PipelineJob (a KFP PipelineSpec?): compile "
                          f"it with recsys kubeflow compile --target vertex --output {path}")
    check_spec_format(job["pipelineSpec"], path)
    return job


def submit(path: str, target: VertexTarget, params: Mapping[str, Any],
           pipeline_root: Optional[str] = None, service_account: str = "",
           display_name: Optional[str] = None, credentials=None) -> str:
    """Submits one run of the PipelineJob at ``path``; returns its resource name."""
    job = load_job(path)
    root = pipeline_root or job.get("runtimeConfig", {}).get("gcsOutputDirectory")
    if root:
        run_pipeline_root(root, "--pipeline-root" if pipeline_root else
                          f"{path}: runtimeConfig.gcsOutputDirectory")
    try:
        from google.api_core import exceptions as api_exceptions
        from google.auth import exceptions as auth_exceptions
        from google.cloud import aiplatform
    except ImportError:
        raise KubeflowError(f"submitting to Vertex AI needs google-cloud-aiplatform: "
                            f"{INSTALL}") from None
    name = display_name or (f"{job['pipelineSpec']['pipelineInfo']['name']}-"
                            f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}")
    try:
        if credentials is None:
            import google.auth

            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"])
        aiplatform.init(project=target.project, location=target.region,
                        credentials=credentials, api_endpoint=target.api_endpoint,
                        api_transport="rest" if target.api_endpoint and
                        target.api_endpoint.startswith("http://") else None)
        pipeline_job = aiplatform.PipelineJob(
            display_name=name, template_path=path, parameter_values=dict(params),
            pipeline_root=root, project=target.project, location=target.region,
            credentials=credentials)
        pipeline_job.submit(service_account=service_account or None)
    except auth_exceptions.DefaultCredentialsError:
        raise KubeflowError("no Google Cloud credentials for Vertex AI: run gcloud auth "
                            "application-default login, or set GOOGLE_APPLICATION_CREDENTIALS "
                            "to a service account key") from None
    except api_exceptions.GoogleAPICallError as e:
        raise KubeflowError(f"Vertex AI ({target.project}, {target.region}) refused the run: "
                            f"HTTP {e.code} {e.message}") from None
    return pipeline_job.resource_name
