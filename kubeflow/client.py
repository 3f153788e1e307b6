"""Upload, run, follow and schedule the compiled pipeline on Kubeflow Pipelines 2.x with
``kfp.Client``: what TFX's own CLI no longer does for Kubeflow.

The connection (host, namespace, token) comes from flags, then ``$KFP_HOST`` /
``$KFP_NAMESPACE`` / ``$KFP_TOKEN``, then the ``[kubeflow]`` config section. Before any call a
health check tells an unreachable host and refused credentials apart, with what to do about
each; API errors afterwards are turned into one message with the HTTP status and KFP's reason.
Recurring runs are created with max concurrency 1 and catch-up off: a retraining schedule
must not pile up runs, nor replay the runs missed while it was paused. What would lose work
is refused before the call: terminating a finished run, deleting a pipeline (or version) that a
recurring run still starts or an unfinished run still uses.
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


# What KFP's driver uses when a run's runtime config names no pipeline root: the cluster's
# ``defaultPipelineRoot`` (backend/src/v2/driver/root_dag.go lines 97-113), whose default is
# this (backend/src/v2/config/env.go line 38). The spec's own ``defaultPipelineRoot`` is not
# read, so every run and recurring run sends its root.
KFP_DEFAULT_ROOT = "minio://mlpipeline/v2/artifacts"
PLACEHOLDER_ROOT = "gs://YOUR-BUCKET/"


def run_pipeline_root(root: str, option: str = "kubeflow.pipeline_root") -> str:
    """``root`` if a run of this pipeline can use it as its pipeline root; else why not."""
    if root.startswith(PLACEHOLDER_ROOT):
        raise KubeflowError(f"{option} is still the placeholder {root!r}: set it (or pass "
                            "--pipeline-root) to a gs:// folder the runs' service account can "
                            "write")
    if not root.startswith("gs://"):
        raise KubeflowError(
            f"pipeline root {root!r} ({option}) cannot hold this pipeline's artifacts: KFP's "
            "launcher writes gs://, s3:// and minio:// roots, and the TFX steps read theirs "
            "with TensorFlow's file system, which has gs:// alone (no s3:// or minio:// in "
            "TensorFlow 2.20). Use a gs:// folder")
    return root


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
def api_errors(connection: Connection, not_found: Optional[str] = None) -> Iterator[None]:
    """Turns kfp_server_api / urllib3 failures into one KubeflowError.

    ``not_found`` is the message for an HTTP 404 (an unknown id).
    """
    import kfp_server_api
    import urllib3

    try:
        yield
    except kfp_server_api.ApiException as e:
        if e.status in (401, 403):
            raise _auth_error(connection, e.status) from None
        if e.status == 404 and not_found:
            raise KubeflowError(not_found) from None
        reason = e.reason
        with contextlib.suppress(ValueError, TypeError):
            body = json.loads(e.body)
            reason = body.get("message") or body.get("error") or reason
        raise KubeflowError(f"Kubeflow Pipelines at {connection.host} answered HTTP {e.status}: "
                            f"{reason}") from None
    except urllib3.exceptions.HTTPError as e:
        raise KubeflowError(f"cannot reach Kubeflow Pipelines at {connection.host}: {e}") from None


# --- Runs -----------------------------------------------------------------------------------

FINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")
FAILED_STATES = ("FAILED", "CANCELED")


@dataclasses.dataclass(frozen=True)
class TaskState:
    """One task of a run: its state and, when it failed, why."""

    name: str
    state: str
    error: str = ""


@dataclasses.dataclass(frozen=True)
class RunState:
    """A run as ``recsys kubeflow runs|status|wait`` shows it."""

    id: str
    name: str
    state: str
    created_at: str = ""
    finished_at: str = ""
    pipeline_id: str = ""
    pipeline_version_id: str = ""
    error: str = ""
    tasks: tuple[TaskState, ...] = ()

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def of(cls, run) -> "RunState":
        """From a ``kfp_server_api`` V2beta1Run."""
        ref = run.pipeline_version_reference
        details = run.run_details.task_details if run.run_details else None
        tasks = tuple(sorted(
            (TaskState(t.display_name or t.task_id or "", str(t.state or ""),
                       (t.error.message or "") if t.error else "")
             for t in details or []), key=lambda t: t.name))
        return cls(id=run.run_id, name=run.display_name or "", state=str(run.state or ""),
                   created_at=_when(run.created_at), finished_at=_when(run.finished_at),
                   pipeline_id=(ref.pipeline_id or "") if ref else "",
                   pipeline_version_id=(ref.pipeline_version_id or "") if ref else "",
                   error=(run.error.message or "") if run.error else "", tasks=tasks)


def _when(value) -> str:
    if not value:
        return ""
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


class RunTimeout(KubeflowError):
    """``wait`` gave up before the run finished (an exit code of its own)."""

    exit_code = 3


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

    def existing_experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, which must exist (for listings: nothing is created)."""
        with api_errors(self.connection):
            try:
                return self.client.get_experiment(experiment_name=name,
                                                  namespace=self._namespace).experiment_id
            except ValueError:
                raise KubeflowError(f"no experiment named {name!r} on "
                                    f"{self.connection.host}") from None

    def run(self, pipeline_name: str, experiment: str, version_id: Optional[str] = None,
            params: Optional[dict[str, Any]] = None, pipeline_root: Optional[str] = None,
            service_account: str = "", run_name: Optional[str] = None) -> str:
        """Starts one run of a pipeline version (default: the newest); returns its id.
        ``pipeline_root`` goes in the run's runtime config, where KFP reads it."""
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
                 service_account: str = "", pipeline_root: Optional[str] = None) -> str:
        """A recurring run on ``cron`` (max concurrency 1, no catch-up); returns its id.
        ``pipeline_root`` goes in its runtime config, where KFP reads it."""
        cron = normalize_cron(cron)
        pipeline_id = self.pipeline_id(pipeline_name)
        version_id = version_id or self.latest_version(pipeline_id)
        experiment_id = self.experiment_id(experiment)
        with api_errors(self.connection):
            recurring = self.client.create_recurring_run(
                experiment_id=experiment_id, job_name=name, cron_expression=cron,
                max_concurrency=1, no_catchup=True, params=params or {},
                pipeline_id=pipeline_id, version_id=version_id, enabled=True,
                pipeline_root=pipeline_root, service_account=service_account or None)
        return recurring.recurring_run_id

    def schedules(self, experiment: Optional[str] = None) -> list[dict[str, str]]:
        """Recurring runs (of one experiment, if given): id, name, cron, mode."""
        experiment_id = self.existing_experiment_id(experiment) if experiment else None
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

    def _schedule_unknown(self, recurring_run_id: str) -> str:
        return (f"no recurring run {recurring_run_id!r} on {self.connection.host} (list them "
                "with recsys kubeflow schedules)")

    def enable(self, recurring_run_id: str) -> None:
        with api_errors(self.connection, self._schedule_unknown(recurring_run_id)):
            self.client.enable_recurring_run(recurring_run_id)

    def disable(self, recurring_run_id: str) -> None:
        with api_errors(self.connection, self._schedule_unknown(recurring_run_id)):
            self.client.disable_recurring_run(recurring_run_id)

    def delete_schedule(self, recurring_run_id: str) -> None:
        with api_errors(self.connection, self._schedule_unknown(recurring_run_id)):
            self.client.get_recurring_run(recurring_run_id)
            self.client.delete_recurring_run(recurring_run_id)

    # -- runs --------------------------------------------------------------------------------

    def _all_runs(self, experiment_id: Optional[str] = None) -> Iterator[Any]:
        token = ""
        with api_errors(self.connection):
            while True:
                page = self.client.list_runs(page_token=token, page_size=100,
                                             sort_by="created_at desc",
                                             experiment_id=experiment_id,
                                             namespace=self._namespace)
                yield from page.runs or []
                token = page.next_page_token
                if not token:
                    return

    def runs(self, state: Optional[str] = None, experiment: Optional[str] = None,
             limit: int = 20) -> list[RunState]:
        """The newest ``limit`` runs (in ``state``, of ``experiment``, if given)."""
        if state and state not in _RUN_STATES:
            raise KubeflowError(f"unknown run state {state!r}; expected one of "
                                f"{', '.join(_RUN_STATES)}")
        experiment_id = self.existing_experiment_id(experiment) if experiment else None
        found = []
        for run in self._all_runs(experiment_id):
            row = RunState.of(run)
            if state is None or row.state == state:
                found.append(row)
                if len(found) == limit:
                    break
        return found

    def run_state(self, run_id: str) -> RunState:
        """One run, with the state of each of its tasks."""
        with api_errors(self.connection, f"no run {run_id!r} on {self.connection.host} (list "
                                         "runs with recsys kubeflow runs)"):
            return RunState.of(self.client.get_run(run_id))

    def wait(self, run_id: str, timeout: float, poll: float = 10.0,
             progress=print, clock=None, sleep=None) -> RunState:
        """Polls the run until it finishes; RunTimeout after ``timeout`` seconds."""
        import time

        clock, sleep = clock or time.monotonic, sleep or time.sleep
        deadline = clock() + timeout
        last = None
        while True:
            run = self.run_state(run_id)
            if run.state != last:
                progress(f"run {run_id}: {run.state or 'UNKNOWN'}")
                last = run.state
            if run.finished:
                return run
            if clock() >= deadline:
                raise RunTimeout(f"run {run_id} has not finished after {timeout:g}s (still "
                                 f"{run.state}); it goes on running: wait again, or stop it "
                                 f"with recsys kubeflow terminate {run_id}")
            sleep(min(poll, max(0.0, deadline - clock())))

    def terminate(self, run_id: str) -> RunState:
        """Stops a run that has not finished; refuses one that has."""
        run = self.run_state(run_id)
        if run.finished:
            raise KubeflowError(f"run {run_id} has already finished ({run.state}"
                                f"{', ' + run.finished_at if run.finished_at else ''}); "
                                "there is nothing to terminate")
        with api_errors(self.connection):
            self.client.terminate_run(run_id)
        return run

    # -- pipelines ---------------------------------------------------------------------------

    def _versions(self, pipeline_id: str) -> list[Any]:
        versions: list[Any] = []
        token = ""
        with api_errors(self.connection):
            while True:
                page = self.client.list_pipeline_versions(pipeline_id, page_token=token,
                                                          page_size=100)
                versions += page.pipeline_versions or []
                token = page.next_page_token
                if not token:
                    return versions

    def _users(self, pipeline_id: str, version_ids: set[str]) -> list[str]:
        """What still uses these versions: every recurring run, and unfinished runs."""
        users: list[str] = []
        token = ""
        with api_errors(self.connection):
            while True:
                page = self.client.list_recurring_runs(page_token=token, page_size=100,
                                                       namespace=self._namespace)
                for r in page.recurring_runs or []:
                    ref = r.pipeline_version_reference
                    if ref and ref.pipeline_version_id in version_ids:
                        users.append(f"recurring run {r.display_name} ({r.recurring_run_id}, "
                                     f"{r.status or r.mode}): recsys kubeflow schedules delete "
                                     f"{r.recurring_run_id}")
                token = page.next_page_token
                if not token:
                    break
        for run in self._all_runs():
            row = RunState.of(run)
            if row.pipeline_version_id in version_ids and not row.finished:
                users.append(f"run {row.name} ({row.id}, {row.state}): wait for it or "
                             f"recsys kubeflow terminate {row.id}")
        return users

    def delete_pipeline(self, pipeline_name: str, version_name: Optional[str] = None
                        ) -> list[str]:
        """Deletes one version, or the pipeline with all its versions; returns their ids.

        Refused while a recurring run starts one of them or an unfinished run uses one
        (finished runs keep their own copy of the spec).
        """
        pipeline_id = self.pipeline_id(pipeline_name)
        versions = self._versions(pipeline_id)
        if version_name is not None:
            versions = [v for v in versions if version_name in (
                v.display_name, v.pipeline_version_id)]
            if not versions:
                raise KubeflowError(f"pipeline {pipeline_name!r} has no version "
                                    f"{version_name!r}")
        ids = [v.pipeline_version_id for v in versions]
        users = self._users(pipeline_id, set(ids))
        what = f"version {version_name!r} of " if version_name else ""
        if users:
            raise KubeflowError(f"{what}pipeline {pipeline_name!r} is still in use; nothing "
                                "was deleted. First:\n  " + "\n  ".join(users))
        with api_errors(self.connection):
            for version_id in ids:
                self.client.delete_pipeline_version(pipeline_id, version_id)
            if version_name is None:
                self.client.delete_pipeline(pipeline_id)
        return ids


_RUN_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "CANCELING", "CANCELED",
               "PAUSED")
