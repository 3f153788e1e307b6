"""Sampled negatives: never a positive, seeded, distributed as configured (checked by counts)."""

import numpy as np
import pytest

from recsys_pipeline.data import negatives
from recsys_pipeline.errors import ConfigError

# Item i was chosen i times in train (item 0 never): popularity draws item i with weight i + 1.
COUNTS = {f"i{i:02d}": i for i in range(20)}


def test_negatives_are_distinct_never_a_positive_and_ratio_per_positive():
    catalogue = negatives.Catalogue.of(COUNTS, negatives.POPULARITY)
    positives = ["i19", "i18", "i03", "i03"]  # a repeat counts once
    drawn = negatives.sample_user("u1", positives, catalogue, ratio=4, seed=7)
    assert len(drawn) == 12 and len(set(drawn)) == 12
    assert not set(drawn) & set(positives)
    assert set(drawn) <= set(COUNTS)


def test_the_draw_is_seeded_per_user_whatever_the_order():
    catalogue = negatives.Catalogue.of(COUNTS, negatives.UNIFORM)
    users = {f"u{u}": [f"i{u:02d}"] for u in range(10)}
    first = negatives.sample(users, catalogue, ratio=3, seed=1)
    again = negatives.sample(dict(reversed(list(users.items()))), catalogue, ratio=3, seed=1)
    assert sorted(first.pairs) == sorted(again.pairs)
    other = negatives.sample(users, catalogue, ratio=3, seed=2)
    assert sorted(other.pairs) != sorted(first.pairs)


@pytest.mark.parametrize("distribution", negatives.DISTRIBUTIONS)
def test_draws_follow_the_configured_distribution(distribution):
    catalogue = negatives.Catalogue.of(COUNTS, distribution)
    # 4,000 users, each with one positive (item i19) and one negative: i19 is never drawn, the
    # other 19 items in proportion to 1 (uniform) or count + 1 (popularity).
    users = {f"u{u}": ["i19"] for u in range(4000)}
    drawn = negatives.sample(users, catalogue, ratio=1, seed=3)
    got = np.array([sum(1 for _, i in drawn.pairs if i == f"i{k:02d}") for k in range(20)])
    assert got[19] == 0 and got.sum() == 4000
    weight = np.ones(19) if distribution == negatives.UNIFORM else np.arange(1, 20.0)
    expected = 4000 * weight / weight.sum()
    # Pearson's chi-square with 18 degrees of freedom: 42.3 is its 0.999 quantile.
    chi2 = float((((got[:19] - expected) ** 2) / expected).sum())
    assert chi2 < 42.3, (got, expected.round(1))


def test_a_user_with_few_items_left_gets_exactly_those():
    catalogue = negatives.Catalogue.of(COUNTS, negatives.POPULARITY)
    everything_but_two = [i for i in COUNTS if i not in ("i00", "i07")]
    drawn = negatives.sample_user("u1", everything_but_two, catalogue, ratio=5, seed=0)
    assert sorted(drawn) == ["i00", "i07"]


def test_a_user_who_interacted_with_every_item_is_skipped_and_counted():
    catalogue = negatives.Catalogue.of(COUNTS, negatives.UNIFORM)
    sampled = negatives.sample({"all": list(COUNTS), "one": ["i01"]}, catalogue, ratio=2, seed=0)
    assert sampled.skipped == 1
    assert {u for u, _ in sampled.pairs} == {"one"} and len(sampled.pairs) == 2


@pytest.mark.parametrize("ratio", [0, -1, 21])
def test_a_ratio_of_zero_or_above_the_catalogue_is_refused(ratio):
    catalogue = negatives.Catalogue.of(COUNTS, negatives.UNIFORM)
    with pytest.raises(ConfigError, match=rf"negative sampling ratio is {ratio}; expected 1 "
                                          r"to the catalogue's 20 items"):
        negatives.sample({"u": ["i01"]}, catalogue, ratio=ratio, seed=0)


def test_an_unknown_distribution_or_an_empty_catalogue_is_refused():
    with pytest.raises(ConfigError, match="'zipf': expected one of"):
        negatives.Catalogue.of(COUNTS, "zipf")
    with pytest.raises(ConfigError, match="at least one item"):
        negatives.Catalogue.of({}, negatives.UNIFORM)
