"""Train/eval split assignment, deterministic per rating (independent of file order)."""

from __future__ import annotations

import hashlib

TRAIN = "train"
EVAL = "eval"
SPLITS = (TRAIN, EVAL)
# ExampleGen's second output: every item of the item file, one split of its own.
CATALOGUE = "catalogue"


def random_split(user_id: str, item_id: str, timestamp: int, seed: int,
                 eval_fraction: float) -> str:
    """Seeded hash split: the same rating lands in the same split on every run and runner."""
    key = f"{seed}:{user_id}:{item_id}:{timestamp}".encode()
    h = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return EVAL if h / 2.0**64 < eval_fraction else TRAIN


def temporal_split(timestamp: int, cutoff: int) -> str:
    """Global time cutoff: ratings at or after ``cutoff`` are evaluation data."""
    return EVAL if timestamp >= cutoff else TRAIN
