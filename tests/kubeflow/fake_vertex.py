"""A local HTTP server for the calls a Vertex AI submit makes: Cloud Storage's bucket lookup for
the pipeline root (and, for a bucket that does not exist, its creation and IAM grant to the
run's service account), and ``pipelineJobs.create``, whose body must parse strictly as
``aiplatform_v1``'s PipelineJob (an unknown field or a wrong type is HTTP 400)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.kubeflow.fake_http import FakeHTTPServer


class FakeVertex(FakeHTTPServer):
    def __init__(self):
        self.buckets: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        super().__init__()

    def answer(self, method: str, path: str, query: dict, raw: bytes,
               headers) -> tuple[int, Any]:
        from google.cloud.aiplatform_v1.types import PipelineJob

        if (method, path) == ("POST", "/storage/v1/b"):
            bucket = json.loads(raw)
            self.buckets[bucket["name"]] = {"bindings": [], "etag": "CAE="}
            return 200, {**bucket, "project": query.get("project")}
        match = re.fullmatch(r"/storage/v1/b/([^/]+)(/iam)?", path)
        if match:
            name, iam = match.groups()
            if name not in self.buckets:
                return 404, {"error": {"code": 404, "message": f"bucket {name} not found"}}
            if method == "GET":
                return 200, self.buckets[name] if iam else {"name": name}
            if method == "PUT" and iam:
                self.buckets[name] = json.loads(raw)
                return 200, self.buckets[name]
        match = re.fullmatch(r"/v1/projects/([^/]+)/locations/([^/]+)/pipelineJobs", path)
        if method == "POST" and match:
            try:
                PipelineJob.from_json(raw, ignore_unknown_fields=False)
            except Exception as e:  # noqa: BLE001 -- any parse error is the client's fault
                self.errors.append(str(e))
                return 400, {"error": {"code": 400, "message": f"invalid PipelineJob: {e}",
                                       "status": "INVALID_ARGUMENT"}}
            body = json.loads(raw)
            job_id = query.get("pipelineJobId") or f"job-{len(self.jobs) + 1}"
            name = f"projects/{match.group(1)}/locations/{match.group(2)}/pipelineJobs/{job_id}"
            self.jobs[name] = body
            return 200, {**body, "name": name, "state": 2}
        return 404, {"error": {"code": 404, "message": f"no route {method} {path}"}}
