"""Replacing a file whole: readers of this project's files (TF Serving polling models.config,
a browser on the report, `recsys run` on a synthetic log, KFP uploading a compiled spec) must
see the old contents or the new, never half of either, even if the writer is killed."""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any, Iterator, Optional


def partial_path(path: str) -> str:
    """Where ``replacing`` writes before the rename (one per process)."""
    return f"{path}.partial-{os.getpid()}"


@contextlib.contextmanager
def replacing(path: str, encoding: Optional[str] = "utf-8", newline: Optional[str] = None,
              binary: bool = False) -> Iterator[IO[Any]]:
    """A text (or ``binary``) file to write that replaces ``path`` in one rename once the
    block ends; a block that raises leaves ``path`` as it was and nothing beside it."""
    tmp = partial_path(path)
    renamed = False
    try:
        with (open(tmp, "wb") if binary else
              open(tmp, "w", encoding=encoding, newline=newline)) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        renamed = True
    finally:
        if not renamed and os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str, text: str) -> None:
    """Replaces ``path`` with ``text`` in one rename (a reader sees the old or the new)."""
    with replacing(path) as f:
        f.write(text)
