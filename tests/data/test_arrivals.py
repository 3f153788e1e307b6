"""Daily synthetic spans: calendar-numbered folders the pipeline reads, items and users
arriving, popularity moving, no pair rated twice, and the same bytes from the same seed."""

import csv
import datetime

import numpy as np
import pytest

from recsys_pipeline.data import arrivals, movielens, spans


def _ratings(folder):
    with open(folder / "ratings.csv", newline="") as f:
        return [(int(r["userId"]), int(r["movieId"]), float(r["rating"]), int(r["timestamp"]))
                for r in csv.DictReader(f)]


def _items(folder):
    with open(folder / "movies.csv", newline="") as f:
        return {int(r["movieId"]) for r in csv.DictReader(f)}


def test_days_arrive_as_spans_with_new_items_users_and_moving_popularity(tmp_path):
    shape = arrivals.generate_days(str(tmp_path / "d"), 4, 300, seed=3)
    found = spans.list_spans(str(tmp_path / "d"))
    assert [s.number for s in found] == [20250101, 20250102, 20250103, 20250104]
    days = [tmp_path / "d" / f"span-{s.number}" for s in found]
    ratings = [_ratings(d) for d in days]
    catalogues = [_items(d) for d in days]
    assert [len(r) for r in ratings] == [300] * 4
    pairs = [(u, m) for day in ratings for u, m, _, _ in day]
    assert len(pairs) == len(set(pairs))  # no user rates an item twice, on any day
    for day, catalogue in zip(ratings, catalogues, strict=True):
        assert {m for _, m, _, _ in day} <= catalogue  # only released items are rated
    assert catalogues[0] < catalogues[-1]  # items were released on later days
    assert len(catalogues[0]) == round(shape.num_items * arrivals.PRESENT_AT_START)
    seen = {u for u, _, _, _ in ratings[0]}
    assert {u for u, _, _, _ in ratings[-1]} - seen  # users who were not there on day 1
    times = [t for _, _, _, t in ratings[1]]
    day_2 = datetime.datetime(2025, 1, 2, tzinfo=datetime.timezone.utc).timestamp()
    assert day_2 <= min(times) and max(times) < day_2 + 86_400
    assert {r for day in ratings for _, _, r, _ in day} <= {x / 2 for x in range(1, 11)}
    share = [np.bincount([m for _, m, _, _ in day], minlength=shape.num_items + 1) / 300
             for day in ratings]
    assert np.abs(share[0] - share[-1]).max() > 0.01  # popularity moved
    dataset = spans.span_dataset(str(tmp_path / "d"), 20250103)
    assert dataset.spec.kind == "csv"
    assert len(movielens.load_items(dataset)) == len(catalogues[2])


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    for name in ("a", "b"):
        arrivals.generate_days(str(tmp_path / name), 2, 100, seed=5)
    for day in (20250101, 20250102):
        for file in ("ratings.csv", "movies.csv"):
            assert (tmp_path / "a" / f"span-{day}" / file).read_bytes() == \
                (tmp_path / "b" / f"span-{day}" / file).read_bytes()


def test_span_numbers_are_dates_across_a_month_end():
    assert [arrivals.span_number(d) for d in (0, 30, 31)] == [20250101, 20250131, 20250201]


def test_days_that_would_end_in_the_future_are_refused():
    assert arrivals.max_days(datetime.date(2025, 1, 31)) == 30
    assert arrivals.max_days() >= 600  # two years of daily spans before today
    with pytest.raises(ValueError, match="would end in the future"):
        arrivals.DailyShape.of(arrivals.max_days() + 1, 10)
