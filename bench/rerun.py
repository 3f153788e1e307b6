"""Cached-rerun benchmark: a second `recsys run` with nothing changed, against the first.

    .venv/bin/python bench/rerun.py --data-dir ../shared/data/ml-100k [--output-dir DIR]
                                    [--config C] [--target 0.25]

Runs the whole pipeline twice into one fresh output directory (``--output-dir``, by default
a temporary one), as a user would with `recsys run`, and prints each run's wall time, which
components ran and which TFX answered from its cache, the seconds of every component that
ran in the rerun (with what it did: a gate that kept its earlier verdict, an index or a
recommender kept rather than rebuilt), and the rerun's share of the first run's time against
``--target`` (25% by default). Both runs are in this one script run, on the same machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from recsys_pipeline import metadata
from recsys_pipeline.pipeline.config import PipelineConfig

RECSYS = os.path.join(os.path.dirname(sys.executable), "recsys")


def run(output_dir: str, data_dir: str, config: str | None) -> float:
    """One `recsys run`; its wall seconds (a failed run stops the benchmark)."""
    command = [RECSYS, "run", "--output-dir", output_dir, "--data-dir", data_dir]
    if config:
        command += ["--config", config]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"recsys run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def what_it_did(component: metadata.ComponentResult) -> str:
    kept = [key for key, props in component.properties.items() if props.get("kept_from")]
    return f"kept its earlier {', '.join(kept)}" if kept else ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="the dataset (e.g. ML-100K)")
    parser.add_argument("--output-dir", help="a fresh output directory (default: a temporary "
                        "one, removed afterwards)")
    parser.add_argument("--config", help="a recsys config file")
    parser.add_argument("--target", type=float, default=0.25,
                        help="the rerun's largest share of the first run's time")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recsys-rerun-") as tmp:
        out = args.output_dir or tmp
        if os.path.exists(os.path.join(out, "metadata.sqlite")):
            sys.exit(f"{out} already holds runs: give a fresh --output-dir")
        seconds = [run(out, args.data_dir, args.config) for _ in range(2)]
        config = PipelineConfig()
        config.output_dir = out
        first, rerun = metadata.summarize_runs(config)[-2:]
    print(f"{'run':<14}{'seconds':>9}{'ran':>6}{'cached':>8}")
    for name, summary, wall in (("first", first, seconds[0]), ("rerun", rerun, seconds[1])):
        states = [c.state for c in summary.components]
        print(f"{name:<14}{wall:9.1f}{states.count('ran'):6d}{states.count('cached'):8d}")
    print("\ncomponents that ran in the rerun:")
    for component in rerun.components:
        if component.state == "ran":
            print(f"  {component.node_id:<30}{component.seconds or 0:7.1f}s  "
                  f"{what_it_did(component)}")
    share = seconds[1] / seconds[0]
    verdict = "met" if share <= args.target else "NOT met"
    print(f"\nrerun / first run = {share:.1%} (target <= {args.target:.0%}: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
