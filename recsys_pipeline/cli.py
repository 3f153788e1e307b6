"""The ``recsys`` command line.

    recsys run [--config FILE] [--data-dir DIR] [--output-dir DIR] [--verbose]
    recsys recommend --user-id ID [--k 10] [--output-dir DIR] [--config FILE]
    recsys config [--config FILE]       print the effective configuration, documented
    recsys runs [--output-dir DIR]      list the runs recorded in ML Metadata
    recsys report [--output-dir DIR] [--run ID]   write the HTML report of a run
    recsys lineage --version V [--model NAME] [--output-dir DIR]
                                        what is behind a pushed version
    recsys rollback --model NAME --to VERSION [--output-dir DIR] [--config FILE]
                                        serve an earlier pushed version again
    recsys kubeflow compile|run-local|upload|run|schedule|schedules|disable ...
                                        compile for and schedule on Kubeflow Pipelines

Errors the user can act on are printed as one message with a non-zero exit; the full log of
every run is kept under ``<output-dir>/logs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import time
from typing import Optional, Sequence

from recsys_pipeline.errors import RecsysError, find_recsys_error


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner)")
    run.add_argument("--config", help="TOML or YAML config file (see `recsys config`)")
    run.add_argument("--data-dir", help="directory holding a MovieLens dataset "
                     "(default: $RECSYS_DATA_DIR, then the cache, then download)")
    run.add_argument("--output-dir", help="root of all outputs (default: ./outputs)")
    run.add_argument("--verbose", "-v", action="store_true", help="show TFX/Beam logs")

    rec = sub.add_parser("recommend", help="recommend movies from the pushed models")
    rec.add_argument("--user-id", required=True, help="user id as in the dataset, e.g. 42")
    rec.add_argument("--k", type=int, default=10, help="number of movies (default 10)")
    rec.add_argument("--timestamp", type=int,
                     help="request time in Unix seconds (default: the latest training time)")
    rec.add_argument("--output-dir", help="output directory of the run (default: ./outputs)")
    rec.add_argument("--config", help="config file (for serving.base_dir)")

    cfg = sub.add_parser("config", help="print the effective configuration as documented TOML")
    cfg.add_argument("--config", help="TOML or YAML config file to start from")
    runs = sub.add_parser("runs", help="list the pipeline runs recorded in ML Metadata")
    runs.add_argument("--output-dir", help="output directory of the runs (default: ./outputs)")
    runs.add_argument("--config", help="config file (pipeline_name)")
    rep = sub.add_parser("report", help="write a self-contained HTML report of a run")
    rep.add_argument("--output-dir", help="output directory of the runs (default: ./outputs)")
    rep.add_argument("--run", help="run id (default: the newest; recsys runs lists them)")
    rep.add_argument("--config", help="config file (pipeline_name, bounds)")
    lin = sub.add_parser("lineage", help="data, Transform, Trainer and evaluation behind a "
                         "pushed version")
    lin.add_argument("--version", required=True, type=int, help="pushed version number")
    lin.add_argument("--model", help="retrieval, retrieval_brute_force, ranking or sequential")
    lin.add_argument("--output-dir", help="output directory of the runs (default: ./outputs)")
    lin.add_argument("--config", help="config file (pipeline_name)")
    rb = sub.add_parser("rollback", help="serve an earlier pushed version again (as the newest)")
    rb.add_argument("--model", required=True,
                    help="retrieval, retrieval_brute_force, ranking or sequential")
    rb.add_argument("--to", required=True, type=int, help="the version to serve again")
    rb.add_argument("--output-dir", help="output directory of the runs (default: ./outputs)")
    rb.add_argument("--config", help="config file (for serving.base_dir)")
    syn = sub.add_parser("synth", help="write a synthetic MovieLens-shaped dataset "
                         "(GroupLens CSV layout) for scale tests")
    syn.add_argument("--ratings", required=True, type=int, help="number of ratings")
    syn.add_argument("--out", required=True, help="directory for ratings.csv and movies.csv")
    syn.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    _add_kubeflow_parser(sub)
    return parser


def _add_kubeflow_parser(sub) -> None:
    kf = sub.add_parser("kubeflow", help="compile for, upload to and schedule on Kubeflow "
                        "Pipelines 2.x (or Vertex AI)")
    kfsub = kf.add_subparsers(dest="kubeflow_command", required=True)

    def with_config(p):
        p.add_argument("--config", help="TOML or YAML config file ([kubeflow] section)")
        return p

    def with_connection(p):
        with_config(p)
        p.add_argument("--host", help="KFP API endpoint (default: $KFP_HOST, kubeflow.host)")
        p.add_argument("--namespace", help="namespace (default: $KFP_NAMESPACE, "
                       "kubeflow.namespace)")
        p.add_argument("--token", help="bearer token (default: $KFP_TOKEN)")
        return p

    def with_params(p):
        p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="run-time parameter, repeatable: data_dir, retrieval_epochs, "
                       "ranking_epochs, min_top_k_accuracy, max_rmse")
        return p

    c = with_config(kfsub.add_parser("compile", help="compile the DAG with TFX's Kubeflow V2 "
                                     "runner"))
    c.add_argument("--output", help="file to write (default: pipeline.yaml for kfp, "
                   "pipeline.json for vertex)")
    c.add_argument("--target", choices=("kfp", "vertex"), help="default: kubeflow.target")
    c.add_argument("--image", help="container image (default: kubeflow.image)")
    c.add_argument("--pipeline-root", help="artifact root (default: kubeflow.pipeline_root)")

    rl = with_params(kfsub.add_parser(
        "run-local", help="execute a compiled PipelineSpec here, task by task, as KFP would"))
    rl.add_argument("package", help="compiled pipeline (recsys kubeflow compile)")
    rl.add_argument("--pipeline-root", help="local artifact root (default: the spec's)")

    up = with_connection(kfsub.add_parser("upload", help="upload a compiled pipeline version"))
    up.add_argument("package", help="compiled pipeline (recsys kubeflow compile)")
    up.add_argument("--name", help="pipeline name (default: pipeline_name)")
    up.add_argument("--version", help="version name (default: name and UTC time)")
    up.add_argument("--description", default="", help="version description")

    run = with_params(with_connection(kfsub.add_parser("run", help="start one run")))
    run.add_argument("--name", help="pipeline name (default: pipeline_name)")
    run.add_argument("--version-id", help="pipeline version (default: the newest)")

    sch = with_params(with_connection(kfsub.add_parser(
        "schedule", help="create a recurring run (max concurrency 1, no catch-up)")))
    sch.add_argument("--cron", required=True, help="6-field cron: second minute hour "
                     "day-of-month month day-of-week, e.g. '0 0 3 * * *' (5 fields: second 0)")
    sch.add_argument("--name", default=None, help="recurring run name (default: "
                     "<pipeline>-recurring)")
    sch.add_argument("--pipeline", help="pipeline name (default: pipeline_name)")
    sch.add_argument("--version-id", help="pipeline version (default: the newest)")

    ls = with_connection(kfsub.add_parser("schedules", help="list recurring runs"))
    ls.add_argument("--experiment", help="only this experiment's")
    dis = with_connection(kfsub.add_parser("disable", help="disable a recurring run"))
    dis.add_argument("recurring_run_id")


def _load_config(args: argparse.Namespace):
    from recsys_pipeline.pipeline.config import PipelineConfig, load_config

    config = load_config(args.config) if args.config else PipelineConfig()
    if getattr(args, "output_dir", None):
        config = dataclasses.replace(config, output_dir=args.output_dir)
    return config.validate()


class _QuietFilter(logging.Filter):
    """On the console: our warnings, everyone's errors. Everything goes to the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("recsys_pipeline"):
            return record.levelno >= logging.WARNING
        return record.levelno >= logging.ERROR


def _console_stream():
    """A duplicate of the terminal's stderr: _native_stderr_to may point fd 2 at the log."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    except OSError:  # stderr is not a file (e.g. captured by a test): nothing to protect
        return sys.stderr


def _setup_logging(output_dir: str, verbose: bool) -> str:
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(_console_stream())
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not verbose:
        console.addFilter(_QuietFilter())
    root.addHandler(console)
    log_dir = os.path.join(output_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    log_path = os.path.join(log_dir, time.strftime("run-%Y%m%d-%H%M%S.log"))
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(file_handler)
    return log_path


@contextlib.contextmanager
def _native_stderr_to(log_path: str, enabled: bool):
    """Sends what C++ libraries write to fd 2 (ScaNN's and XLA's own logs) to the log file.

    Without --verbose the console shows progress and errors only; our console handler writes
    to a duplicate of the original stderr, so it is unaffected.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _cmd_run(args: argparse.Namespace) -> int:
    from recsys_pipeline.local_runner import check_output_dir, run_lock

    config = _load_config(args)
    check_output_dir(config.output_dir)
    with run_lock(config.output_dir):
        return _run_locked(args, config)


def _run_locked(args: argparse.Namespace, config) -> int:
    from recsys_pipeline.data.download import resolve_data_dir
    from recsys_pipeline.local_runner import format_summary, run_pipeline

    log_path = _setup_logging(config.output_dir, args.verbose)
    data_dir, origin = resolve_data_dir(
        config.data.dataset, args.data_dir, os.environ, config.data.data_dir,
        config.data.cache_dir, config.data.download_base_url)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=data_dir))
    print(f"recsys run: data {data_dir} (from {origin}); outputs under {config.output_dir}",
          flush=True)
    try:
        with _native_stderr_to(log_path, enabled=not args.verbose):
            summary = run_pipeline(config)
    except RecsysError:
        raise
    except Exception as e:
        inner = find_recsys_error(e)
        if inner is not None:
            raise inner from None
        print(f"error: the pipeline failed: {type(e).__name__}: {e}\nfull log: {log_path}",
              file=sys.stderr)
        return 1
    print(format_summary(summary, config))
    print(f"Full log: {log_path}")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    from recsys_pipeline.errors import ConfigError

    config = _load_config(args)
    user_id = args.user_id.strip()
    if not user_id or len(user_id) > 64:
        raise ConfigError("--user-id must be 1 to 64 characters")
    if args.k < 1:
        raise ConfigError(f"--k must be at least 1 (got {args.k})")
    from recsys_pipeline.trainer.serving import Recommender

    result = Recommender(config.serving_dir).recommend(user_id, args.k, args.timestamp)
    for name, path in sorted(result.versions.items()):
        print(f"{name}: {path}")
    if not result.known_user:
        print(f"User {user_id!r} is not in the training data: showing the most-rated movies "
              "instead (retrieval has nothing personal to go on).")
    print(f"{'#':>3}  {'movie_id':>8}  {'retrieval':>9}  {'rating':>6}  title")
    for i, r in enumerate(result.items, 1):
        score = "-" if r.retrieval_score is None else f"{r.retrieval_score:.3f}"
        print(f"{i:>3}  {r.movie_id:>8}  {score:>9}  {r.predicted_rating:>6.2f}  {r.title}")
    return 0


def _parse_params(pairs: Sequence[str]) -> dict:
    """--param NAME=VALUE pairs, typed as the pipeline declares them."""
    from recsys_pipeline.errors import ConfigError
    from recsys_pipeline.pipeline.pipeline import RUNTIME_PARAMETERS

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


def _cmd_kubeflow(args: argparse.Namespace) -> int:
    config = _load_config(args)
    command = args.kubeflow_command
    if command == "compile":
        from recsys_pipeline.kubeflow.compile import compile_pipeline

        kf = dataclasses.replace(
            config.kubeflow, **{k: v for k, v in (("target", args.target), ("image", args.image),
                                                  ("pipeline_root", args.pipeline_root)) if v})
        config = dataclasses.replace(config, kubeflow=kf).validate()
        output = args.output or ("pipeline.json" if kf.target == "vertex" else "pipeline.yaml")
        compile_pipeline(config, output)
        kind = "PipelineJob for Vertex AI" if kf.target == "vertex" else "PipelineSpec for KFP 2.x"
        print(f"Wrote {output} ({kind}, image {kf.image}, pipeline root {kf.pipeline_root})")
        return 0
    if command == "run-local":
        from recsys_pipeline.kubeflow.compile import load_package
        from recsys_pipeline.kubeflow.launcher import run_spec

        spec, _ = load_package(args.package)
        results = run_spec(spec, args.pipeline_root, _parse_params(args.param))
        for r in results:
            print(f"  {r.name:<22} {r.seconds:6.0f}s  {os.path.dirname(r.log_path)}")
        return 0
    from recsys_pipeline.kubeflow.client import Connection, Pipelines

    params = _parse_params(getattr(args, "param", []))
    connection = Connection.resolve(args.host, args.namespace, args.token, os.environ,
                                    config.kubeflow)
    kfp = Pipelines(connection)
    kf = config.kubeflow
    if command == "upload":
        pipeline_id, version_id = kfp.upload(args.package, args.name or config.pipeline_name,
                                             args.version, args.description)
        print(f"Uploaded: pipeline {pipeline_id}, version {version_id}")
    elif command == "run":
        run_id = kfp.run(args.name or config.pipeline_name, kf.experiment, args.version_id,
                         params, service_account=kf.service_account)
        print(f"Started run {run_id}")
    elif command == "schedule":
        pipeline = args.pipeline or config.pipeline_name
        recurring_id = kfp.schedule(args.name or f"{pipeline}-recurring", args.cron, pipeline,
                                    kf.experiment, args.version_id, params,
                                    service_account=kf.service_account)
        print(f"Created recurring run {recurring_id} (max concurrency 1, no catch-up)")
    elif command == "schedules":
        rows = kfp.schedules(args.experiment)
        print(f"{'id':<40}  {'mode':<8}  {'cron':<16}  name")
        for r in rows:
            print(f"{r['id']:<40}  {r['mode']:<8}  {r['cron']:<16}  {r['name']}")
    elif command == "disable":
        kfp.disable(args.recurring_run_id)
        print(f"Disabled recurring run {args.recurring_run_id}")
    return 0


def _quiet_tf_logs() -> None:
    # TFMA's readers log TensorFlow deprecation notices through absl: noise for a listing.
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _cmd_runs(args: argparse.Namespace) -> int:
    from recsys_pipeline.history import format_runs, run_rows

    _quiet_tf_logs()
    print(format_runs(run_rows(_load_config(args))))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from recsys_pipeline.report import write_report

    _quiet_tf_logs()
    path = write_report(_load_config(args), args.run)
    print(f"Report: {path}")
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from recsys_pipeline.history import lineage

    _quiet_tf_logs()
    print(lineage(_load_config(args), args.version, args.model))
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from recsys_pipeline.rollback import rollback

    config = _load_config(args)
    version, path = rollback(config.serving_dir, args.model, args.to)
    print(f"{args.model}: version {version} ({path}) now serves version {args.to}'s model; "
          f"TF Serving picks it up at its next poll. Recorded in "
          f"{os.path.join(config.serving_dir, args.model, 'rollbacks.jsonl')}.")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from recsys_pipeline.data import synthetic
    from recsys_pipeline.errors import ConfigError

    if args.ratings < synthetic.MIN_RATINGS_PER_USER:
        raise ConfigError(f"--ratings must be at least {synthetic.MIN_RATINGS_PER_USER}")
    step = max(1, args.ratings // 10)
    reported = [0]

    def progress(written: int, total: int) -> None:
        if written - reported[0] >= step or written == total:
            reported[0] = written
            print(f"  {written:,} / {total:,} ratings", flush=True)

    shape = synthetic.generate(args.out, args.ratings, seed=args.seed, progress=progress)
    print(f"Wrote {shape.num_ratings:,} ratings by {shape.num_users:,} users of "
          f"{shape.num_movies:,} movies to {args.out} (ratings.csv, movies.csv). "
          f"Run it: recsys run --data-dir {args.out}")
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    from recsys_pipeline.pipeline.config import render_toml

    print(render_toml(_load_config(args)), end="")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``recsys`` console script."""
    args = _build_parser().parse_args(argv)
    if not getattr(args, "verbose", False):
        # Before TensorFlow loads: its C++ log (e.g. the CUDA probe failing on CPU-only
        # machines) is noise on the console; --verbose shows it.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return {"run": _cmd_run, "recommend": _cmd_recommend, "config": _cmd_config,
                "rollback": _cmd_rollback, "runs": _cmd_runs, "lineage": _cmd_lineage,
                "report": _cmd_report, "synth": _cmd_synth,
                "kubeflow": _cmd_kubeflow}[args.command](args)
    except RecsysError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
