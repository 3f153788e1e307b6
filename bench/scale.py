"""Scale benchmark: the whole DAG on synthetic MovieLens-shaped data of growing size.

    .venv/bin/python bench/scale.py [--sizes 100000,1000000,5000000] [--epochs 2]
                                    [--layout csv|interactions] [--format csv|parquet]

For each size it writes a synthetic dataset in the GroupLens CSV layout, or as a declared
shop log (``recsys_pipeline.data.synthetic``), then runs ``recsys run`` on it in a fresh output
directory as a child process, as a user would. While the run goes it reads the runner's
progress events (which component is running, and its wall time) and samples the resident
memory of the run's whole process tree every 0.2 s, so each component gets its wall time
and the peak memory seen while it ran. Prints one table (seconds and peak MiB per component
and size), the total, and the growth exponent log(t2/t1) / log(n2/n1) between consecutive
sizes: 1.0 is linear.

The Trainers run ``--epochs`` epochs (both models) so that the benchmark measures how the
pipeline scales rather than how many epochs the defaults train; every other setting is the
default configuration.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Optional

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tree_rss_mb(root: int) -> float:
    """Resident memory of ``root`` and all its descendants (MiB), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields[21]) * PAGE_KB
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total / 1024


class Sampler(threading.Thread):
    """Samples the process tree's memory; attributes each sample to the current component."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.current: Optional[str] = None
        self.peak: dict[str, float] = {}
        self.overall = 0.0
        self._done = threading.Event()

    def sample(self) -> None:
        mb = tree_rss_mb(self.pid)
        self.overall = max(self.overall, mb)
        if self.current:
            self.peak[self.current] = max(self.peak.get(self.current, 0.0), mb)

    def enter(self, component: Optional[str]) -> None:
        """Marks a component's start or end (None); samples at once, so that a component
        shorter than the interval still gets a reading."""
        self.sample()
        self.current = component
        self.sample()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def stop(self) -> None:
        self._done.set()
        self.join()


def write_config(path: str, epochs: int, declared: str = "") -> None:
    """The benchmark's configuration: ``epochs`` for both Trainers, and the declaration of a
    declared log (the text of the recsys.toml that synth wrote beside it)."""
    with open(path, "w") as f:
        f.write(f"[retrieval]\nepochs = {epochs}\n\n[ranking]\nepochs = {epochs}\n\n{declared}")


def run_pipeline(data_dir: str, output_dir: str, config: str) -> dict:
    """``recsys run`` as a child process; per-component seconds and peak MiB, and totals.

    The run's console goes to this process's stderr as it comes; its progress events (JSON
    lines, ``recsys run --events``) are tailed to attribute memory to the running component.
    """
    from recsys_pipeline import progress
    from recsys_pipeline.local_runner import recsys_command

    os.makedirs(output_dir, exist_ok=True)
    events_path = os.path.join(output_dir, "bench-scale.events.jsonl")
    open(events_path, "w").close()
    started = time.monotonic()
    proc = subprocess.Popen(recsys_command("run", "--data-dir", data_dir, "--output-dir",
                                           output_dir, "--config", config,
                                           "--events", events_path), stdout=sys.stderr)
    sampler = Sampler(proc.pid)
    sampler.start()
    seconds: dict[str, float] = {}
    order: list[str] = []
    with open(events_path, encoding="utf-8") as events:
        partial = ""
        while True:
            running = proc.poll() is None
            # Only whole lines: the run may be midway through writing the last one.
            *lines, partial = (partial + events.read()).split("\n")
            for event in progress.read_events(lines):
                if event.event == progress.STARTED:
                    sampler.enter(event.node_id)
                    order.append(event.node_id)
                elif event.seconds is not None:
                    seconds[event.node_id] = event.seconds
                    sampler.enter(None)
            if not running:
                break
            time.sleep(0.05)
    sampler.stop()
    if proc.returncode != 0:
        raise SystemExit(f"recsys run on {data_dir} failed (exit {proc.returncode}); its "
                         "output is above")
    return {"order": order, "seconds": seconds, "peak_mb": sampler.peak,
            "total_s": time.monotonic() - started, "overall_peak_mb": sampler.overall}


def exponent(n1: int, t1: float, n2: int, t2: float) -> float:
    """Growth exponent between two sizes: 1.0 = linear."""
    return math.log(t2 / t1) / math.log(n2 / n1) if t1 > 0 and t2 > 0 else float("nan")


def table(sizes: list[int], runs: list[dict]) -> str:
    """Markdown: seconds and peak MiB per component and size, growth exponents last."""
    pairs = list(zip(sizes, sizes[1:], strict=False))
    header = ["component"] + [f"{n / 1e6:g}M {unit}" for n in sizes for unit in ("s", "MiB")]
    header += [f"exp {a / 1e6:g}M→{b / 1e6:g}M" for a, b in pairs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(name: str, secs: list[float], mems: list[float]) -> str:
        cells = [name] + [f"{v:.2f}" if i % 2 == 0 else f"{v:,.0f}"
                          for s, m in zip(secs, mems, strict=True) for i, v in enumerate((s, m))]
        cells += [f"{exponent(a, s, b, t):.2f}" for (a, b), s, t in
                  zip(pairs, secs, secs[1:], strict=False)]
        return "| " + " | ".join(cells) + " |"

    for name in runs[-1]["order"]:
        lines.append(row(name, [r["seconds"].get(name, 0.0) for r in runs],
                         [r["peak_mb"].get(name, 0.0) for r in runs]))
    lines.append(row("**whole run**", [r["total_s"] for r in runs],
                     [r["overall_peak_mb"] for r in runs]))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000,5000000",
                        help="comma-separated numbers of ratings")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of both Trainers")
    parser.add_argument("--workdir", default=os.path.join("outputs", "bench-scale"),
                        help="datasets and pipeline outputs go here (replaced per size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layout", choices=("csv", "interactions"), default="csv",
                        help="the data's layout: GroupLens CSV, or a declared shop log "
                        "(recsys synth --layout interactions)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv",
                        help="with --layout interactions: CSV or Parquet files")
    args = parser.parse_args(argv)
    from recsys_pipeline.data import synthetic

    sizes = sorted(int(s) for s in args.sizes.split(","))
    os.makedirs(args.workdir, exist_ok=True)
    config = os.path.join(args.workdir, "bench-scale.toml")
    runs = []
    for n in sizes:
        data_dir = os.path.join(args.workdir, f"data-{n}")
        output_dir = os.path.join(args.workdir, f"run-{n}")
        shutil.rmtree(output_dir, ignore_errors=True)
        started = time.monotonic()
        shape = synthetic.generate(data_dir, n, seed=args.seed, layout=args.layout,
                                   fmt=args.format)
        declared = os.path.join(data_dir, synthetic.DECLARED_CONFIG)
        write_config(config, args.epochs, open(declared).read()
                     if args.layout == "interactions" else "")
        log(f"{n:,} ratings: {shape.num_users:,} users, {shape.num_items:,} items, "
            f"written in {time.monotonic() - started:.1f}s; running the pipeline ...")
        runs.append(run_pipeline(data_dir, output_dir, config))
        log(f"{n:,} ratings: {runs[-1]['total_s']:.0f}s, peak "
            f"{runs[-1]['overall_peak_mb']:,.0f} MiB")
    print(f"Scale benchmark: sizes {', '.join(f'{n:,}' for n in sizes)} ratings "
          f"({args.layout} layout{', ' + args.format if args.layout != 'csv' else ''}), "
          f"{args.epochs} epochs per Trainer; seconds and peak resident MiB (the run's "
          "process tree) per component\n")
    print(table(sizes, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
