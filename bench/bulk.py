"""Bulk benchmark: every user's top k from the served recommender, as ``recsys bulk`` writes it.

    .venv/bin/python bench/bulk.py [--output-dir outputs] [--k 10] [--repeats 3]

From the served recommender of ``--output-dir`` (``recsys run`` trains and pushes one first
if there is none), each repeat writes every known user's top ``k`` as Parquet twice: with
``serving.bulk.write`` in this process (the Beam pipeline alone: the servable loaded in its
workers, the requests, the Parquet file and the coverage count), and as a user runs it,
``recsys bulk`` in a child process (its wall time, interpreter and TensorFlow start
included). Prints one markdown table: users, rows, catalogue coverage, and both times.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def served(output_dir: str) -> str:
    """The served recommender's version directory, trained and pushed first if missing."""
    from recsys_pipeline.errors import OutputError
    from recsys_pipeline.local_runner import run_first
    from recsys_pipeline.pipeline.config import PipelineConfig
    from recsys_pipeline.serving.recommend import served_recommender

    config = PipelineConfig(output_dir=output_dir)
    try:
        return served_recommender(config.serving_dir)
    except OutputError:
        run_first(output_dir)
        return served_recommender(config.serving_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="outputs",
                        help="output directory of a `recsys run` (trained if empty)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import apache_beam as beam

    import recsys_pipeline  # noqa: F401  (Keras 2 before TensorFlow loads)
    from recsys_pipeline.local_runner import recsys_command
    from recsys_pipeline.pipeline.config import PipelineConfig
    from recsys_pipeline.serving import bulk

    config = PipelineConfig()
    model_dir = served(os.path.abspath(args.output_dir))
    log(f"recommender {model_dir}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        for repeat in range(1, args.repeats + 1):
            report = bulk.write(model_dir, os.path.join(tmp, f"in-process-{repeat}.parquet"),
                                args.k, config.bulk.batch_size,
                                beam.Pipeline(argv=list(config.beam.pipeline_args)))
            started = time.monotonic()
            subprocess.run(recsys_command(
                "bulk", "--output-dir", os.path.abspath(args.output_dir), "--output",
                os.path.join(tmp, f"cli-{repeat}.parquet"), "--k", str(args.k)),
                check=True, stdout=sys.stderr)
            cli = time.monotonic() - started
            log(f"repeat {repeat}: {report.seconds:.1f}s in process, {cli:.1f}s recsys bulk")
            rows.append((repeat, report, cli))
    print(f"Bulk benchmark: every user's top {args.k} from {model_dir} (batches of "
          f"{config.bulk.batch_size} users; Beam args {' '.join(config.beam.pipeline_args)})\n")
    print("| repeat | users | rows | catalogue coverage | Beam pipeline s | recsys bulk s |")
    print("|---|---|---|---|---|---|")
    for repeat, report, cli in rows:
        print(f"| {repeat} | {report.users} | {report.rows} | {report.coverage:.1%} "
              f"({report.covered} of {report.catalogue_size}) | {report.seconds:.1f} | "
              f"{cli:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
