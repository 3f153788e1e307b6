"""The executor process of a compiled step (started by ``kubeflow/entrypoint.py``): makes the
Trainers' ``tf.distribute`` strategy when ``TF_CONFIG`` names a cluster, then runs TFX's
executor entrypoint as its main module.

TensorFlow configures its collective ops once, before it runs its first op, and TFX's
entrypoint runs ops before it calls a Trainer's ``run_fn``; so a step that several workers
run (a TFJob, a Vertex AI worker pool: docs/kubeflow.md) makes its strategy here, first
(``trainer/distribute.py``). Without ``TF_CONFIG`` this only hands over to TFX.
"""

from __future__ import annotations

import runpy
import sys

from recsys_pipeline.errors import RecsysError
from recsys_pipeline.kubeflow.entrypoint import TFX_EXECUTOR_MODULE


def main(module: str = TFX_EXECUTOR_MODULE) -> None:
    from recsys_pipeline.trainer import distribute

    try:
        task = distribute.initialize()
    except RecsysError as e:
        print(f"recsys executor: {e}", file=sys.stderr)
        sys.exit(2)
    if task is not None:
        print(f"recsys executor: {task.type} {task.index} of {task.replicas} replicas"
              f"{' (chief)' if task.is_chief else ''}", file=sys.stderr, flush=True)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
