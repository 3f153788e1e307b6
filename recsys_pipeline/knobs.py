"""``knob``: a documented dataclass field, shared by the pipeline config and the hyperparameters.

Kept apart from ``pipeline/config.py`` so that model code (``trainer/``) can declare its
hyperparameters without importing pipeline code.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def knob(default: Any, doc: str, **kwargs: Any) -> Any:
    """A dataclass field with a default and a ``doc`` (printed by ``recsys config``)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"doc": doc},
                     **kwargs)
    return field(default=default, metadata={"doc": doc}, **kwargs)
