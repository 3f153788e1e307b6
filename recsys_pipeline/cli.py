"""The ``recsys`` command line.

    recsys run [--config FILE] [--data-dir DIR] [--output-dir DIR] [--verbose]
    recsys recommend --user-id ID [--k 10] [--output-dir DIR] [--config FILE]
    recsys config [--config FILE]       print the effective configuration, documented

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
    return parser


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
    from recsys_pipeline.data.download import resolve_data_dir
    from recsys_pipeline.local_runner import check_output_dir, format_summary, run_pipeline

    config = _load_config(args)
    check_output_dir(config.output_dir)
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
        return {"run": _cmd_run, "recommend": _cmd_recommend,
                "config": _cmd_config}[args.command](args)
    except RecsysError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
