"""The sequential-context builder on hand-made histories: order, padding, no future leakage."""

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from recsys_pipeline.data import sequences
from recsys_pipeline.data.sequences import PADDING as P
from tests.conftest import beam_pipeline

# u1 rated out of file order; m3 and m4 were rated in the same second.
HISTORY = [(50, "m5", 4.0), (10, "m1", 5.0), (30, "m3", 3.0), (20, "m2", 1.0), (30, "m4", 2.0)]


def test_contexts_are_earlier_items_in_time_order_left_padded():
    got = {r["item_id"]: r["context"] for r in sequences.user_contexts("u1", HISTORY, 3)}
    assert got == {
        "m1": [P, P, P],  # nothing before the first rating
        "m2": [P, P, "m1"],
        # m3 and m4 share a second: neither is the other's context
        "m3": [P, "m1", "m2"],
        "m4": [P, "m1", "m2"],
        "m5": ["m2", "m3", "m4"],  # only the 3 most recent, oldest dropped
    }


def test_no_context_holds_a_item_rated_at_or_after_its_rating():
    rows = list(sequences.user_contexts("u1", HISTORY, 10))
    when = {m: t for t, m, _ in HISTORY}
    for row in rows:
        assert all(when[m] < row["timestamp"] for m in row["context"] if m != P), row
        assert len(row["context"]) == 10


def test_the_last_rating_is_marked_and_outputs_are_in_time_order():
    rows = list(sequences.user_contexts("u1", HISTORY, 2))
    assert [r["timestamp"] for r in rows] == [10, 20, 30, 30, 50]
    assert [r["item_id"] for r in rows if r["is_last"]] == ["m5"]
    assert [r["rating"] for r in rows] == [5.0, 1.0, 3.0, 2.0, 4.0]


def test_context_length_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        list(sequences.user_contexts("u1", HISTORY, 0))
    with pytest.raises(ValueError, match="at least 1"):
        sequences.BuildContexts(0)


def test_beam_groups_by_user_and_keeps_users_apart():
    ratings = [("u1", m, r, t) for t, m, r in HISTORY] + [("u2", "m9", 2.0, 5),
                                                          ("u2", "m1", 3.0, 15)]
    expected = [(r["user_id"], r["item_id"], tuple(r["context"]), r["is_last"])
                for user, history in [("u1", HISTORY), ("u2", [(5, "m9", 2.0), (15, "m1", 3.0)])]
                for r in sequences.user_contexts(user, history, 2)]
    assert ("u2", "m1", (P, "m9"), True) in expected  # u1's items never reach u2's context
    with beam_pipeline() as p:
        out = (p | beam.Create(ratings) | sequences.BuildContexts(2)
               | beam.Map(lambda r: (r["user_id"], r["item_id"], tuple(r["context"]),
                                     r["is_last"])))
        assert_that(out, equal_to(expected))
