"""MovieLens-shaped synthetic interactions in the current GroupLens CSV layout, or as a shop's
log in the declared layout (``layout="interactions"``, see ``declaration``).

``generate(out_dir, num_ratings)`` writes ``ratings.csv`` (userId,movieId,rating,timestamp)
and ``movies.csv`` (movieId,title,genres), the layout of ml-latest / ml-25m, so the pipeline
reads them like a download (``--data-dir out_dir``). The shape follows MovieLens:

* item popularity is a power law (Zipf exponent ``popularity_exponent`` over a shuffled
  item order), as rating counts per item are in every MovieLens release;
* per-user activity is log-normal with a floor of 20 ratings (GroupLens keeps only users with
  at least 20), so a few users rate hundreds of items;
* each user is active over a window of a few days to a few years inside the dataset's span,
  and rates distinct items (no duplicate pairs, as ExampleGen requires), chosen by popularity
  and by how well the item suits the user's taste;
* ratings come from user and item biases plus a low-rank taste term, rounded to half stars,
  so models have something to learn.

Users are generated in chunks and written as they are made: memory is bounded by a chunk
and the item tables, whatever ``num_ratings`` is. The same seed writes the same bytes.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import os
from collections.abc import Iterator
from typing import Any, Callable, Optional

import numpy as np

from recsys_pipeline import files
from recsys_pipeline.data import declaration as declared_layout
from recsys_pipeline.data.declaration import InteractionsLayout
from recsys_pipeline.data.movielens import LAYOUTS

GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
          "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance",
          "Sci-Fi", "Thriller", "War", "Western")
MIN_RATINGS_PER_USER = 20
# MovieLens 100K: 1,682 items; 1M: 3,706. sqrt scaling matches both within a factor of 1.5.
ITEMS_PER_SQRT_RATING = 5.3
MEAN_RATINGS_PER_USER = 120  # 106 in ML-100K, 165 in ML-1M
START = 820_454_400  # 1996-01-01
SPAN_SECONDS = 20 * 365 * 86_400
TASTE_DIM = 8
# How much a user's taste, against popularity, decides which items they rate: the taste match
# (a dot product of two tastes, standard deviation about 0.35) is scaled by this in the
# choice's log-odds, where the Gumbel noise has a standard deviation of 1.28.
CHOICE_TASTE_WEIGHT = 6.0
# Chosen items suit their users, which lifts their ratings: this intercept brings the mean
# back to MovieLens' 3.5 to 3.6.
RATING_INTERCEPT = 3.05


@dataclasses.dataclass(frozen=True)
class Shape:
    """Sizes and distributions of one synthetic dataset."""

    num_ratings: int
    num_items: int
    num_users: int
    # With CHOICE_TASTE_WEIGHT's taste match, 1.3 gives the top tenth of the items about
    # 37% of the ratings (ML-100K: 43%).
    popularity_exponent: float = 1.3
    seed: int = 0

    @classmethod
    def for_ratings(cls, num_ratings: int, seed: int = 0) -> Shape:
        """MovieLens-like item and user counts for ``num_ratings`` ratings."""
        if num_ratings < MIN_RATINGS_PER_USER:
            raise ValueError(f"num_ratings must be at least {MIN_RATINGS_PER_USER}")
        users = max(1, num_ratings // MEAN_RATINGS_PER_USER)
        # Enough items that no user has to rate more than half of them (tiny datasets).
        items = max(MIN_RATINGS_PER_USER * 2, 2 * math.ceil(num_ratings / users),
                     round(ITEMS_PER_SQRT_RATING * math.sqrt(num_ratings)))
        return cls(num_ratings, items, users, seed=seed)


def user_activity(shape: Shape, rng: np.random.Generator) -> np.ndarray:
    """Ratings per user: log-normal, at least 20 and at most half the catalogue, summing to
    exactly ``num_ratings``."""
    cap = max(MIN_RATINGS_PER_USER, shape.num_items // 2)
    if shape.num_users * cap < shape.num_ratings:
        raise ValueError(f"{shape.num_users} users cannot rate {shape.num_ratings} distinct "
                         f"pairs of {shape.num_items} items")
    weights = rng.lognormal(mean=0.0, sigma=1.0, size=shape.num_users)
    extra = shape.num_ratings - MIN_RATINGS_PER_USER * shape.num_users
    counts = MIN_RATINGS_PER_USER + np.floor(weights / weights.sum() * max(extra, 0))
    counts = np.minimum(counts, cap).astype(np.int64)
    # Rounding and the cap leave a remainder: hand it out one rating at a time, round robin
    # over the users with room left, so the total is exact.
    missing = shape.num_ratings - int(counts.sum())
    while missing > 0:
        room = np.flatnonzero(counts < cap)[:missing]
        counts[room] += 1
        missing -= len(room)
    return counts


def item_table(shape: Shape, rng: np.random.Generator) -> dict[str, Any]:
    """Per item: id, popularity (log), bias, taste vector, year (arrays) and genres (a list
    of arrays)."""
    n = shape.num_items
    ranks = rng.permutation(n) + 1  # the most popular item is not always id 1
    years = rng.integers(1930, 2016, size=n)
    genre_counts = rng.integers(1, 4, size=n)
    genre_ids = [rng.choice(len(GENRES), size=c, replace=False) for c in genre_counts]
    return {"id": np.arange(1, n + 1),
            "log_popularity": -shape.popularity_exponent * np.log(ranks),
            "bias": rng.normal(0.0, 0.5, size=n),
            "taste": rng.normal(0.0, 1.0, size=(n, TASTE_DIM)) / math.sqrt(TASTE_DIM),
            "year": years, "genres": genre_ids}


def write_items(path: str, items: dict[str, np.ndarray]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(",".join(LAYOUTS["csv"].movies_header or ()) + "\n")
        for item_id, year, genres in zip(items["id"], items["year"], items["genres"],
                                          strict=True):
            names = "|".join(GENRES[g] for g in sorted(genres))
            f.write(f'{item_id},"Synthetic Movie {item_id} ({year})",{names}\n')


def _user_chunk(items: dict[str, np.ndarray], counts: np.ndarray, first_user: int,
                rng: np.random.Generator, tastes: Optional[list] = None) -> np.ndarray:
    """Rows (user, item, half-stars, timestamp) of one chunk of users, by user then item;
    each user's taste vector is appended to ``tastes`` when given."""
    n_users, n_items = len(counts), len(items["id"])
    taste = rng.normal(0.0, 1.0, size=(n_users, TASTE_DIM)) / math.sqrt(TASTE_DIM)
    # Distinct items per user, drawn without replacement in proportion to popularity times
    # exp(CHOICE_TASTE_WEIGHT * taste match): the k largest of log p + that match + Gumbel
    # noise (the Gumbel top-k trick), one matrix per chunk. Users choose what suits them, as
    # well as what is popular: what a retrieval model can learn and popularity cannot.
    keys = (items["log_popularity"][None, :]
            + CHOICE_TASTE_WEIGHT * (taste @ items["taste"].T)
            + rng.gumbel(size=(n_users, n_items)))
    if tastes is not None:
        tastes.append(taste)
    user_bias = rng.normal(0.0, 0.4, size=n_users)
    start = START + rng.integers(0, SPAN_SECONDS, size=n_users)
    window = np.minimum(rng.exponential(180 * 86_400, size=n_users) + 86_400,
                        START + SPAN_SECONDS - start)
    rows = []
    for u in range(n_users):
        chosen = np.sort(np.argpartition(-keys[u], counts[u] - 1)[:counts[u]])
        score = (RATING_INTERCEPT + user_bias[u] + items["bias"][chosen]
                 + 1.5 * items["taste"][chosen] @ taste[u]
                 + rng.normal(0.0, 0.6, size=len(chosen)))
        half_stars = np.clip(np.rint(score * 2), 1, 10).astype(np.int64)
        times = start[u] + (rng.random(len(chosen)) * window[u]).astype(np.int64)
        rows.append(np.stack([np.full(len(chosen), first_user + u), items["id"][chosen],
                              half_stars, times], axis=1))
    return np.concatenate(rows)


# The declared layout `recsys synth --layout interactions` writes: a shop's export, with its
# own column names, ISO 8601 times and an item table, so that the declaration does real work.
DECLARED_CONFIG = "recsys.toml"


# The shop's product table: a category (the product's strongest taste dimension, so that users'
# tastes show as category preferences), a brand within it (missing for some), a description
# whose words echo its taste, a price that rises with its quality (its rating bias), and the
# item genres as tags.
CATEGORIES = ("Kitchen", "Garden", "Books", "Toys", "Sports", "Audio", "Games", "Tools")
BRANDS_PER_CATEGORY = 3
MISSING_BRAND_FRACTION = 0.1
STYLES = ("classic", "modern", "compact", "deluxe")
ITEM_FEATURES = ["category:categorical", "brand:categorical", "tags:multi_categorical",
                 "description:text", "price:log_numeric"]
# The customer table: a segment (the category of the customer's strongest taste, so that it
# predicts what they choose), a region and an age (no signal); a few customers are missing
# from it, as new customers are from a table exported before the log.
REGIONS = ("North", "South", "East", "West", "Central")
USER_FEATURES = ["segment:categorical", "region:categorical", "age:numeric"]
MISSING_CUSTOMER_FRACTION = 0.05


def declaration(fmt: str) -> InteractionsLayout:
    """What ``generate(..., layout="interactions", fmt=fmt)`` writes, declared."""
    return InteractionsLayout(
        files=f"interactions.{fmt}", user_column="customer_id", item_column="product_id",
        timestamp_column="event_time", timestamp_unit="iso8601", rating_column="stars",
        min_rating=0.5, max_rating=5.0, items_file=f"products.{fmt}",
        item_id_column="product_id", title_column="name", item_features=list(ITEM_FEATURES),
        users_file=f"customers.{fmt}", user_id_column="customer_id",
        user_features=list(USER_FEATURES))


def customer_table(tastes: np.ndarray, seed: int) -> dict[str, list]:
    """The declared user table's columns (see USER_FEATURES) for users 1..len(tastes)."""
    rng = np.random.default_rng([seed, 2])
    n = len(tastes)
    listed = np.flatnonzero(rng.random(n) >= MISSING_CUSTOMER_FRACTION)
    segment = np.argmax(tastes, axis=1) % len(CATEGORIES)
    region = rng.integers(0, len(REGIONS), size=n)
    age = rng.integers(18, 80, size=n)
    return {"customer_id": [f"C{u + 1}" for u in listed.tolist()],
            "segment": [CATEGORIES[c] for c in segment[listed].tolist()],
            "region": [REGIONS[r] for r in region[listed].tolist()],
            "age": age[listed].tolist()}


def product_table(items: dict[str, Any], seed: int) -> dict[str, list]:
    """The declared item table's columns (see CATEGORIES), a list per column; drawn from its
    own stream so that the log is the same rows as the GroupLens layout's."""
    rng = np.random.default_rng([seed, 1])
    n = len(items["id"])
    category = np.argmax(items["taste"], axis=1) % len(CATEGORIES)
    brand = rng.integers(0, BRANDS_PER_CATEGORY, size=n)
    has_brand = rng.random(n) >= MISSING_BRAND_FRACTION
    style = 2 * (items["taste"][:, 1] > 0) + (items["taste"][:, 2] > 0)
    price = np.round(np.exp(3.0 + 0.8 * items["bias"] + rng.normal(0.0, 0.3, size=n)), 2)
    names = [CATEGORIES[c] for c in category]
    return {
        "product_id": [_product(m) for m in items["id"].tolist()],
        "name": [f"Synthetic Product {m} ({y})" for m, y in zip(
            items["id"].tolist(), items["year"].tolist(), strict=True)],
        "category": names,
        "brand": [f"{c} Brand {b + 1}" if has else None for c, b, has in zip(
            names, brand.tolist(), has_brand.tolist(), strict=True)],
        "tags": [[GENRES[g] for g in sorted(genres)] for genres in items["genres"]],
        "description": [f"A {STYLES[s]} {c.lower()} item" for s, c in zip(
            style.tolist(), names, strict=True)],
        "price": price.tolist(),
    }


def _product(item_id: int) -> str:
    return f"P{item_id:05d}"


def _iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _write_table(path: str, fmt: str, table: dict[str, list]) -> None:
    """A declared item or user table: Parquet (lists as lists), or CSV (lists joined by |,
    a missing value empty)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        with files.replacing(path, binary=True) as f:
            pq.write_table(pa.table(table), f)
        return
    with files.replacing(path, newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(list(table))
        for row in zip(*table.values(), strict=True):
            writer.writerow(["|".join(v) if isinstance(v, list) else "" if v is None else v
                             for v in row])


def _write_declared(out_dir: str, fmt: str, items: dict[str, Any], seed: int,
                    chunks: Iterator[np.ndarray], tastes: list) -> Iterator[int]:
    """Writes the declared layout's files and recsys.toml; yields each chunk's row count.
    ``tastes`` fills with each chunk's user tastes as the chunks are made."""
    layout = declaration(fmt)
    _write_table(os.path.join(out_dir, layout.items_file), fmt, product_table(items, seed))
    log_path = os.path.join(out_dir, layout.files)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("customer_id", pa.string()), ("product_id", pa.string()),
                            ("event_time", pa.timestamp("s", tz="UTC")),
                            ("stars", pa.float64())])
        with files.replacing(log_path, binary=True) as f, pq.ParquetWriter(f, schema) as out:
            for chunk in chunks:
                out.write_table(pa.table({
                    "customer_id": [f"C{u}" for u in chunk[:, 0].tolist()],
                    "product_id": [_product(m) for m in chunk[:, 1].tolist()],
                    "event_time": pa.array(chunk[:, 3], pa.timestamp("s", tz="UTC")),
                    "stars": chunk[:, 2] / 2.0}, schema=schema))
                yield len(chunk)
    else:
        with files.replacing(log_path, newline="") as f:
            f.write("customer_id,product_id,event_time,stars\n")
            for chunk in chunks:
                f.write("".join(f"C{u},{_product(m)},{_iso(t)},{r / 2:g}\n"
                                for u, m, r, t in chunk.tolist()))
                yield len(chunk)
    _write_table(os.path.join(out_dir, layout.users_file), fmt,
                 customer_table(np.concatenate(tastes), seed))
    lines = ["# Written by recsys synth: this folder's log, declared (docs/own-data.md).",
             "[data]", f'layout = "{declared_layout.KIND}"', "", "[interactions]"]
    for field in dataclasses.fields(layout):
        value = getattr(layout, field.name)
        lines.append(f"{field.name} = {json.dumps(value)}")
    files.atomic_write(os.path.join(out_dir, DECLARED_CONFIG), "\n".join(lines) + "\n")


def generate(out_dir: str, num_ratings: int, *, seed: int = 0, chunk_users: int = 512,
             progress: Optional[Callable[[int, int], None]] = None,
             layout: str = "csv", fmt: str = "csv") -> Shape:
    """Writes ``num_ratings`` ratings: ratings.csv and movies.csv (layout "csv"), or a
    declared log, its item table and recsys.toml (layout "interactions", CSV or Parquet);
    returns their shape."""
    shape = Shape.for_ratings(num_ratings, seed)
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    items = item_table(shape, rng)
    if layout == "csv":
        write_items(os.path.join(out_dir, LAYOUTS["csv"].movies_file), items)
    counts = user_activity(shape, rng)
    tastes: list[np.ndarray] = []
    chunks = (_user_chunk(items, counts[first:first + chunk_users], first + 1, rng, tastes)
              for first in range(0, shape.num_users, chunk_users))
    sizes = (_write_declared(out_dir, fmt, items, seed, chunks, tastes)
             if layout == declared_layout.KIND
             else _write_grouplens(os.path.join(out_dir, LAYOUTS["csv"].ratings_file), chunks))
    written = 0
    for size in sizes:
        written += size
        if progress:
            progress(written, shape.num_ratings)
    return shape


def _write_grouplens(path: str, chunks: Iterator[np.ndarray]) -> Iterator[int]:
    with files.replacing(path, newline="") as f:  # a killed run leaves no half-written log
        f.write(",".join(LAYOUTS["csv"].ratings_header or ()) + "\n")
        for chunk in chunks:
            ratings = [f"{r // 2}.5" if r % 2 else f"{r // 2}.0" for r in chunk[:, 2].tolist()]
            f.write("".join(f"{u},{m},{r},{t}\n" for (u, m, _, t), r in
                            zip(chunk.tolist(), ratings, strict=True)))
            yield len(chunk)
