"""Training throughput benchmark: examples/second of the retrieval and ranking Trainers.

    .venv/bin/python bench/training.py [--output-dir outputs] [--config C] [--epochs N]

From the newest run under ``--output-dir`` (``recsys run`` trains one first if there is
none) it takes the Transform output -- transform graph, transformed train split, the
catalogue -- and runs exactly what the Trainers' ``run_fn`` run (same tf.data pipeline, same
model builders, the configured hyperparameters and epochs, default batch sizes).
Per model it prints: the input pipeline alone (parse + batch, no model), the first epoch (it
also fills the cache and traces the train step), the steady epochs after it, and the
process's CPU time over wall time in the steady epochs (2.0 = both cores busy).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import time

from recsys_pipeline.pipeline import nodes

MODELS = (nodes.RETRIEVAL.name, nodes.RANKING.name)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def find_inputs(output_dir: str, train_if_missing: bool = True) -> dict[str, str]:
    """Transform graph, transformed train split and catalogue of the newest complete run."""
    from recsys_pipeline.local_runner import run_first
    from recsys_pipeline.metadata import summarize_runs
    from recsys_pipeline.pipeline.config import PipelineConfig

    config = PipelineConfig(output_dir=output_dir)
    for summary in reversed(summarize_runs(config) if os.path.isdir(output_dir) else []):
        graph = summary.output(nodes.TRANSFORM, "transform_graph")
        examples = summary.output(nodes.TRANSFORM, "transformed_examples")
        catalogue = summary.output(nodes.EXAMPLE_GEN, "catalogue")
        if graph and examples and catalogue and all(map(os.path.isdir, (graph, examples))):
            return {"transform": graph, "train": os.path.join(examples, "Split-train"),
                    "eval": os.path.join(examples, "Split-eval"),
                    "catalogue": os.path.join(catalogue, "Split-catalogue")}
    if not train_if_missing:
        raise SystemExit(f"no Transform output under {output_dir}")
    run_first(output_dir)
    return find_inputs(output_dir, train_if_missing=False)


class EpochClock:
    """Wall and CPU seconds of every epoch (a Keras callback built lazily: TF imports late)."""

    def __new__(cls):
        import tensorflow as tf

        class _Clock(tf.keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.epochs: list[tuple[float, float]] = []

            def on_epoch_begin(self, epoch, logs=None):
                self._wall, self._cpu = time.perf_counter(), cpu_seconds()

            def on_epoch_end(self, epoch, logs=None):
                self.epochs.append((time.perf_counter() - self._wall,
                                    cpu_seconds() - self._cpu))

        return _Clock()


def input_only(data, files: list[str], batch_size: int) -> float:
    """Examples/second of the Trainers' input pipeline alone (second pass: cached)."""
    dataset = data.dataset(files, batch_size, shuffle=True, seed=0)
    for _ in dataset:  # first pass fills the cache
        pass
    started, n = time.perf_counter(), 0
    for batch in dataset:
        n += int(next(iter(batch.values())).shape[0])
    return n / (time.perf_counter() - started)


def measure(model_name: str, data, paths: dict[str, list[str]], hp, epochs: int) -> dict:
    """Trains ``model_name`` with its Trainer's ``train``; returns throughput numbers."""
    from recsys_pipeline.trainer import ranking_trainer, retrieval_trainer

    hp = dataclasses.replace(hp, epochs=epochs)
    if getattr(hp, "ensemble", 1) > 1:
        # One network's throughput: an ensemble trains its members one after another, each
        # at this rate (so its wall time is ``ensemble`` times one member's).
        hp = dataclasses.replace(hp, ensemble=1)
    clock = EpochClock()
    log(f"{model_name}: {epochs} epochs of {data.stats.num_examples:,} examples, "
        f"batch {hp.batch_size} ...")
    if model_name == nodes.RETRIEVAL.name:
        retrieval_trainer.train(data, hp, paths["train"], callbacks=[clock])
    else:
        ranking_trainer.train(data, hp, paths["train"], paths["eval"], callbacks=[clock])
    n = data.stats.num_examples
    first_wall, _ = clock.epochs[0]
    steady = clock.epochs[1:]
    wall, cpu = sum(w for w, _ in steady), sum(c for _, c in steady)
    return {"model": model_name, "batch_size": hp.batch_size, "examples": n,
            "epochs": epochs, "input_eps": input_only(data, paths["train"], hp.batch_size),
            "first_eps": n / first_wall, "steady_eps": n * len(steady) / wall,
            "all_eps": n * epochs / (first_wall + wall), "cpu_ratio": cpu / wall}


def table(rows: list[dict]) -> str:
    lines = ["| Trainer | batch | epochs | examples/epoch | input only ex/s | first epoch ex/s | "
             "steady ex/s | all epochs ex/s | CPU s / wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['epochs']} | {r['examples']:,} | "
                     f"{r['input_eps']:,.0f} | {r['first_eps']:,.0f} | "
                     f"{r['steady_eps']:,.0f} | {r['all_eps']:,.0f} | {r['cpu_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default="outputs",
                        help="output directory of a `recsys run` (run first if empty)")
    parser.add_argument("--config", help="pipeline config (TOML) whose hyperparameters to use")
    parser.add_argument("--transform-dir", help="a Transform graph to use instead (with "
                        "--train, --eval and --catalogue: split directories or globs)")
    parser.add_argument("--train")
    parser.add_argument("--eval")
    parser.add_argument("--catalogue")
    parser.add_argument("--epochs", type=int, help="epochs of each model (default: the "
                        "configured ones); at least 2, as the first is reported apart: it "
                        "fills the cache and traces the train step")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    import recsys_pipeline  # noqa: F401  (Keras 2 before TensorFlow loads)
    from recsys_pipeline.pipeline.config import PipelineConfig, load_config
    from recsys_pipeline.trainer import inputs
    from recsys_pipeline.trainer.common import load_training_data

    config = load_config(args.config) if args.config else PipelineConfig()
    if args.transform_dir:
        paths = {"transform": args.transform_dir, "train": args.train, "eval": args.eval,
                 "catalogue": args.catalogue}
    else:
        paths = find_inputs(args.output_dir)
    log(f"Transform output {paths['transform']}")
    files = {split: inputs.files(paths[split]) for split in ("train", "eval")}
    data = load_training_data(paths["transform"], files["train"], paths["catalogue"])
    rows = [measure(name, data, files, getattr(config, name),
                    max(2, args.epochs or getattr(config, name).epochs))
            for name in args.models.split(",")]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
