"""Local runner: the pipeline from config, run by TFX's LocalDagRunner with an sqlite MLMD store.

It builds the DAG (``create_pipeline``), runs it inside the run's own temp directory with a
progress reporter attached to TFX's log, and returns the run's summary as ML Metadata
recorded it (``metadata.summarize_run``). Everything else a run needs lives elsewhere: the
output directory's lock and temp directories in ``rundir``, progress events in ``progress``,
the tables in ``tables``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Optional, TextIO

from recsys_pipeline import progress
from recsys_pipeline.metadata import RunSummary, check_metadata_store, summarize_run
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.rundir import check_names, check_output_dir, run_temp_dir


def run_pipeline(config: PipelineConfig, stream: Optional[TextIO] = None,
                 events_path: Optional[str] = None) -> RunSummary:
    """Runs the whole pipeline with LocalDagRunner; returns the MLMD summary of the run.

    Progress events are rendered on ``stream`` (default: standard output) and, with
    ``events_path``, appended there as JSON lines.
    """
    from tfx import v1 as tfx

    from recsys_pipeline.pipeline.pipeline import create_pipeline
    from recsys_pipeline.pipeline.target import Target

    check_output_dir(config.output_dir)
    check_metadata_store(config.metadata_path)
    check_names(config.output_dir, config.metadata_path)
    pipeline = create_pipeline(config, Target.local(config))
    node_ids = [c.id for c in pipeline.components]
    events = progress.JsonLinesSink(events_path) if events_path else None
    reporter = progress.ProgressReporter(
        node_ids, [progress.console_sink(stream or sys.stdout), *([events] if events else [])])
    absl_logger = logging.getLogger("absl")
    absl_logger.addHandler(reporter)
    try:
        with run_temp_dir(), reporter:
            tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        absl_logger.removeHandler(reporter)
        if events:
            events.close()
    summary = summarize_run(config, node_ids, reporter.seconds)
    assert summary is not None, "MLMD holds no run of this pipeline after a successful run"
    return summary


def recsys_command(*args: str) -> list[str]:
    """This environment's ``recsys`` console script with ``args``, to run in a new process."""
    return [os.path.join(os.path.dirname(sys.executable), "recsys"), *args]


def run_first(output_dir: str, stream: TextIO = sys.stderr) -> None:
    """``recsys run --output-dir output_dir`` in a new process (for tools that need a run)."""
    print(f"nothing to use under {output_dir}: running `recsys run` first", file=stream,
          flush=True)
    subprocess.run(recsys_command("run", "--output-dir", output_dir), check=True)
