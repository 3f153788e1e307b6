"""``recsys kubeflow ...``: compile for, upload to, run, follow and schedule on Kubeflow
Pipelines 2.x (or Vertex AI), and run a compiled spec here task by task as KFP would.

``wait`` exits 0 when the run succeeded, 1 when it failed or was canceled, 3 when it timed
out, 4 when KFP skipped it (nothing ran; 2, as everywhere, is an error before or instead of
an answer)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any, Sequence

from recsys_pipeline.cli.common import config_option, load_config


def _connection_options(nested: bool = False) -> argparse.ArgumentParser:
    """--config, --host, --namespace, --token.

    ``nested``: for an action under a command that has them too, so that either place works
    (an option left out of the action must not reset the command's).
    """
    parent = argparse.ArgumentParser(add_help=False)
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if nested else {}
    parent.add_argument("--config", help="TOML or YAML config file ([kubeflow] section)",
                        **unset)
    parent.add_argument("--host", help="KFP API endpoint (default: $KFP_HOST, kubeflow.host)",
                        **unset)
    parent.add_argument("--namespace", help="namespace (default: $KFP_NAMESPACE, "
                        "kubeflow.namespace)", **unset)
    parent.add_argument("--token", help="bearer token (default: $KFP_TOKEN)", **unset)
    return parent


def _param_options() -> argparse.ArgumentParser:
    from recsys_pipeline.pipeline.config import RUNTIME_PARAMETERS

    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="run-time parameter, repeatable: " + ", ".join(RUNTIME_PARAMETERS))
    return parent


def register(sub) -> None:
    kf = sub.add_parser("kubeflow", help="compile for, upload to and schedule on Kubeflow "
                        "Pipelines 2.x (or Vertex AI)")
    kfsub = kf.add_subparsers(dest="kubeflow_command", required=True, metavar="COMMAND")
    config = config_option("TOML or YAML config file ([kubeflow] section)")
    connected = [_connection_options()]
    params = _param_options()

    c = kfsub.add_parser("compile", parents=[config],
                         help="compile the DAG with TFX's Kubeflow V2 runner")
    c.add_argument("--output", help="file to write (default: pipeline.yaml for kfp, "
                   "pipeline.json for vertex)")
    c.add_argument("--target", choices=("kfp", "vertex"), help="default: kubeflow.target")
    c.add_argument("--image", help="container image (default: kubeflow.image)")
    c.add_argument("--pipeline-root", help="artifact root (default: kubeflow.pipeline_root)")
    c.set_defaults(func=_compile)

    rl = kfsub.add_parser("run-local", parents=[config, params],
                          help="execute a compiled PipelineSpec here, task by task, as KFP would")
    rl.add_argument("package", help="compiled pipeline (recsys kubeflow compile)")
    rl.add_argument("--pipeline-root", help="local artifact root (default: the spec's)")
    rl.add_argument("--driver", choices=("oss", "vertex"), default="oss",
                    help="send each step what this orchestrator's driver sends: open-source "
                    "KFP 2.x (inputs without their type, KFP's executor-logs output; the "
                    "default) or Vertex AI (the spec's own types)")
    rl.add_argument("--until", metavar="TASK",
                    help="run only TASK and the tasks it waits for")
    rl.set_defaults(func=_run_local)

    up = kfsub.add_parser("upload", parents=connected, help="upload a compiled pipeline version")
    up.add_argument("package", help="compiled pipeline (recsys kubeflow compile)")
    up.add_argument("--name", help="pipeline name (default: pipeline_name)")
    up.add_argument("--version", help="version name (default: name and UTC time)")
    up.add_argument("--description", default="", help="version description")
    up.set_defaults(func=_upload)

    run = kfsub.add_parser("run", parents=[*connected, params], help="start one run (of an "
                           "uploaded pipeline on KFP; of a compiled PipelineJob on Vertex AI)")
    run.add_argument("--name", help="pipeline name (default: pipeline_name)")
    run.add_argument("--version-id", help="pipeline version (default: the newest)")
    run.add_argument("--target", choices=("kfp", "vertex"), default="kfp",
                     help="kfp (default) or vertex: submit --package to Vertex AI Pipelines "
                     "(needs google-cloud-aiplatform and Google Cloud credentials)")
    run.add_argument("--package", default="pipeline.json",
                     help="vertex: the compiled PipelineJob (default: pipeline.json)")
    run.add_argument("--project", help="vertex: Google Cloud project")
    run.add_argument("--region", help="vertex: region, e.g. europe-west4")
    run.add_argument("--api-endpoint", help="vertex: API endpoint (default: the region's)")
    run.add_argument("--pipeline-root", help="the run's artifact root, sent in its runtime "
                     "config (default: kubeflow.pipeline_root; vertex: the job's own)")
    run.set_defaults(func=_run)

    sch = kfsub.add_parser("schedule", parents=[*connected, params],
                           help="create a recurring run (max concurrency 1, no catch-up)")
    sch.add_argument("--cron", required=True, help="6-field cron: second minute hour "
                     "day-of-month month day-of-week, e.g. '0 0 3 * * *' (5 fields: second 0)")
    sch.add_argument("--name", default=None, help="recurring run name (default: "
                     "<pipeline>-recurring)")
    sch.add_argument("--pipeline", help="pipeline name (default: pipeline_name)")
    sch.add_argument("--version-id", help="pipeline version (default: the newest)")
    sch.add_argument("--pipeline-root", help="every run's artifact root, sent in the runtime "
                     "config (default: kubeflow.pipeline_root)")
    sch.set_defaults(func=_schedule)

    ls = kfsub.add_parser("schedules", parents=connected,
                          help="list recurring runs; enable, disable or delete one")
    ls.add_argument("--experiment", help="only this experiment's (listing)")
    ls.set_defaults(func=_schedules)
    lssub = ls.add_subparsers(dest="schedules_command", metavar="ACTION")
    for action in ("enable", "disable", "delete"):
        a = lssub.add_parser(action, parents=[_connection_options(nested=True)],
                             help=f"{action} a recurring run")
        a.add_argument("recurring_run_id")
        a.set_defaults(func=_change_schedule)

    runs = kfsub.add_parser("runs", parents=connected, help="list the newest runs")
    runs.add_argument("--status", type=str.upper, help="only runs in this state (e.g. FAILED, "
                      "RUNNING, SUCCEEDED)")
    runs.add_argument("--experiment", help="only this experiment's")
    runs.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    runs.set_defaults(func=_runs)

    st = kfsub.add_parser("status", parents=connected,
                          help="a run's state, each task's, and a failed task's error")
    st.add_argument("run_id")
    st.set_defaults(func=_status)

    wt = kfsub.add_parser("wait", parents=connected, help="wait for a run to finish; exit 0 "
                          "succeeded, 1 failed or canceled, 3 timed out, 4 skipped")
    wt.add_argument("run_id")
    wt.add_argument("--timeout", type=float, default=3600.0,
                    help="seconds to wait (default 3600)")
    wt.add_argument("--poll", type=float, default=10.0, help="seconds between checks")
    wt.set_defaults(func=_wait)

    tm = kfsub.add_parser("terminate", parents=connected, help="stop a run that has not "
                          "finished")
    tm.add_argument("run_id")
    tm.set_defaults(func=_terminate)

    pl = kfsub.add_parser("pipelines", help="manage uploaded pipelines")
    plsub = pl.add_subparsers(dest="pipelines_command", required=True, metavar="ACTION")
    pd = plsub.add_parser("delete", parents=connected, help="delete a pipeline (all its "
                          "versions) or one version; refused while schedules or unfinished "
                          "runs use it")
    pd.add_argument("name", help="pipeline name")
    pd.add_argument("--version", help="only this version (name or id)")
    pd.set_defaults(func=_delete_pipeline)


def parse_params(pairs: Sequence[str]) -> dict:
    """--param NAME=VALUE pairs, typed as the pipeline declares them."""
    from recsys_pipeline.errors import ConfigError
    from recsys_pipeline.pipeline.config import RUNTIME_PARAMETERS

    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--param {pair!r}: expected NAME=VALUE")
        if name not in RUNTIME_PARAMETERS:
            raise ConfigError(f"unknown run-time parameter {name!r}; the pipeline has: "
                              f"{', '.join(RUNTIME_PARAMETERS)}")
        kind = RUNTIME_PARAMETERS[name]
        try:
            params[name] = kind(value)
        except ValueError:
            raise ConfigError(f"--param {name}: {value!r} is not {kind.__name__}") from None
    return params


def _compile(args: argparse.Namespace) -> int:
    from recsys_pipeline.kubeflow.compile import compile_pipeline

    config = load_config(args)
    kf = dataclasses.replace(
        config.kubeflow, **{k: v for k, v in (("target", args.target), ("image", args.image),
                                              ("pipeline_root", args.pipeline_root)) if v})
    config = dataclasses.replace(config, kubeflow=kf).validate()
    output = args.output or ("pipeline.json" if kf.target == "vertex" else "pipeline.yaml")
    compile_pipeline(config, output)
    kind = "PipelineJob for Vertex AI" if kf.target == "vertex" else "PipelineSpec for KFP 2.x"
    print(f"Wrote {output} ({kind}, image {kf.image}, pipeline root {kf.pipeline_root})")
    return 0


def _run_local(args: argparse.Namespace) -> int:
    from recsys_pipeline.kubeflow.compile import check_spec_format, load_package
    from recsys_pipeline.kubeflow.launcher import run_spec

    load_config(args)  # a bad --config fails here, before any task runs
    spec, _ = load_package(args.package)
    check_spec_format(spec, args.package)
    for r in run_spec(spec, args.pipeline_root, parse_params(args.param), driver=args.driver,
                      until=args.until):
        print(f"  {r.name:<22} {r.seconds:6.0f}s  {os.path.dirname(r.log_path)}")
    return 0


def _client(args: argparse.Namespace):
    """(config, KFP client) for the commands that talk to a KFP backend."""
    from recsys_pipeline.kubeflow.client import Connection, Pipelines

    config = load_config(args)
    connection = Connection.resolve(args.host, args.namespace, args.token, os.environ,
                                    config.kubeflow)
    return config, Pipelines(connection)


def _upload(args: argparse.Namespace) -> int:
    from recsys_pipeline.kubeflow.compile import check_spec_format, load_package

    check_spec_format(load_package(args.package)[0], args.package)
    config, kfp = _client(args)
    pipeline_id, version_id = kfp.upload(args.package, args.name or config.pipeline_name,
                                         args.version, args.description)
    print(f"Uploaded: pipeline {pipeline_id}, version {version_id}")
    return 0


def _root(args: argparse.Namespace, config) -> str:
    """The pipeline root a run is sent with: --pipeline-root, else kubeflow.pipeline_root."""
    from recsys_pipeline.kubeflow.client import run_pipeline_root

    if args.pipeline_root:
        return run_pipeline_root(args.pipeline_root, "--pipeline-root")
    return run_pipeline_root(config.kubeflow.pipeline_root)


def _run(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    if args.target == "vertex":
        return _run_vertex(args, params)
    config, kfp = _client(args)
    kf = config.kubeflow
    run_id = kfp.run(args.name or config.pipeline_name, kf.experiment, args.version_id,
                     params, pipeline_root=_root(args, config),
                     service_account=kf.service_account)
    print(f"Started run {run_id}")
    return 0


def _run_vertex(args: argparse.Namespace, params: dict) -> int:
    from recsys_pipeline.kubeflow.client import run_pipeline_root
    from recsys_pipeline.kubeflow.vertex import VertexTarget, submit

    config = load_config(args)
    target = VertexTarget(args.project or "", args.region or "", args.api_endpoint)
    root = run_pipeline_root(args.pipeline_root, "--pipeline-root") if args.pipeline_root \
        else None
    name = submit(args.package, target, params, pipeline_root=root,
                  service_account=config.kubeflow.service_account, display_name=args.name)
    print(f"Started Vertex AI pipeline job {name}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    config, kfp = _client(args)
    kf = config.kubeflow
    pipeline = args.pipeline or config.pipeline_name
    recurring_id = kfp.schedule(args.name or f"{pipeline}-recurring", args.cron, pipeline,
                                kf.experiment, args.version_id, params,
                                service_account=kf.service_account,
                                pipeline_root=_root(args, config))
    print(f"Created recurring run {recurring_id} (max concurrency 1, no catch-up)")
    return 0


def _schedules(args: argparse.Namespace) -> int:
    _, kfp = _client(args)
    print(f"{'id':<40}  {'mode':<8}  {'cron':<16}  name")
    for r in kfp.schedules(args.experiment):
        print(f"{r['id']:<40}  {r['mode']:<8}  {r['cron']:<16}  {r['name']}")
    return 0


def _change_schedule(args: argparse.Namespace) -> int:
    _, kfp = _client(args)
    action = args.schedules_command
    {"enable": kfp.enable, "disable": kfp.disable,
     "delete": kfp.delete_schedule}[action](args.recurring_run_id)
    print(f"{action.capitalize()}d recurring run {args.recurring_run_id}")
    return 0


def _runs(args: argparse.Namespace) -> int:
    _, kfp = _client(args)
    rows = kfp.runs(args.status, args.experiment, args.limit)
    print(f"{'id':<38}  {'state':<10}  {'created':<19}  {'finished':<19}  name")
    for r in rows:
        print(f"{r.id:<38}  {r.state:<10}  {r.created_at:<19}  {r.finished_at:<19}  {r.name}")
    if not rows:
        print("(no runs" + (f" in state {args.status}" if args.status else "") + ")")
    return 0


def _print_run(run) -> None:
    print(f"run {run.id} ({run.name}): {run.state}"
          + (f", finished {run.finished_at}" if run.finished_at else ""))
    if run.error:
        print(f"  error: {run.error}")
    width = max([len(t.name) for t in run.tasks] + [4])
    for t in run.tasks:
        print(f"  {t.name:<{width}}  {t.state}")
        if t.error:
            print(f"  {'':<{width}}  error: {t.error}")


def _status(args: argparse.Namespace) -> int:
    _, kfp = _client(args)
    _print_run(kfp.run_state(args.run_id))
    return 0


def _wait(args: argparse.Namespace) -> int:
    from recsys_pipeline.kubeflow.client import FAILED_STATES

    _, kfp = _client(args)
    run = kfp.wait(args.run_id, args.timeout, args.poll)
    _print_run(run)
    if run.state == "SKIPPED":  # nothing ran: not the success a script waits for
        return 4
    return 1 if run.state in FAILED_STATES else 0


def _terminate(args: argparse.Namespace) -> int:
    _, kfp = _client(args)
    run = kfp.terminate(args.run_id)
    print(f"Terminating run {run.id} ({run.name}, was {run.state})")
    return 0


def _delete_pipeline(args: argparse.Namespace) -> int:
    _, kfp = _client(args)
    ids = kfp.delete_pipeline(args.name, args.version)
    if args.version:
        print(f"Deleted version {args.version} ({ids[0]}) of pipeline {args.name}")
    else:
        print(f"Deleted pipeline {args.name} and its {len(ids)} version(s)")
    return 0
