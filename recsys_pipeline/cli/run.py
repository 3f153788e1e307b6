"""``recsys run``: the whole pipeline locally, with progress on the console and a full log.

The console shows one line per component start and finish, the summary table and errors; the
run log (``<output-dir>/logs/run-*.log``) has everything, TFX's, Beam's and native libraries'
logs included, and the progress events as JSON lines beside it (``*.events.jsonl``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import time

from recsys_pipeline.cli.common import load_config, run_options
from recsys_pipeline.errors import RecsysError, find_recsys_error


def register(sub) -> None:
    run = sub.add_parser("run", parents=run_options(),
                         help="run the pipeline locally (LocalDagRunner)")
    run.add_argument("--data-dir", help="directory holding a MovieLens dataset "
                     "(default: $RECSYS_DATA_DIR, then the cache, then download)")
    run.add_argument("--verbose", "-v", action="store_true", help="show TFX/Beam logs")
    run.add_argument("--events", help="file to append the progress events to, as JSON lines "
                     "(default: beside the run log)")
    run.add_argument("--span", help="with span-<N> folders in the data directory: the span to "
                     "ingest, latest (default: the oldest span newer than every span ingested "
                     "here, so a backlog goes in time order) or N")
    run.add_argument("--reingest", action="store_true",
                     help="with --span N: ingest a span this output directory already has")
    run.set_defaults(func=_cmd_run)


def events_path(log_path: str) -> str:
    """The progress events' file of a run log."""
    return log_path.removesuffix(".log") + ".events.jsonl"


class _QuietFilter(logging.Filter):
    """On the console: our warnings, everyone's errors -- except an error that is one of ours
    on its way up (Beam logs it with its traceback where a worker raised it, and TFX says
    the execution failed), which the command prints once, as one line. Everything goes to
    the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("recsys_pipeline"):
            return record.levelno >= logging.WARNING
        if record.exc_info and record.exc_info[1] is not None \
                and find_recsys_error(record.exc_info[1]) is not None:
            return False
        return record.levelno >= logging.ERROR


def _console_stream():
    """A duplicate of the terminal's stderr: _native_stderr_to may point fd 2 at the log."""
    try:
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    except OSError:  # stderr is not a file (e.g. captured by a test): nothing to protect
        return sys.stderr


def _setup_logging(output_dir: str, verbose: bool) -> str:
    """Console and file logging for a run; returns the run log's path."""
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


def _choose_span(args: argparse.Namespace, config):
    """(config with data.span set, note) for a spanned data directory; (None, why) when
    there is no new span to run; (config, "") for a plain one."""
    from recsys_pipeline.data import spans
    from recsys_pipeline.errors import DataError
    from recsys_pipeline.metadata import ingested_spans

    data_dir = config.data.data_dir
    found = spans.list_spans(data_dir)
    requested = args.span or (config.data.span if config.data.span is not None else None)
    if not found:
        if requested is not None:
            raise DataError(f"--span {requested}: {data_dir!r} holds no span-<N> folders")
        return config, ""
    ingested = ingested_spans(config)
    span = spans.choose_span(found, requested if requested is not None else "latest",
                             ingested, args.reingest, data_dir, config.output_dir)
    if span is None:
        from recsys_pipeline.metadata import record_no_new_span

        record_no_new_span(config, data_dir, [s.number for s in found])
        listing = ", ".join(str(s.number) for s in found)
        older = spans.passed_over(found, ingested)
        skipped = (f" (span {', '.join(str(s.number) for s in older)}, never ingested, is "
                   f"older than span {max(ingested)}, the newest ingested, and is not taken)"
                   if older else "")
        return None, (f"no new span: {data_dir} holds spans {listing}, none newer than those "
                      f"ingested into {config.output_dir}{skipped}; nothing ran, nothing was "
                      "pushed (recsys run --span N --reingest runs one again); the attempt is "
                      f"recorded in {config.metadata_path}")
    config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                  span=span.number))
    return config, f", span {span.number}"


def _cmd_run(args: argparse.Namespace) -> int:
    from recsys_pipeline.metadata import check_metadata_store
    from recsys_pipeline.rundir import check_events_file, check_names, check_output_dir, run_lock

    config = load_config(args)
    check_output_dir(config.output_dir)
    check_metadata_store(config.metadata_path)
    check_names(config.output_dir, config.metadata_path)
    if args.events:
        check_events_file(args.events)
    with run_lock(config.output_dir):
        return _run_locked(args, config)


def _run_locked(args: argparse.Namespace, config) -> int:
    from recsys_pipeline.data.download import resolve_data_dir
    from recsys_pipeline.local_runner import run_pipeline
    from recsys_pipeline.tables import format_summary

    log_path = _setup_logging(config.output_dir, args.verbose)
    data_dir, origin = resolve_data_dir(
        config.data.dataset, args.data_dir, os.environ, config.data.data_dir,
        config.data.cache_dir, config.data.download_base_url)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, data_dir=data_dir))
    config, span_note = _choose_span(args, config)
    if config is None:
        print(span_note)
        return 0
    print(f"recsys run: data {data_dir}{span_note} (from {origin}); outputs under "
          f"{config.output_dir}", flush=True)
    try:
        with _native_stderr_to(log_path, enabled=not args.verbose):
            summary = run_pipeline(config, events_path=args.events or events_path(log_path))
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
    print(f"Progress events: {args.events or events_path(log_path)}")
    return 0
