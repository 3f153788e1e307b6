"""Daily spans of synthetic interactions: the data a scheduled pipeline sees arrive.

``generate_days(out_dir, days, ratings_per_day)`` writes one ``span-<YYYYMMDD>`` folder per
day in the GroupLens CSV layout (``ratings.csv`` and the ``movies.csv`` catalogue of the
items released by that day), for ``recsys run --span N`` day after day. What a replay needs
to show that warm starts, windows and drift checks pay:

* popularity drifts: each item's log-popularity takes a random-walk step every day, and a
  new item gets a launch boost that fades over a few days;
* new items and users arrive: 70% of each exist on the first day, the rest are released or
  join evenly over the days (a newcomer is likelier to be active on the day it joins);
* a user-taste signal: which items a user picks and how they rate them both follow a
  low-rank taste term (as in ``synthetic.py``), so a model that learns tastes beats
  popularity, and a user's past days predict the next;
* no user rates an item twice, across all days (ExampleGen refuses duplicate pairs).

The same seed writes the same bytes. Day numbers are calendar dates, so spans cross month
ends (20261130 -> 20261201) as real daily partitions do.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
from typing import Any, Callable, Optional

import numpy as np

from recsys_pipeline import files
from recsys_pipeline.data.movielens import LAYOUTS
from recsys_pipeline.data.synthetic import (
    ITEMS_PER_SQRT_RATING,
    MEAN_RATINGS_PER_USER,
    TASTE_DIM,
    Shape,
    item_table,
    write_items,
)

# Early enough for about two years of daily spans before today: ExampleGen refuses a rating
# from the future, so the last day must be over by the time the log is read.
FIRST_DAY = datetime.date(2025, 1, 1)
# The daily log's own popularity exponent: its choice weighs taste by TASTE_WEIGHT, and the
# two were set together (synthetic.py's one-off log weighs taste more, with a steeper law).
POPULARITY_EXPONENT = 0.9
PRESENT_AT_START = 0.7  # share of the items and of the users that exist on the first day
DAILY_DRIFT = 0.15  # standard deviation of an item's daily log-popularity step
LAUNCH_BOOST, LAUNCH_DAYS = 2.0, 3.0  # a new item's extra log-popularity, and its decay
TASTE_WEIGHT = 1.5  # how strongly taste steers which items a user picks


@dataclasses.dataclass(frozen=True)
class DailyShape:
    """Sizes of a run of daily spans."""

    days: int
    ratings_per_day: int
    num_items: int
    num_users: int
    seed: int = 0

    @classmethod
    def of(cls, days: int, ratings_per_day: int, seed: int = 0) -> DailyShape:
        if days < 1 or ratings_per_day < 1:
            raise ValueError("days and ratings_per_day must be at least 1")
        if days > max_days():
            raise ValueError(f"{days} days from {FIRST_DAY} would end in the future (at most "
                             f"{max_days()} days end before today)")
        total = days * ratings_per_day
        items = max(50, round(ITEMS_PER_SQRT_RATING * math.sqrt(total)))
        # Users rate about five items on a day they are active, and 120 in all (MovieLens).
        users = max(total // MEAN_RATINGS_PER_USER, ratings_per_day // 5)
        return cls(days, ratings_per_day, items, users, seed)


def max_days(today: Optional[datetime.date] = None) -> int:
    """How many daily spans end before ``today`` (default: the date now, in UTC)."""
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    return (today - FIRST_DAY).days


def span_number(day: int) -> int:
    """The span number of day ``day`` (0-based): its date, as YYYYMMDD."""
    return int((FIRST_DAY + datetime.timedelta(days=day)).strftime("%Y%m%d"))


def _arrival_days(n: int, days: int, rng: np.random.Generator) -> np.ndarray:
    """Day each of ``n`` items appears: 0 for PRESENT_AT_START of them, then evenly."""
    arrive = np.zeros(n, dtype=np.int64)
    late = rng.permutation(n)[: n - round(n * PRESENT_AT_START)]
    if days > 1:
        arrive[late] = 1 + (np.arange(len(late)) * (days - 1)) // max(len(late), 1)
    return arrive


def _pick(u: int, k: int, log_pop: np.ndarray, affinity: np.ndarray, rated: list[set],
          items: dict, bias: float, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """User ``u``'s ``k`` (or fewer: what is left) ratings of today: (user id, item id, half
    stars), items picked by popularity and taste (the Gumbel top-k trick)."""
    keys = log_pop + TASTE_WEIGHT * affinity[:, u] + rng.gumbel(size=len(log_pop))
    if rated[u]:
        keys[list(rated[u])] = -np.inf
    k = min(k, int(np.isfinite(keys).sum()))
    if k == 0:
        return []
    chosen = np.argpartition(-keys, k - 1)[:k]
    rated[u].update(chosen.tolist())
    score = (3.55 + bias + items["bias"][chosen] + 1.5 * affinity[chosen, u]
             + rng.normal(0.0, 0.6, size=k))
    half_stars = np.clip(np.rint(score * 2), 1, 10).astype(np.int64)
    return [(u + 1, int(items["id"][m]), r)
            for m, r in zip(chosen.tolist(), half_stars.tolist(), strict=True)]


def generate_days(out_dir: str, days: int, ratings_per_day: int, *, seed: int = 0,
                  progress: Optional[Callable[[int, int], None]] = None) -> DailyShape:
    """Writes ``days`` span folders of ``ratings_per_day`` ratings each (fewer only when every
    user has rated every released item); returns the shape."""
    shape = DailyShape.of(days, ratings_per_day, seed)
    rng = np.random.default_rng(seed)
    items = item_table(Shape(days * ratings_per_day, shape.num_items, shape.num_users,
                               popularity_exponent=POPULARITY_EXPONENT, seed=seed), rng)
    released = _arrival_days(shape.num_items, days, rng)
    joined = _arrival_days(shape.num_users, days, rng)
    activity = rng.lognormal(0.0, 1.0, size=shape.num_users)
    taste = rng.normal(0.0, 1.0, size=(shape.num_users, TASTE_DIM)) / math.sqrt(TASTE_DIM)
    user_bias = rng.normal(0.0, 0.4, size=shape.num_users)
    affinity = items["taste"] @ taste.T  # [items, users]
    walk = np.zeros(shape.num_items)
    rated: list[set[int]] = [set() for _ in range(shape.num_users)]
    os.makedirs(out_dir, exist_ok=True)
    csv = LAYOUTS["csv"]
    for day in range(days):
        walk += rng.normal(0.0, DAILY_DRIFT, size=shape.num_items)
        age = day - released
        log_pop = items["log_popularity"] + walk + np.where(
            age >= 0, LAUNCH_BOOST * np.exp(-np.maximum(age, 0) / LAUNCH_DAYS), -np.inf)
        # Who rates today, in proportion to activity; a user who joins today, twice as likely.
        # A user who has rated every released item passes the rest of the day's share on.
        weight = np.where(joined <= day, activity * np.where(joined == day, 2.0, 1.0), 0.0)
        rows: list[tuple[int, int, int]] = []
        while len(rows) < ratings_per_day:
            before = len(rows)
            users, counts = np.unique(rng.choice(shape.num_users, size=ratings_per_day - before,
                                                 p=weight / weight.sum()), return_counts=True)
            for u, k in zip(users.tolist(), counts.tolist(), strict=True):
                rows += _pick(u, k, log_pop, affinity, rated, items, user_bias[u], rng)
            if len(rows) == before:
                break  # every active user has rated every released item
        start = int(datetime.datetime.combine(FIRST_DAY + datetime.timedelta(days=day),
                                              datetime.time(),
                                              tzinfo=datetime.timezone.utc).timestamp())
        times = np.sort(start + rng.integers(0, 86_400, size=len(rows)))
        order = rng.permutation(len(rows))
        folder = os.path.join(out_dir, f"span-{span_number(day)}")
        os.makedirs(folder, exist_ok=True)
        out: dict[str, Any] = {k: v[released <= day] if isinstance(v, np.ndarray) else
               [g for g, r in zip(v, released <= day, strict=True) if r]
               for k, v in items.items()}
        write_items(os.path.join(folder, csv.movies_file), out)
        path = os.path.join(folder, csv.ratings_file)
        with files.replacing(path, newline="") as f:
            f.write(",".join(csv.ratings_header or ()) + "\n")
            for i, t in zip(order.tolist(), times.tolist(), strict=True):
                u, m, r = rows[i]
                f.write(f"{u},{m},{r // 2}.{5 if r % 2 else 0},{t}\n")
        if progress:
            progress(day + 1, days)
    return shape
