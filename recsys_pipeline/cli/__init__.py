"""The ``recsys`` command line: one module per command group, on shared parent parsers.

    recsys run         run the pipeline locally (LocalDagRunner)
    recsys recommend   recommend items from the served recommender
    recsys bulk        every user's top k from the served recommender, as Parquet
    recsys rollback    serve an earlier pushed version again
    recsys promote     move a model's stable label to its canary
    recsys config      print the effective configuration, documented
    recsys runs        list the runs recorded in ML Metadata
    recsys report      write the HTML report of a run
    recsys lineage     what is behind a pushed version
    recsys synth       write a synthetic MovieLens-shaped dataset
    recsys kubeflow    compile for, upload to and schedule on Kubeflow Pipelines

Errors the user can act on are printed as one message with a non-zero exit; the full log of
every run is kept under <output-dir>/logs/.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from recsys_pipeline.cli import config, data, history, kubeflow, run, serving
from recsys_pipeline.errors import RecsysError, find_recsys_error

__all__ = ["build_parser", "find_recsys_error", "main"]

# The command groups, in the order `recsys --help` lists them.
GROUPS = (run, serving, config, history, data, kubeflow)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys", description="TFX + TFRS + ScaNN recommender pipeline.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def commands() -> list[str]:
    """Every top-level subcommand, as ``recsys --help`` lists them."""
    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``recsys`` console script."""
    args = build_parser().parse_args(argv)
    if not getattr(args, "verbose", False):
        # Before TensorFlow loads: its C++ log (e.g. the CUDA probe failing on CPU-only
        # machines) is noise on the console; --verbose shows it.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        return args.func(args)
    except RecsysError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
