"""A local HTTP server implementing the KFP v2beta1 REST endpoints ``recsys kubeflow`` uses.

Every JSON request body is checked against the API's schema -- the OpenAPI models that
``kfp_server_api`` is generated from (field names, types, enum values) -- and an uploaded
package is parsed as a PipelineSpec with the checks of KFP's backend (schema version 2.1.0,
a pipeline name, a root component). A violation is answered with HTTP 400 and recorded in
``errors``, so a test sees it both as a failed call and in the list. A run's pipeline root
is resolved as KFP's driver resolves it (``_check_reference``), and one this pipeline cannot
write is refused.
"""

from __future__ import annotations

import json
import re
from typing import Any, Optional

import kfp_server_api
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from recsys_pipeline.kubeflow import client as kfc
from recsys_pipeline.kubeflow.entrypoint import MODULE as TFX_STEP
from tests.kubeflow.fake_http import FakeHTTPServer

PREFIX = "/apis/v2beta1"
# int64 fields: OpenAPI (and so kfp_server_api) types them as strings, and proto3's JSON
# mapping, which KFP's gRPC gateway parses with, takes a number or a string for them.
_INT64_FIELDS = {"max_concurrency", "interval_second"}
_SCALARS = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object,
            "datetime": str}


def schema_errors(value: Any, type_name: str, path: str = "body") -> list[str]:
    """Where ``value`` (decoded JSON) does not fit the OpenAPI type ``type_name``."""
    if value is None:
        return []
    if type_name in _SCALARS:
        ok = isinstance(value, _SCALARS[type_name]) and not (
            type_name == "int" and isinstance(value, bool))
        if path.rsplit(".", 1)[-1] in _INT64_FIELDS:
            ok = (isinstance(value, int) and not isinstance(value, bool)) or (
                isinstance(value, str) and value.lstrip("-").isdigit())
        return [] if ok else [f"{path}: {value!r} is not {type_name}"]
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        inner = type_name[5:-1]
        return [e for i, v in enumerate(value) for e in schema_errors(v, inner, f"{path}[{i}]")]
    if type_name.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        inner = type_name[5:-1].split(", ", 1)[1]
        return [e for k, v in value.items() for e in schema_errors(v, inner, f"{path}.{k}")]
    model = getattr(kfp_server_api.models, type_name)
    if getattr(model, "allowable_values", None) is not None and not model.openapi_types:
        return [] if value in model.allowable_values else [
            f"{path}: {value!r} is not one of {model.allowable_values}"]
    if not isinstance(value, dict):
        return [f"{path}: not an object ({type_name})"]
    by_json = {json_key: attr for attr, json_key in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: not a field of {type_name}")
            continue
        errors += schema_errors(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


class FakeKFP(FakeHTTPServer):
    """State and behaviour of the fake API server (see module doc)."""

    def __init__(self, token: Optional[str] = None, multi_user: bool = False):
        self.token = token
        self.multi_user = multi_user
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.roots: dict[str, str] = {}  # run or recurring run id -> its resolved root
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, list[dict]] = {}
        self.specs: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring: dict[str, dict] = {}
        self._ids = iter(range(1, 1 << 30))
        super().__init__()

    def _id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids)}"

    # -- request handling --------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict, raw: bytes,
               headers) -> tuple[int, Any]:
        self.requests.append({"method": method, "path": path, "query": query,
                              "headers": dict(headers), "raw": raw})
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"error": "Unauthorized", "code": 16,
                         "message": "invalid or missing bearer token"}
        try:
            return self.route(method, path, query, raw, headers.get("Content-Type", ""))
        except BadRequest as e:
            self.errors.append(str(e))
            return 400, {"error": str(e), "code": 3, "message": str(e)}

    def _json(self, raw: bytes, model: str) -> dict:
        try:
            body = json.loads(raw or b"{}")
        except ValueError as e:
            raise BadRequest(f"body is not JSON: {e}") from None
        errors = schema_errors(body, model)
        if errors:
            raise BadRequest(f"{model} schema: " + "; ".join(errors))
        return body

    def _upload(self, raw: bytes, content_type: str) -> dict:
        from email.parser import BytesParser
        from email.policy import HTTP

        import yaml

        if not content_type.startswith("multipart/form-data"):
            raise BadRequest("upload is not multipart/form-data")
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        parts = {part.get_param("name", header="content-disposition"): part
                 for part in message.iter_parts()}
        if "uploadfile" not in parts:
            raise BadRequest("multipart upload has no 'uploadfile' part")
        # Like KFP's backend: the document with the pipeline spec, beside an optional
        # platform spec (which must then parse as one).
        documents = [d for d in yaml.safe_load_all(parts["uploadfile"].get_payload(decode=True))
                     if isinstance(d, dict)]
        specs = [d for d in documents if "pipelineInfo" in d]
        if len(specs) != 1:
            raise BadRequest(f"expected one pipeline spec document, found {len(specs)}")
        for extra in (d for d in documents if "platforms" in d):
            try:
                json_format.ParseDict(extra, pipeline_spec_pb2.PlatformSpec())
            except json_format.ParseError as e:
                raise BadRequest(f"cannot unmarshal platform specific configs: {e}") from None
        document = specs[0]
        spec = pipeline_spec_pb2.PipelineSpec()
        try:
            json_format.ParseDict(document, spec)
        except json_format.ParseError as e:
            raise BadRequest(f"invalid v2 pipeline spec: {e}") from None
        if spec.schema_version != "2.1.0":
            raise BadRequest("KFP only supports schema version 2.1.0, but the pipeline spec has "
                             f"version {spec.schema_version}")
        if not spec.pipeline_info.name or not spec.HasField("root"):
            raise BadRequest("invalid v2 pipeline spec: name or root component is empty")
        return document

    def _new_version(self, pipeline_id: str, name: str, document: dict) -> dict:
        version = {"pipeline_id": pipeline_id, "pipeline_version_id": self._id("version"),
                   "display_name": name, "created_at": "2026-11-26T00:00:00Z"}
        self.versions.setdefault(pipeline_id, []).append(version)
        self.specs[version["pipeline_version_id"]] = document
        return version

    @staticmethod
    def _display_name_filter(query: dict) -> Optional[str]:
        if "filter" not in query:
            return None
        predicates = json.loads(query["filter"])["predicates"]
        (predicate,) = [p for p in predicates if p["key"] in ("display_name", "name")]
        return predicate.get("stringValue") or predicate.get("string_value")

    def route(self, method: str, path: str, query: dict, raw: bytes,
              content_type: str) -> tuple[int, Any]:
        """The v2beta1 endpoints used; anything else is a 404 like the real server's."""
        if not path.startswith(PREFIX):
            return 404, {"message": "Not Found"}
        path = path[len(PREFIX):]
        if (method, path) == ("GET", "/healthz"):
            return 200, {"multi_user": self.multi_user}
        if (method, path) == ("POST", "/pipelines/upload"):
            document = self._upload(raw, content_type)
            name = query.get("name") or document["pipelineInfo"]["name"]
            if any(p["display_name"] == name for p in self.pipelines.values()):
                raise BadRequest(f"a pipeline named {name} already exists")
            pipeline = {"pipeline_id": self._id("pipeline"), "display_name": name,
                        "description": query.get("description", ""),
                        "namespace": query.get("namespace", "")}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            self._new_version(pipeline["pipeline_id"], name, document)
            return 200, pipeline
        if (method, path) == ("POST", "/pipelines/upload_version"):
            document = self._upload(raw, content_type)
            pipeline_id = query.get("pipelineid")
            if pipeline_id not in self.pipelines:
                raise BadRequest(f"no pipeline {pipeline_id}")
            return 200, self._new_version(pipeline_id, query["name"], document)
        if (method, path) == ("GET", "/pipelines"):
            name = self._display_name_filter(query)
            found = [p for p in self.pipelines.values()
                     if name is None or p["display_name"] == name]
            return 200, {"pipelines": found, "total_size": len(found)}
        match = re.fullmatch(r"/pipelines/([^/]+)/versions", path)
        if method == "GET" and match:
            versions = list(reversed(self.versions.get(match.group(1), [])))
            return 200, self._page(versions, query, "pipeline_versions")
        if (method, path) == ("GET", "/experiments"):
            name = self._display_name_filter(query)
            found = [e for e in self.experiments.values()
                     if name is None or e["display_name"] == name]
            return 200, {"experiments": found, "total_size": len(found)}
        if (method, path) == ("POST", "/experiments"):
            body = self._json(raw, "V2beta1Experiment")
            experiment = {**body, "experiment_id": self._id("experiment")}
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if (method, path) == ("POST", "/runs"):
            body = self._json(raw, "V2beta1Run")
            root = self._check_reference(body)
            run = {**body, "run_id": self._id("run"), "state": "PENDING",
                   "created_at": "2026-11-26T00:30:00Z"}
            self.runs[run["run_id"]] = run
            self.roots[run["run_id"]] = root
            return 200, run
        if (method, path) == ("POST", "/recurringruns"):
            body = self._json(raw, "V2beta1RecurringRun")
            root = self._check_reference(body)
            recurring = {**body, "recurring_run_id": self._id("recurring"),
                         "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED"}
            self.recurring[recurring["recurring_run_id"]] = recurring
            self.roots[recurring["recurring_run_id"]] = root
            return 200, recurring
        if (method, path) == ("GET", "/recurringruns"):
            found = [r for r in self.recurring.values()
                     if "experiment_id" not in query
                     or r.get("experiment_id") == query["experiment_id"]]
            return 200, self._page(found, query, "recurringRuns")
        match = re.fullmatch(r"/recurringruns/([^/:]+)(:enable|:disable)?", path)
        if match:
            recurring_id, action = match.groups()
            if recurring_id not in self.recurring:
                return _not_found(f"RecurringRun {recurring_id} not found")
            if (method, action) == ("POST", ":disable"):
                self.recurring[recurring_id].update(mode="DISABLE", status="DISABLED")
                return 200, {}
            if (method, action) == ("POST", ":enable"):
                self.recurring[recurring_id].update(mode="ENABLE", status="ENABLED")
                return 200, {}
            if (method, action) == ("GET", None):
                return 200, self.recurring[recurring_id]
            if (method, action) == ("DELETE", None):
                del self.recurring[recurring_id]
                return 200, {}
        if (method, path) == ("GET", "/runs"):
            found = [r for r in reversed(self.runs.values())
                     if "experiment_id" not in query
                     or r.get("experiment_id") == query["experiment_id"]]
            return 200, self._page(found, query, "runs")
        match = re.fullmatch(r"/runs/([^/:]+)(:terminate)?", path)
        if match:
            run_id, action = match.groups()
            if run_id not in self.runs:
                return _not_found(f"Run {run_id} not found")
            if (method, action) == ("GET", None):
                return 200, self.runs[run_id]
            if (method, action) == ("POST", ":terminate"):
                self.runs[run_id]["state"] = "CANCELING"
                return 200, {}
        match = re.fullmatch(r"/pipelines/([^/]+)(?:/versions/([^/]+))?", path)
        if method == "DELETE" and match:
            pipeline_id, version_id = match.groups()
            if pipeline_id not in self.pipelines:
                return _not_found(f"Pipeline {pipeline_id} not found")
            versions = self.versions.get(pipeline_id, [])
            if version_id is None:
                if versions:  # what KFP's backend answers: delete the versions first
                    return 400, {"code": 9, "message": f"Failed to delete pipeline "
                                 f"{pipeline_id}. Remove all its pipeline versions first"}
                del self.pipelines[pipeline_id]
                return 200, {}
            if not any(v["pipeline_version_id"] == version_id for v in versions):
                return _not_found(f"PipelineVersion {version_id} not found")
            self.versions[pipeline_id] = [v for v in versions
                                          if v["pipeline_version_id"] != version_id]
            del self.specs[version_id]
            return 200, {}
        return 404, {"message": f"no route {method} {path}"}

    @staticmethod
    def _page(items: list, query: dict, key: str) -> dict:
        start = int(query.get("page_token") or 0)
        size = int(query.get("page_size") or 10)
        page = {key: items[start:start + size], "total_size": len(items)}
        if start + size < len(items):
            page["next_page_token"] = str(start + size)
        return page

    def set_run(self, run_id: str, state: str, tasks=(), error: str = "") -> None:
        """Moves a run to ``state``, with (name, state, error) task details, as KFP reports."""
        run = self.runs[run_id]
        run["state"] = state
        if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
            run["finished_at"] = "2026-11-26T01:00:00Z"
        if error:
            run["error"] = {"code": 2, "message": error}
        run["run_details"] = {"task_details": [
            {"display_name": name, "task_id": f"task-{i}", "state": task_state,
             **({"error": {"code": 2, "message": message}} if message else {})}
            for i, (name, task_state, message) in enumerate(tasks)]}

    def _check_reference(self, body: dict) -> str:
        """Checks a run's (or recurring run's) references; returns its pipeline root,
        resolved as KFP's driver resolves it: the runtime config's, else the cluster's
        default (``kfc.KFP_DEFAULT_ROOT``), never the spec's ``defaultPipelineRoot``."""
        ref = body.get("pipeline_version_reference") or {}
        if ref.get("pipeline_version_id") not in self.specs:
            raise BadRequest(f"unknown pipeline version {ref.get('pipeline_version_id')}")
        if body.get("experiment_id") not in self.experiments:
            raise BadRequest(f"unknown experiment {body.get('experiment_id')}")
        spec = self.specs[ref["pipeline_version_id"]]
        declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        for name in (body.get("runtime_config") or {}).get("parameters", {}):
            if name not in declared:
                raise BadRequest(f"parameter {name} is not an input of the pipeline")
        root = (body.get("runtime_config") or {}).get("pipeline_root") or kfc.KFP_DEFAULT_ROOT
        tfx_steps = any(TFX_STEP in json.dumps(executor) for executor in
                        spec.get("deploymentSpec", {}).get("executors", {}).values())
        if tfx_steps and not root.startswith("gs://"):
            # KFP would accept the run; its TFX steps would then fail on their first write
            # (tf.io.gfile has no minio:// or s3://). Refused here, in KFP's error shape.
            raise BadRequest(f"pipeline root {root}: the pipeline's TFX steps cannot write "
                             "there (tf.io.gfile has no scheme for it)")
        return root


def _not_found(message: str) -> tuple[int, dict]:
    return 404, {"code": 5, "message": message}


class BadRequest(Exception):
    """The request does not fit the API (answered with HTTP 400)."""
