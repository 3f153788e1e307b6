"""Replay benchmark: the pipeline run day by day over arriving daily spans, warm start on and off.

    .venv/bin/python bench/replay.py --days 30 [--ratings-per-day 30000] [--window 7]
        [--modes warm,cold] [--config my.toml] [--workdir outputs/bench-replay]

It writes ``--days`` daily spans with ``recsys synth --days`` (drifting popularity, items
released and users joining, a user-taste signal), then for each mode runs ``recsys run
--span N`` once per day, in order, into that mode's own output directory, with
``data.window_spans = --window`` and ``split.kind = "next_span"``: each day's candidate is
trained on the window's older spans and scored, with the served model, on the newest.
"warm" leaves ``warm_start`` on (each Trainer starts from its branch's last blessed model and
trains ``warm_epochs``); "cold" turns it off (``epochs`` from scratch every day).

Per day it prints: ratings in the window, the candidate's and the served model's gated
metrics on the new span (the Evaluators' own numbers), blessed, the pushed retrieval version,
the drift distances, the wall time of each Trainer and of the whole run. Then, graded here on
that day's new span with bench/quality.py's grader (top-100 accuracy, rated items left in,
as the retrieval gate counts it), over the newest catalogue:

* the model served after the day's run (whatever the gates left in service);
* baselines refit each day on the same window's training spans: popularity of the last span
  and EASE;
* new users, whom no model has seen: their share of the day's ratings and the top-100
  accuracy of their fallback, the window's popular items recency-weighted as the export
  weighs them (``retrieval.popular_half_life_days``), against its most-rated items.

The summary checks bench/RESULTS.md's targets: warm Trainers' time against cold, the served
model against EASE and 1.2x last-span popularity averaged over days 8 onwards, pushes worse
than the served model beyond the tolerance (0), and each mode's whole wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from typing import Optional

import numpy as np

# bench/quality.py, beside this script (its directory is sys.path[0] when run as a script):
# the same grader and baselines as the quality benchmark.
import quality

from recsys_pipeline.pipeline import nodes

MODES = ("warm", "cold")
FIRST_AVERAGED_DAY = 8
TOP_K = 100


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Day:
    """One day's run and what was graded on its new span."""

    day: int
    span: int
    ok: bool
    run_s: float
    window_ratings: Optional[int] = None
    window_spans: str = ""
    gated: dict[str, tuple[Optional[float], Optional[float]]] = dataclasses.field(
        default_factory=dict)  # branch -> (candidate, served model) on the new span
    blessed: dict[str, Optional[bool]] = dataclasses.field(default_factory=dict)
    pushed: Optional[int] = None  # the retrieval version this run pushed
    drift: str = ""
    trainer_s: dict[str, Optional[float]] = dataclasses.field(default_factory=dict)
    warm: dict[str, bool] = dataclasses.field(default_factory=dict)  # branch -> warm-started
    graded: dict[str, float] = dataclasses.field(default_factory=dict)  # method -> top-100
    new_user_share: Optional[float] = None


# --- Running the pipeline -------------------------------------------------------------------

def write_config(path: str, base_config, output_dir: str, window: int, warm: bool) -> None:
    from recsys_pipeline.pipeline.config import render_toml

    config = dataclasses.replace(
        base_config, output_dir=output_dir,
        data=dataclasses.replace(base_config.data, window_spans=window),
        split=dataclasses.replace(base_config.split, kind="next_span"),
        retrieval=dataclasses.replace(base_config.retrieval, warm_start=warm),
        ranking=dataclasses.replace(base_config.ranking, warm_start=warm))
    with open(path, "w") as f:
        f.write(render_toml(config))


def run_day(data_dir: str, config_path: str, span: int, log_path: str) -> tuple[bool, float]:
    """``recsys run --span`` in a new process, its output in ``log_path``: (ok, seconds)."""
    from recsys_pipeline.local_runner import recsys_command

    started = time.monotonic()
    with open(log_path, "w") as out:
        result = subprocess.run(recsys_command("run", "--data-dir", data_dir, "--config",
                                               config_path, "--span", str(span)),
                                stdout=out, stderr=subprocess.STDOUT)
    return result.returncode == 0, time.monotonic() - started


def describe_run(day: Day, summary) -> str:
    """Fills ``day`` from the run's ML Metadata; returns its window's artifact folder."""
    from recsys_pipeline.history import gated_values

    window = summary.properties(nodes.SPAN_WINDOW, "window")
    day.window_spans = str(window.get("window_spans", ""))
    day.window_ratings = int(window["window_ratings"]) if "window_ratings" in window else None
    day.drift = str(window.get("drift", ""))
    seconds = {c.node_id: c.seconds for c in summary.components}
    for branch in (nodes.RETRIEVAL, nodes.RANKING):
        day.gated[branch.name] = gated_values(summary, branch)
        blessing = summary.properties(branch.evaluator, "blessing")
        day.blessed[branch.name] = nodes.verdict(blessing)
        day.trainer_s[branch.name] = seconds.get(branch.trainer)
        start = summary.properties(branch.trainer, "model").get(nodes.WARM_START_PROPERTY, "")
        day.warm[branch.name] = str(start).startswith("warm start")
    for push in nodes.PUSHES:
        props = summary.properties(push.node_id, "pushed_model")
        if push.model_name == nodes.BRUTE_FORCE_MODEL and props.get(nodes.PUSHED_PROPERTY) == 1:
            day.pushed = int(props["pushed_version"])
    return summary.output(nodes.SPAN_WINDOW, "window")


# --- Grading on the new span ----------------------------------------------------------------

def split_of(examples_uri: str) -> quality.Split:
    """Every rating of an Examples artifact, all splits together."""
    parts = [quality.read_split(os.path.join(examples_uri, name))
             for name in sorted(os.listdir(examples_uri)) if name.startswith("Split-")]
    return quality.Split(*(np.concatenate([getattr(p, f.name) for p in parts])
                           for f in dataclasses.fields(quality.Split)))


def served_scores(export_dir: str, g: quality.Grader):
    """A retrieval export's scores over the grader's catalogue; items it lacks score -inf."""
    import tensorflow as tf

    loaded = tf.saved_model.load(export_dir)
    ids = loaded.candidate_ids.numpy().tolist()
    rows = np.array([g.item_row.get(m, -1) for m in ids])
    embeddings = loaded.candidate_embeddings.numpy()[rows >= 0]
    columns = rows[rows >= 0]
    query = loaded.signatures["query_embedding"]

    def scores(test_rows):
        out = np.full((len(test_rows), len(g.item_ids)), -np.inf, np.float32)
        emb = query(user_id=tf.constant(g.test.users[test_rows]),
                    timestamp=tf.constant(g.test.timestamps[test_rows]))["embedding"].numpy()
        out[:, columns] = emb @ embeddings.T
        return out
    return scores


def list_scores(items: list[bytes], g: quality.Grader):
    """A fixed list for everyone, best first (a fallback): scores by position."""
    score = np.zeros(len(g.item_ids), np.float32)
    for position, m in enumerate(items):
        if m in g.item_row:
            score[g.item_row[m]] = len(items) - position
    return lambda rows: np.broadcast_to(score, (len(rows), len(score)))


def top_k(g: quality.Grader, scores) -> float:
    return float(np.mean(g.ranks(scores, exclude_seen=False) < TOP_K))


def grade_day(day: Day, window_uri: str, serving_dir: str, half_life_days: float) -> None:
    """The served model, the baselines and the new users' fallbacks on the day's new span."""
    import tensorflow as tf

    from recsys_pipeline.components import span_window
    from recsys_pipeline.serving import model_config
    from recsys_pipeline.trainer import inputs

    record = span_window.read_window(window_uri)
    if record["split"] != span_window.NEXT_SPAN:
        return  # the first day: nothing older to have trained on
    served = model_config.served_version_dir(serving_dir, nodes.BRUTE_FORCE_MODEL)
    window_train = quality.read_split(os.path.join(window_uri, "Split-train"))
    new_span = quality.read_split(os.path.join(window_uri, "Split-eval"))
    older = [h for h in record["history"] if h["number"] in record["spans"][:-1]]
    last_span = split_of(older[-1]["examples_uri"])
    known = [window_train.items, new_span.items]
    if served:
        known.append(tf.saved_model.load(served).candidate_ids.numpy().astype(object))
    items = np.unique(np.concatenate(known))
    g = quality.Grader(items, window_train, new_span)
    if served:
        day.graded["served model"] = top_k(g, served_scores(served, g))
    day.graded["EASE (window)"] = top_k(g, quality.ease_scores(g))
    day.graded["popularity (last span)"] = top_k(
        g, quality.popularity_scores(quality.Grader(items, last_span, new_span)))

    new_users = g.test_u < 0
    day.new_user_share = float(np.mean(new_users))
    if new_users.any():
        cold = quality.Grader(items, window_train, quality.Split(
            *(getattr(new_span, f.name)[new_users] for f in dataclasses.fields(quality.Split))))
        for name, half_life in (("new users: recency-weighted", half_life_days),
                                ("new users: most rated in window", 0.0)):
            fallback = inputs.recent_popular(window_train.items, window_train.timestamps,
                                             TOP_K, half_life)
            day.graded[name] = top_k(cold, list_scores([m for m, _ in fallback], cold))


# --- Tables ---------------------------------------------------------------------------------

def _f(value: Optional[float], digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _yes(value: Optional[bool]) -> str:
    return "-" if value is None else ("yes" if value else "no")


GRADED = ("served model", "EASE (window)", "popularity (last span)",
          "new users: recency-weighted", "new users: most rated in window")


def day_table(days: list[Day]) -> str:
    head = ["day", "span", "window ratings", "retrieval cand / served", "ranking cand / served",
            "blessed r/k", "pushed", "drift", "retrieval s", "ranking s", "run s",
            f"served top-{TOP_K}", "EASE", "pop. last span", "new users",
            "fallback: recency-weighted", "fallback: most rated"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for d in days:
        r, k = d.gated.get(nodes.RETRIEVAL.name, (None, None)), d.gated.get(
            nodes.RANKING.name, (None, None))
        start = "".join("w" if d.warm.get(b) else "c" for b in (nodes.RETRIEVAL.name,
                                                                 nodes.RANKING.name))
        cells = [str(d.day), str(d.span),
                 "-" if d.window_ratings is None else f"{d.window_ratings:,}",
                 f"{_f(r[0])} / {_f(r[1])}", f"{_f(k[0])} / {_f(k[1])}",
                 f"{_yes(d.blessed.get(nodes.RETRIEVAL.name))}/"
                 f"{_yes(d.blessed.get(nodes.RANKING.name))}",
                 str(d.pushed) if d.pushed else "-", d.drift.replace("|", "/") or "-",
                 f"{_f(d.trainer_s.get(nodes.RETRIEVAL.name), 1)} ({start[0]})",
                 f"{_f(d.trainer_s.get(nodes.RANKING.name), 1)} ({start[1]})",
                 f"{d.run_s:.0f}" + ("" if d.ok else " FAILED")]
        cells += [_f(d.graded.get(name)) for name in GRADED[:3]]
        cells.append(_f(d.new_user_share, 2))
        cells += [_f(d.graded.get(name)) for name in GRADED[3:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bad_pushes(days: list[Day], config) -> int:
    """Days that pushed a branch's model scoring worse than the served one beyond the
    tolerance, on that day's new span (the Evaluators' numbers)."""
    tolerance = {nodes.RETRIEVAL.name: config.evaluation.top_k_tolerance,
                 nodes.RANKING.name: config.evaluation.rmse_tolerance}
    count = 0
    for d in days:
        for branch in (nodes.RETRIEVAL, nodes.RANKING):
            candidate, served = d.gated.get(branch.name, (None, None))
            if not d.blessed.get(branch.name) or candidate is None or served is None:
                continue
            worse = served - candidate if branch.higher_is_better else candidate - served
            count += worse > tolerance[branch.name]
    return count


def _mean(values: list[Optional[float]]) -> Optional[float]:
    found = [v for v in values if v is not None]
    return float(np.mean(found)) if found else None


def summary(results: dict[str, list[Day]], wall: dict[str, float], config,
            window: int) -> str:
    lines = []
    for mode, days in results.items():
        full = days[window:]  # the window is full: a run should not grow any more
        late = [d for d in days if d.day >= FIRST_AVERAGED_DAY] or days[1:] or days
        served = _mean([d.graded.get("served model") for d in late])
        ease = _mean([d.graded.get("EASE (window)") for d in late])
        pop = _mean([d.graded.get("popularity (last span)") for d in late])
        fallback = _mean([d.graded.get("new users: recency-weighted") for d in late])
        most_rated = _mean([d.graded.get("new users: most rated in window") for d in late])
        span = f"days {late[0].day}-{late[-1].day}"
        growth = (f"; once the window was full (day {full[0].day} on), runs took "
                  f"{min(d.run_s for d in full):.0f}-{max(d.run_s for d in full):.0f}s, the "
                  f"last {full[-1].run_s:.0f}s") if full else ""
        lines.append(f"{mode}: {sum(d.ok for d in days)}/{len(days)} runs succeeded, whole "
                     f"replay {wall[mode]:.0f}s of runs{growth}.")
        if served is not None and ease is not None and pop is not None:
            lines.append(
                f"{mode}: served top-{TOP_K} {served:.4f} averaged over {span}: "
                f"{'>=' if served >= ease else '<'} EASE ({ease:.4f}); "
                f"{served / pop if pop else float('inf'):.2f}x popularity of the last span "
                f"({pop:.4f}; the target is 1.20x).")
        if fallback is not None and most_rated is not None:
            lines.append(f"{mode}: new users' fallback top-{TOP_K} over {span}: recency-"
                         f"weighted {fallback:.4f}, most rated in the window {most_rated:.4f}.")
        lines.append(f"{mode}: pushes worse than the served model beyond the tolerance: "
                     f"{bad_pushes(days, config)}.")
    if "warm" in results and "cold" in results:
        pairs = [(w, c) for w, c in zip(results["warm"], results["cold"], strict=True)
                 if all(w.warm.values()) and w.warm]
        warm_s = sum(sum(v or 0.0 for v in w.trainer_s.values()) for w, _ in pairs)
        cold_s = sum(sum(v or 0.0 for v in c.trainer_s.values()) for _, c in pairs)
        if pairs and cold_s:
            metric = {mode: _mean([d.gated.get(nodes.RETRIEVAL.name, (None, None))[0]
                                   for d in side]) for mode, side in
                      (("warm", [w for w, _ in pairs]), ("cold", [c for _, c in pairs]))}
            lines.append(
                f"Warm-started Trainers took {warm_s / cold_s:.0%} of the cold Trainers' time "
                f"on the {len(pairs)} warm-started days ({warm_s:.0f}s against {cold_s:.0f}s; "
                f"the target is at most 40%), candidate top-{TOP_K} on the new span "
                f"{_f(metric['warm'])} warm, {_f(metric['cold'])} cold.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, required=True, help="days to replay")
    parser.add_argument("--ratings-per-day", type=int, default=30_000)
    parser.add_argument("--window", type=int, default=7, help="data.window_spans")
    parser.add_argument("--modes", default=",".join(MODES),
                        help="comma-separated: warm (warm_start on), cold (off)")
    parser.add_argument("--config", help="pipeline config to start from (window, split "
                        "and warm_start are set per mode)")
    parser.add_argument("--seed", type=int, default=0, help="recsys synth's seed")
    parser.add_argument("--workdir", default=os.path.join("outputs", "bench-replay"))
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes takes {', '.join(MODES)}")
    import recsys_pipeline  # noqa: F401  (Keras 2 before TensorFlow loads)
    from recsys_pipeline.data import arrivals
    from recsys_pipeline.metadata import summarize_runs
    from recsys_pipeline.pipeline.config import PipelineConfig, load_config

    base = load_config(args.config) if args.config else PipelineConfig()
    work = os.path.abspath(args.workdir)
    data_dir = os.path.join(work, "data")
    if os.path.isdir(data_dir):
        raise SystemExit(f"{data_dir} exists: pass a new --workdir (a replay starts empty)")
    log(f"writing {args.days} daily spans of {args.ratings_per_day:,} ratings to {data_dir}")
    arrivals.generate_days(data_dir, args.days, args.ratings_per_day, seed=args.seed,
                           progress=lambda i, n: log(f"  day {i}/{n}"))
    spans = [arrivals.span_number(d) for d in range(args.days)]
    results: dict[str, list[Day]] = {mode: [] for mode in modes}
    configs = {}
    for mode in modes:
        output_dir = os.path.join(work, mode)
        os.makedirs(os.path.join(output_dir, "replay-logs"), exist_ok=True)
        path = os.path.join(output_dir, "replay.toml")
        write_config(path, base, output_dir, args.window, warm=mode == "warm")
        configs[mode] = (path, load_config(path))
    # Day by day, the modes in turn: whatever else loads the machine meanwhile weighs on
    # both alike.
    for i, span in enumerate(spans, start=1):
        for mode in modes:
            path, config = configs[mode]
            log(f"{mode}: day {i}/{len(spans)}, span {span}")
            run_log = os.path.join(config.output_dir, "replay-logs", f"{span}.log")
            ok, seconds = run_day(data_dir, path, span, run_log)
            day = Day(i, span, ok, seconds)
            if ok:
                window_uri = describe_run(day, summarize_runs(config)[-1])
                grade_day(day, window_uri, config.serving_dir,
                          config.retrieval.popular_half_life_days)
            else:
                log(f"{mode}: span {span} failed, see {run_log}")
            results[mode].append(day)
            log(f"{mode}: day {i} done in {seconds:.0f}s: {day.graded}")
    wall = {mode: sum(d.run_s for d in days) for mode, days in results.items()}
    print(f"Replay benchmark: {args.days} days x {args.ratings_per_day:,} ratings "
          f"(recsys synth --days, seed {args.seed}), window {args.window} spans, split "
          f"next_span; top-{TOP_K} accuracy on each day's new span, rated items left in. "
          f"(w)/(c): the Trainer started warm or cold.\n")
    for mode, days in results.items():
        print(f"### {mode} (warm_start {'on' if mode == 'warm' else 'off'})\n")
        print(day_table(days) + "\n")
    print(summary(results, wall, base, args.window))
    return 0 if all(d.ok for days in results.values() for d in days) else 1


if __name__ == "__main__":
    sys.exit(main())
