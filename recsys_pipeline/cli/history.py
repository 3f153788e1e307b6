"""``recsys runs``, ``recsys report`` and ``recsys lineage``: what ML Metadata recorded."""

from __future__ import annotations

import argparse

from recsys_pipeline.cli.common import load_config, quiet_tf_logs, run_options
from recsys_pipeline.pipeline import nodes


def register(sub) -> None:
    runs = sub.add_parser("runs", parents=run_options(),
                          help="list the pipeline runs recorded in ML Metadata")
    runs.set_defaults(func=_cmd_runs)
    rep = sub.add_parser("report", parents=run_options(),
                         help="write a self-contained HTML report of a run")
    rep.add_argument("--run", help="run id (default: the newest; recsys runs lists them)")
    rep.set_defaults(func=_cmd_report)
    lin = sub.add_parser("lineage", parents=run_options(),
                         help="data, Transform, Trainer and evaluation behind a pushed version")
    lin.add_argument("--version", required=True, type=int, help="pushed version number")
    lin.add_argument("--model", help=", ".join(nodes.MODEL_NAMES + nodes.OPTIONAL_MODEL_NAMES))
    lin.set_defaults(func=_cmd_lineage)


def _cmd_runs(args: argparse.Namespace) -> int:
    from recsys_pipeline.history import run_rows
    from recsys_pipeline.tables import format_runs

    quiet_tf_logs()
    print(format_runs(run_rows(load_config(args))))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from recsys_pipeline.report import write_report

    quiet_tf_logs()
    path = write_report(load_config(args), args.run)
    print(f"Report: {path}")
    return 0


def _cmd_lineage(args: argparse.Namespace) -> int:
    from recsys_pipeline.history import lineage

    quiet_tf_logs()
    print(lineage(load_config(args), args.version, args.model))
    return 0
