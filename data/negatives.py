"""Sampled negatives for an engagement model: per user, items they never interacted with.

A log without ratings says which items a user chose, never which they passed over. An
engagement ranker (binary cross-entropy, TFRS's Ranking task) needs both, so each user's
interactions are its positives and items drawn from the rest of the catalogue its negatives:
``ratio`` of them per positive, drawn uniformly or in proportion to the item's popularity
(its train interaction count, plus one so that an unseen item can be drawn), without
replacement within a user and never one of the user's positives.

The draw is seeded per user (the seed and the user id, hashed), so it is the same on every
run, runner and worker whatever the order of the data. Drawing goes by rejection from the
whole catalogue's distribution -- cheap while a user's positives are a small part of the
catalogue, as in any real log -- and by an exact draw over the user's remaining items when
they are not. A user who interacted with every item has no possible negative: counted and
skipped (``Sampled.skipped``), never an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from recsys_pipeline.errors import ConfigError

UNIFORM = "uniform"
POPULARITY = "popularity"
DISTRIBUTIONS = (UNIFORM, POPULARITY)
# Rejection draws per wanted negative before the exact draw takes over.
_REJECTION_TRIES = 8


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The items negatives are drawn from, and each one's draw probability."""

    ids: tuple[str, ...]
    probability: np.ndarray  # [len(ids)], sums to 1
    cumulative: np.ndarray  # its running sum, for drawing by binary search
    index: dict[str, int]  # item id -> its position in ids

    @classmethod
    def of(cls, counts: dict[str, int], distribution: str) -> Catalogue:
        """From every catalogue item's train interaction count (0 for an item nobody chose)."""
        if distribution not in DISTRIBUTIONS:
            raise ConfigError(f"negative sampling distribution {distribution!r}: expected one "
                              f"of {DISTRIBUTIONS}")
        ids = tuple(sorted(counts))
        if not ids:
            raise ConfigError("negative sampling needs a catalogue with at least one item")
        weight = (np.ones(len(ids)) if distribution == UNIFORM
                  else np.array([counts[i] for i in ids], np.float64) + 1.0)
        probability = weight / weight.sum()
        return cls(ids, probability, np.cumsum(probability),
                   {item: i for i, item in enumerate(ids)})


def check_ratio(ratio: int, catalogue_size: int, what: str = "negative sampling ratio") -> None:
    """Refuses a ratio of 0 (or less), or above the catalogue: no user could get that many."""
    if ratio < 1 or ratio > catalogue_size:
        raise ConfigError(f"{what} is {ratio}; expected 1 to the catalogue's {catalogue_size} "
                          "items (negatives per positive, drawn from the items a user never "
                          "interacted with)")


def _rng(seed: int, user_id: str) -> np.random.Generator:
    digest = hashlib.blake2b(f"{seed}:{user_id}".encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def sample_user(user_id: str, positives: Iterable[str], catalogue: Catalogue, ratio: int,
                seed: int) -> list[str]:
    """``ratio`` negatives per distinct positive of ``user_id`` (fewer when fewer items are
    left), distinct, none a positive; [] when the user interacted with every item."""
    distinct = set(positives)
    taken = {catalogue.index[p] for p in distinct if p in catalogue.index}
    left = len(catalogue.ids) - len(taken)
    wanted = min(ratio * len(distinct), left)
    if wanted <= 0:
        return []
    rng = _rng(seed, user_id)
    chosen: list[int] = []
    seen = set(taken)
    for _ in range(_REJECTION_TRIES * wanted):
        i = int(np.searchsorted(catalogue.cumulative, rng.random() * catalogue.cumulative[-1],
                                side="right"))
        i = min(i, len(catalogue.ids) - 1)
        if i not in seen:
            seen.add(i)
            chosen.append(i)
            if len(chosen) == wanted:
                return [catalogue.ids[j] for j in chosen]
    # Most of the catalogue is the user's (or drawn already): draw the rest exactly.
    rest = np.array([j for j in range(len(catalogue.ids)) if j not in seen], np.int64)
    p = catalogue.probability[rest] / catalogue.probability[rest].sum()
    chosen += rng.choice(rest, size=wanted - len(chosen), replace=False, p=p).tolist()
    return [catalogue.ids[j] for j in chosen]


@dataclasses.dataclass
class Sampled:
    """Negatives drawn for many users, and the users who had none possible."""

    pairs: list[tuple[str, str]]  # (user id, item id)
    skipped: int


def sample(positives: dict[str, Sequence[str]], catalogue: Catalogue, ratio: int,
           seed: int) -> Sampled:
    """``sample_user`` for every user of ``positives`` (user id -> their items)."""
    check_ratio(ratio, len(catalogue.ids))
    pairs, skipped = [], 0
    for user_id in sorted(positives):
        drawn = sample_user(user_id, positives[user_id], catalogue, ratio, seed)
        if not drawn:
            skipped += 1
        pairs += [(user_id, item) for item in drawn]
    return Sampled(pairs, skipped)
