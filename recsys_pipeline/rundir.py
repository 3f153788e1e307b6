"""An output directory's run lock, and each run's own temp directory.

Two runs on one output directory would interleave writes to the same MLMD store and serving
directory, so a run holds the directory's lock; TFX and Beam leave files in the temp
directory, so each run gets one of its own, removed when the run ends however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from typing import Iterator

from recsys_pipeline.errors import OutputError


def check_output_dir(path: str) -> None:
    """Fails early, with the path, if the output directory cannot be created or written."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise OutputError(
            f"output directory {path!r} is not writable ({e.strerror}). Choose another with "
            "--output-dir DIR or fix its permissions."
        ) from None


def check_events_file(path: str) -> None:
    """Fails early, with the path, if ``recsys run --events`` could not append to ``path``."""
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise OutputError(
            f"cannot write the progress events to {path!r} ({e.strerror}): pass --events a "
            "file in an existing, writable directory, or leave it out to keep them beside the "
            "run log") from None


NAMES_FILE = ".recsys-names"


def check_names(output_dir: str, metadata_path: str) -> None:
    """Refuses an output directory written with other names than this code's, and stamps a
    new one with ``nodes.NAMES``.

    A directory from before the stamp existed has a metadata store and no stamp: it was
    written with movie names (features ``movie_id_index``, signatures returning
    ``movie_ids``), whose models this code would take as baselines and misread.
    """
    from recsys_pipeline.pipeline.nodes import NAMES

    stamp = os.path.join(output_dir, NAMES_FILE)
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as f:
            found = f.read().strip()
    elif os.path.exists(metadata_path):
        found = "movie names: movie_id, movie_ids"
    else:
        os.makedirs(output_dir, exist_ok=True)
        with open(stamp, "w", encoding="utf-8") as f:
            f.write(NAMES + "\n")
        return
    if found != NAMES:
        raise OutputError(
            f"output directory {output_dir!r} was written by an older recsys-pipeline "
            f"({found}) and cannot be read by this one ({NAMES}: user_id, item_id, item_ids): "
            "its models would be misread as baselines. Run with a fresh --output-dir, or move "
            "its tfx/, metadata.sqlite and serving/ aside to start a new history there.")


LOCK_FILE = ".recsys-run.lock"


@contextlib.contextmanager
def run_lock(output_dir: str) -> Iterator[None]:
    """Holds the output directory's run lock; refuses, naming the holder's pid, if taken.

    Two runs on one output directory would interleave writes to the same MLMD store and
    serving directory. The lock is an flock on a file there: the kernel releases it when the
    holder exits, however it exits (kill -9 included), so a crash never leaves it stuck.
    """
    path = os.path.join(output_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise OutputError(
                f"another recsys run (pid {holder}) is using {output_dir}: wait for it to "
                "finish, or use another --output-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


RUN_TEMP_PREFIX = "recsys-run-"
RUN_TEMP_OWNER = ".owner.lock"


def _remove_abandoned_run_temp_dirs(parent: str) -> None:
    """Removes the temp directories of runs that were killed (kill -9, the OOM killer).

    A live run holds an flock on its directory's owner file; the kernel drops it when the
    run's process dies, however it dies. A directory without the file is still being set up.
    """
    for name in os.listdir(parent):
        if not name.startswith(RUN_TEMP_PREFIX):
            continue
        path = os.path.join(parent, name)
        try:
            fd = os.open(os.path.join(path, RUN_TEMP_OWNER), os.O_RDONLY)
        except OSError:  # no owner file yet, or not ours to read
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its run is alive
        else:
            # Best effort: another run's leftovers must never fail this run.
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


@contextlib.contextmanager
def run_temp_dir() -> Iterator[str]:
    """A temp directory for one run (``tempfile`` and ``$TMPDIR``), removed when it ends.

    TFX and Beam leave files in the temp directory and never remove them: each Beam
    component's executor builds a 41 MB sdist of TFX in a fresh ``mkdtemp()`` whenever Beam
    arguments are set, the defaults included (``tfx/utils/dependency_utils.py``), and Beam
    pipelines leave staging directories. Owned by the run, they go when it does, failed or
    not; a killed run's directory goes at the start of the next run.
    """
    parent = tempfile.gettempdir()
    _remove_abandoned_run_temp_dirs(parent)
    temp = tempfile.TemporaryDirectory(prefix=RUN_TEMP_PREFIX, dir=parent)
    fd = os.open(os.path.join(temp.name, RUN_TEMP_OWNER), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)  # held for the run's life (released by the kernel on death)
    saved_tempdir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = os.environ["TMPDIR"] = temp.name
    try:
        yield temp.name
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = saved_env
        try:
            temp.cleanup()  # still locked: no other run's sweep races this removal
        except OSError as e:  # the run's outcome stands; the next run's sweep retries
            logging.getLogger(__name__).warning(
                "could not remove the run's temp directory %s: %s", temp.name, e)
        os.close(fd)
