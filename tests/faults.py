"""Runs ``recsys`` with a fault point armed: ``python -m tests.faults POINT MARKER_DIR ARGS...``.

LocalDagRunner executes every component in this process, so the fault point patches one
function of the component named ``POINT``: when the run reaches it, the process writes
``MARKER_DIR/POINT`` and stops there (sleeping), so that a test can SIGKILL it at that exact
moment -- mid-component, after it wrote files and before TFX published them.
"""

from __future__ import annotations

import functools
import os
import sys
import time


def _hang_after(owner, name: str, marker: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(3600)
        return result

    setattr(owner, name, wrapper)


def arm(point: str, marker_dir: str) -> None:
    """Patches the function where ``point`` stops (see module doc)."""
    marker = os.path.join(marker_dir, point)
    if point == "ExampleGen":  # examples written by Beam and checked, not yet published
        from recsys_pipeline.components import interactions_example_gen as m
        _hang_after(m.Executor, "_check_orphans", marker)
    elif point == "Transform":  # transform graph and transformed examples written
        from tfx.components.transform import executor as t
        _hang_after(t.Executor, "Do", marker)
    elif point == "Trainer":  # after the first epoch
        from recsys_pipeline.trainer import common
        _hang_after(common.EpochProgress, "on_epoch_end", marker)
    elif point == "Evaluator":  # TFMA's evaluation and blessing written, registry not yet
        from tfx.components.evaluator import executor as e
        _hang_after(e.Executor, "Do", marker)
    elif point == "Pusher":  # the staging copy complete and fsynced, not yet renamed
        from recsys_pipeline.components import serving_pusher
        _hang_after(serving_pusher, "_fsync_tree", marker)
    else:
        raise SystemExit(f"unknown fault point {point}")


if __name__ == "__main__":
    import recsys_pipeline  # noqa: F401  (selects Keras 2 before TensorFlow loads)
    from recsys_pipeline import cli

    arm(sys.argv[1], sys.argv[2])
    sys.exit(cli.main(sys.argv[3:]))
