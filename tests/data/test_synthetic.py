"""The synthetic MovieLens-shaped generator: layout, shape, determinism, bounded memory."""

import collections
import tracemalloc

import numpy as np
import pytest

from recsys_pipeline.data import movielens, synthetic


def _read(path):
    ds = movielens.detect_layout(str(path))
    return ds, list(movielens.iter_ratings(ds)), movielens.load_items(ds)


def test_the_pipeline_parser_reads_it_as_the_grouplens_csv_layout(tmp_path):
    shape = synthetic.generate(str(tmp_path), 6_000, seed=3)
    ds, ratings, items = _read(tmp_path)
    assert ds.spec.kind == "csv"
    assert len(ratings) == 6_000 == shape.num_ratings
    assert len(items) == shape.num_items
    pairs = {(r.user_id, r.item_id) for r in ratings}
    assert len(pairs) == len(ratings)  # no duplicate ratings: ExampleGen would refuse them
    assert {r.item_id for r in ratings} <= set(items)
    assert {r.rating for r in ratings} <= set(ds.spec.allowed_ratings)
    per_user = collections.Counter(r.user_id for r in ratings)
    assert len(per_user) == shape.num_users
    assert min(per_user.values()) >= synthetic.MIN_RATINGS_PER_USER
    times = [r.timestamp for r in ratings]
    assert synthetic.START <= min(times) and max(times) <= synthetic.START + synthetic.SPAN_SECONDS
    assert all(1 <= len(m.genres) <= 3 and set(m.genres) <= set(synthetic.GENRES)
               for m in items.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["movies.csv", "ratings.csv"]), list(tmp_path.iterdir())


def test_it_is_shaped_like_movielens(tmp_path):
    synthetic.generate(str(tmp_path), 50_000)
    _, ratings, _ = _read(tmp_path)
    per_item = np.sort(np.array(list(collections.Counter(r.item_id for r in ratings)
                                      .values())))[::-1]
    # Power-law popularity: the top 10% of items draw a large share of the ratings.
    assert per_item[: len(per_item) // 10].sum() / per_item.sum() > 0.35
    per_user = np.array(list(collections.Counter(r.user_id for r in ratings).values()))
    assert per_user.max() > 5 * np.median(per_user)  # a few very active users
    mean = np.mean([r.rating for r in ratings])
    assert 3.0 < mean < 4.0  # MovieLens means are 3.5 to 3.6


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        synthetic.generate(str(tmp_path / name), 3_000, seed=seed)
    read = {n: (tmp_path / n / "ratings.csv").read_bytes() for n in "abc"}
    assert read["a"] == read["b"] != read["c"]


def test_memory_is_bounded_by_a_chunk_not_by_the_dataset(tmp_path):
    def peak(n):
        tracemalloc.start()
        synthetic.generate(str(tmp_path / str(n)), n, chunk_users=64)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(20_000), peak(160_000)
    # 8x the ratings (and ~2.8x the items, which the per-chunk matrix scales with): far
    # less than 8x the memory, because ratings are written chunk by chunk.
    assert large < 2 * small, (small, large)


@pytest.mark.parametrize("n", [0, 19])
def test_too_few_ratings_is_an_error(tmp_path, n):
    with pytest.raises(ValueError, match="at least 20"):
        synthetic.generate(str(tmp_path), n)


@pytest.mark.parametrize("n", [20, 25, 2_000, 3_001])
def test_small_sizes_have_room_for_distinct_ratings(tmp_path, n):
    synthetic.generate(str(tmp_path), n)
    _, ratings, _ = _read(tmp_path)
    assert len(ratings) == n == len({(r.user_id, r.item_id) for r in ratings})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_declared_layout_is_the_same_log_under_its_own_names(tmp_path, fmt):
    from recsys_pipeline.pipeline.config import load_config

    synthetic.generate(str(tmp_path / "grouplens"), 3_000, seed=5)
    synthetic.generate(str(tmp_path / "shop"), 3_000, seed=5, layout="interactions", fmt=fmt)
    config = load_config(str(tmp_path / "shop" / synthetic.DECLARED_CONFIG)).validate()
    assert config.data.layout == "interactions"
    assert config.interactions == synthetic.declaration(fmt)
    ds = movielens.detect_layout(str(tmp_path / "shop"), "interactions",
                                 declaration=config.interactions)
    shop = list(movielens.iter_ratings(ds))
    _, grouplens, items = _read(tmp_path / "grouplens")
    # The same rows, renamed: C<user>, P<item:05d>, ISO times, the same stars.
    assert [(r.user_id, r.item_id, r.rating, r.timestamp) for r in shop] == [
        (f"C{r.user_id}", f"P{int(r.item_id):05d}", r.rating, r.timestamp) for r in grouplens]
    products = movielens.load_items(ds)
    assert len(products) == len(items)
    first = dict(products["P00001"].features)
    assert products["P00001"].title.startswith("Synthetic Product 1 (")
    assert first["item_feature_tags"] == items["1"].genres
    # Every declared kind, read back as ExampleGen writes it.
    (category,) = first["item_feature_category"]
    assert category in synthetic.CATEGORIES
    assert first["item_feature_description"][0].endswith(f"{category.lower()} item")
    (price,) = first["item_feature_price"]
    assert isinstance(price, float) and price > 0
    brands = [dict(p.features)["item_feature_brand"] for p in products.values()]
    missing = sum(1 for b in brands if b == ())
    assert 0 < missing < len(brands) * 0.25  # ~10% have no brand: an empty value is allowed
    assert all(b == () or b[0].startswith(dict(p.features)["item_feature_category"][0])
               for b, p in zip(brands, products.values(), strict=True))
    # The customer table: a segment (a category), a region and an age.
    customers = movielens.load_users(ds)
    assert set(customers) <= {r.user_id for r in shop}
    some = dict(next(iter(customers.values())).features)
    assert some["user_feature_segment"][0] in synthetic.CATEGORIES
    assert some["user_feature_region"][0] in synthetic.REGIONS
    assert 18 <= some["user_feature_age"][0] < 80


def test_the_customer_table_plants_each_customers_strongest_taste_as_their_segment():
    tastes = np.random.default_rng(0).normal(size=(2000, synthetic.TASTE_DIM))
    table = synthetic.customer_table(tastes, seed=4)
    listed = [int(c[1:]) - 1 for c in table["customer_id"]]
    # About 5% are left out, as new customers are from an older export.
    assert 0.92 * len(tastes) < len(listed) < 0.98 * len(tastes)
    for user, segment in zip(listed, table["segment"], strict=True):
        assert segment == synthetic.CATEGORIES[int(np.argmax(tastes[user]))]
    assert set(table["region"]) == set(synthetic.REGIONS)
    assert table == synthetic.customer_table(tastes, seed=4)
