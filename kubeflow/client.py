"""Upload, run and schedule the compiled pipeline on Kubeflow Pipelines 2.x with ``kfp.Client``.

The connection (host, namespace, token) comes from flags, then ``$KFP_HOST`` /
``$KFP_NAMESPACE`` / ``$KFP_TOKEN``, then the ``[kubeflow]`` config section. Before any call a
health check tells an unreachable host and refused credentials apart, with what to do about
each; API errors afterwards are turned into one message with the HTTP status and KFP's reason.
Recurring runs are created with max concurrency 1 and catch-up off: a retraining schedule
must not pile up runs, nor replay the runs missed while it was paused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import re
import urllib.error
import urllib.request
from typing import Any, Iterator, Mapping, Optional

from recsys_pipeline.errors import RecsysError

HEALTHZ = "/apis/v2beta1/healthz"
DEFAULT_NAMESPACE = "kubeflow"


class KubeflowError(RecsysError):
    """Kubeflow Pipelines is unreachable, refused us, or answered with an error."""


# --- Cron -----------------------------------------------------------------------------------

_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day-of-month", 1, 31),
           ("month", 1, 12), ("day-of-week", 0, 6))
_NAMES = {4: {m: i + 1 for i, m in enumerate(
              "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
          5: {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}}
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_HELP = ("Kubeflow Pipelines takes 6 fields: second minute hour day-of-month month day-of-week, "
         "e.g. '0 0 3 * * *' for 03:00 every day (5-field crontab lines get second 0)")


def normalize_cron(expression: str) -> str:
    """The 6-field cron expression KFP's scheduler (robfig/cron) takes, or a clear error."""
    text = " ".join(expression.split())
    if text.lower() in _DESCRIPTORS or re.fullmatch(r"@every \d+[smh]", text.lower()):
        return text.lower()
    fields = text.split(" ")
    if len(fields) == 5:
        fields = ["0"] + fields
    if len(fields) != 6:
        raise KubeflowError(f"invalid cron expression {expression!r}: {len(text.split())} "
                            f"fields. {_HELP}.")
    for index, (value, (name, low, high)) in enumerate(zip(fields, _FIELDS, strict=True)):
        _check_field(expression, index, value, name, low, high)
    return " ".join(fields)


def _check_field(expression: str, index: int, value: str, name: str, low: int,
                 high: int) -> None:
    def number(token: str) -> int:
        token = str(_NAMES.get(index, {}).get(token.upper(), token))
        if not str(token).isdigit():
            raise KubeflowError(f"invalid cron expression {expression!r}: {name} field has "
                                f"{value!r}. {_HELP}.")
        n = int(token)
        if not low <= n <= high:
            raise KubeflowError(f"invalid cron expression {expression!r}: {name} {n} is "
                                f"outside {low}-{high}. {_HELP}.")
        return n

    for part in value.split(","):
        base, _, step = part.partition("/")
        if step:
            if not step.isdigit() or int(step) < 1:
                raise KubeflowError(f"invalid cron expression {expression!r}: step {step!r} "
                                    f"in the {name} field. {_HELP}.")
        if base in ("*", "?"):
            if base == "?" and name not in ("day-of-month", "day-of-week"):
                raise KubeflowError(f"invalid cron expression {expression!r}: '?' is only "
                                    f"allowed for day-of-month and day-of-week. {_HELP}.")
            continue
        first, _, last = base.partition("-")
        if number(first) > (number(last) if last else number(first)):
            raise KubeflowError(f"invalid cron expression {expression!r}: empty range {base!r} "
                                f"in the {name} field. {_HELP}.")


# --- Connection -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Connection:
    """Where and as whom to talk to Kubeflow Pipelines."""

    host: str
    namespace: Optional[str] = None
    token: Optional[str] = None

    @classmethod
    def resolve(cls, host: Optional[str], namespace: Optional[str], token: Optional[str],
                environ: Mapping[str, str], config=None) -> "Connection":
        """Flags, then environment, then config."""
        host = host or environ.get("KFP_HOST") or (config.host if config else None)
        if not host:
            raise KubeflowError("no Kubeflow Pipelines host: pass --host URL, set $KFP_HOST, "
                                "or set kubeflow.host in the config (for a cluster: kubectl "
                                "port-forward -n kubeflow svc/ml-pipeline-ui 8080:80, then "
                                "--host http://localhost:8080)")
        if not re.match(r"https?://", host):
            raise KubeflowError(f"Kubeflow Pipelines host {host!r} must start with http:// or "
                                "https://")
        return cls(host=host.rstrip("/"),
                   namespace=namespace or environ.get("KFP_NAMESPACE")
                   or (config.namespace if config else None),
                   token=token or environ.get("KFP_TOKEN") or None)


def check_health(connection: Connection, timeout: float = 10.0) -> dict:
    """GET healthz: tells an unreachable host and refused credentials apart."""
    request = urllib.request.Request(connection.host + HEALTHZ)
    if connection.token:
        request.add_header("Authorization", f"Bearer {connection.token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        if e.code in (401, 403):
            raise _auth_error(connection, e.code) from None
        raise KubeflowError(f"Kubeflow Pipelines at {connection.host} answered the health check "
                            f"with HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise KubeflowError(f"cannot reach Kubeflow Pipelines at {connection.host}: {reason}. "
                            "Check --host / $KFP_HOST, and that the API is reachable from here "
                            "(e.g. kubectl port-forward -n kubeflow svc/ml-pipeline-ui "
                            "8080:80).") from None
    try:
        return json.loads(body or b"{}")
    except ValueError:
        # Multi-user Kubeflow redirects unauthenticated calls to its login page.
        raise _auth_error(connection, None) from None


def _auth_error(connection: Connection, status: Optional[int]) -> KubeflowError:
    what = f"HTTP {status}" if status else "a login page instead of the API"
    given = "the token given was refused" if connection.token else "no token was given"
    return KubeflowError(f"authentication to Kubeflow Pipelines at {connection.host} failed "
                         f"({what}; {given}). Pass --token or set $KFP_TOKEN to a bearer token "
                         "the cluster accepts (e.g. kubectl create token SERVICE-ACCOUNT -n "
                         "NAMESPACE).")


@contextlib.contextmanager
def api_errors(connection: Connection) -> Iterator[None]:
    """Turns kfp_server_api / urllib3 failures into one KubeflowError."""
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as e:
        if e.status in (401, 403):
            raise _auth_error(connection, e.status) from None
        reason = e.reason
        with contextlib.suppress(ValueError, TypeError):
            body = json.loads(e.body)
            reason = body.get("message") or body.get("error") or reason
        raise KubeflowError(f"Kubeflow Pipelines at {connection.host} answered HTTP {e.status}: "
                            f"{reason}") from None
    except urllib3.exceptions.HTTPError as e:
        raise KubeflowError(f"cannot reach Kubeflow Pipelines at {connection.host}: {e}") from None


class Pipelines:
    """The operations ``recsys kubeflow`` offers, over one ``kfp.Client``."""

    def __init__(self, connection: Connection, health_timeout: float = 10.0):
        check_health(connection, health_timeout)
        import kfp

        self.connection = connection
        with api_errors(connection):
            self.client = kfp.Client(host=connection.host,
                                     namespace=connection.namespace or DEFAULT_NAMESPACE,
                                     existing_token=connection.token)

    @property
    def _namespace(self) -> Optional[str]:
        return self.connection.namespace

    def upload(self, package: str, pipeline_name: str, version_name: Optional[str] = None,
               description: str = "") -> tuple[str, str]:
        """Uploads ``package`` as a new version of ``pipeline_name`` (created if absent)."""
        version_name = version_name or (
            f"{pipeline_name}-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}")
        with api_errors(self.connection):
            pipeline_id = self.client.get_pipeline_id(pipeline_name)
            if pipeline_id is None:
                pipeline = self.client.upload_pipeline(
                    package, pipeline_name=pipeline_name, description=description or None,
                    namespace=self._namespace)
                return pipeline.pipeline_id, self.latest_version(pipeline.pipeline_id)
            version = self.client.upload_pipeline_version(
                package, pipeline_version_name=version_name, pipeline_id=pipeline_id,
                description=description or None)
            return pipeline_id, version.pipeline_version_id

    def pipeline_id(self, pipeline_name: str) -> str:
        with api_errors(self.connection):
            found = self.client.get_pipeline_id(pipeline_name)
        if found is None:
            raise KubeflowError(f"no pipeline named {pipeline_name!r} on {self.connection.host}:"
                                " upload it first (recsys kubeflow upload)")
        return found

    def latest_version(self, pipeline_id: str) -> str:
        with api_errors(self.connection):
            listed = self.client.list_pipeline_versions(pipeline_id, page_size=1,
                                                        sort_by="created_at desc")
        versions = listed.pipeline_versions or []
        if not versions:
            raise KubeflowError(f"pipeline {pipeline_id} has no versions")
        return versions[0].pipeline_version_id

    def experiment_id(self, name: str) -> str:
        with api_errors(self.connection):  # kfp.Client gets the experiment, or creates it
            return self.client.create_experiment(name, namespace=self._namespace).experiment_id

    def run(self, pipeline_name: str, experiment: str, version_id: Optional[str] = None,
            params: Optional[dict[str, Any]] = None, pipeline_root: Optional[str] = None,
            service_account: str = "", run_name: Optional[str] = None) -> str:
        """Starts one run of a pipeline version (default: the newest); returns its id."""
        pipeline_id = self.pipeline_id(pipeline_name)
        version_id = version_id or self.latest_version(pipeline_id)
        experiment_id = self.experiment_id(experiment)
        with api_errors(self.connection):
            run = self.client.run_pipeline(
                experiment_id=experiment_id,
                job_name=run_name or f"{pipeline_name}-"
                f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}",
                params=params or {}, pipeline_id=pipeline_id, version_id=version_id,
                pipeline_root=pipeline_root, service_account=service_account or None)
        return run.run_id

    def schedule(self, name: str, cron: str, pipeline_name: str, experiment: str,
                 version_id: Optional[str] = None, params: Optional[dict[str, Any]] = None,
                 service_account: str = "") -> str:
        """A recurring run on ``cron`` (max concurrency 1, no catch-up); returns its id."""
        cron = normalize_cron(cron)
        pipeline_id = self.pipeline_id(pipeline_name)
        version_id = version_id or self.latest_version(pipeline_id)
        experiment_id = self.experiment_id(experiment)
        with api_errors(self.connection):
            recurring = self.client.create_recurring_run(
                experiment_id=experiment_id, job_name=name, cron_expression=cron,
                max_concurrency=1, no_catchup=True, params=params or {},
                pipeline_id=pipeline_id, version_id=version_id, enabled=True,
                service_account=service_account or None)
        return recurring.recurring_run_id

    def schedules(self, experiment: Optional[str] = None) -> list[dict[str, str]]:
        """Recurring runs (of one experiment, if given): id, name, cron, mode."""
        experiment_id = self.experiment_id(experiment) if experiment else None
        rows = []
        token = ""
        with api_errors(self.connection):
            while True:
                page = self.client.list_recurring_runs(
                    page_token=token, page_size=100, experiment_id=experiment_id,
                    namespace=self._namespace)
                for r in page.recurring_runs or []:
                    cron = r.trigger.cron_schedule.cron if (
                        r.trigger and r.trigger.cron_schedule) else ""
                    rows.append({"id": r.recurring_run_id, "name": r.display_name,
                                 "cron": cron, "mode": str(r.mode or "")})
                token = page.next_page_token
                if not token:
                    return rows

    def disable(self, recurring_run_id: str) -> None:
        with api_errors(self.connection):
            self.client.disable_recurring_run(recurring_run_id)
