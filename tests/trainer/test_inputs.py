"""``inputs.user_history`` / ``history_context``: the GRU4Rec context the DAG's Trainer,
evaluation and serving read, checked on a hand-made history; ``train_stats``' popular items
(the unknown users' fallback), all-time and recency-weighted, against numpy."""

import numpy as np
import tensorflow as tf

from recsys_pipeline.trainer import inputs
from recsys_pipeline.transform import features as F

P = F.LIST_PADDING
USER, ITEM = F.index_name(F.USER_ID), F.index_name(F.ITEM_ID)

# (user_id_index, timestamp, item_id_index), in no particular order.
RATINGS = [(0, 300, 3), (0, 100, 1), (0, 200, 2), (0, 200, 7), (0, 400, 4), (0, 500, 5),
           (1, 150, 9), (1, 50, 8), (2, 10, 6)]


def _history(batch_size=4):
    columns = np.array(RATINGS, np.int64).T
    ds = tf.data.Dataset.from_tensor_slices(
        {USER: columns[0], F.TIMESTAMP: columns[1], ITEM: columns[2]}).batch(batch_size)
    return inputs.user_history(ds)


def _context(history, users, times, length=3):
    return inputs.history_context(tf.constant(history.keys), tf.constant(history.items),
                                  tf.constant(users, tf.int64), tf.constant(times, tf.int64),
                                  length).numpy().tolist()


def test_history_is_sorted_by_user_then_time_whatever_the_batches():
    a, b = _history(4), _history(100)
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.items, b.items)
    assert list(a.items[:-1]) == [1, 2, 7, 3, 4, 5, 8, 9, 6]  # same second: by item
    assert a.items[-1] == P and a.keys[-1] == np.iinfo(np.int64).max  # the sentinel


def test_context_is_the_strictly_earlier_items_oldest_first_left_padded():
    h = _history()
    assert _context(h, [0], [100]) == [[P, P, P]]  # the first rating has no context
    assert _context(h, [0], [200]) == [[P, P, 1]]
    # Two ratings in the same second are not "before" one another...
    assert _context(h, [0, 0], [300, 250]) == [[1, 2, 7], [1, 2, 7]]
    # ...and the context keeps the most recent items, the latest last.
    assert _context(h, [0], [500]) == [[7, 3, 4]]
    assert _context(h, [0], [10**9]) == [[3, 4, 5]]
    assert _context(h, [0], [500], length=7) == [[P, P, 1, 2, 7, 3, 4]]


def test_users_are_kept_apart_and_an_unknown_user_has_no_context():
    h = _history()
    assert _context(h, [1, 2, 1, 0], [10**9, 10**9, 100, 150]) == [
        [P, 8, 9], [P, P, 6], [P, P, 8], [P, P, 1]]
    assert _context(h, [5, 3], [10**9, 10**9]) == [[P, P, P], [P, P, P]]


def test_an_empty_history_gives_empty_contexts():
    empty = inputs.user_history(tf.data.Dataset.from_tensor_slices(
        {USER: np.zeros(0, np.int64), F.TIMESTAMP: np.zeros(0, np.int64),
         ITEM: np.zeros(0, np.int64)}).batch(4))
    assert _context(empty, [0, 1], [100, 10**9]) == [[P, P, P], [P, P, P]]


DAY = 86_400
LATEST = 1_800_000_000
# item -> ages (days before the newest rating) of its ratings: "old" has the most ratings,
# "new" the most recent ones.
AGES = {b"old": [30, 31, 32, 33], b"mid": [6, 8], b"new": [0, 1, 1]}


def _stats(batch_size):
    rows = [(m, LATEST - int(a * DAY)) for m, ages in AGES.items() for a in ages]
    items = np.array([m for m, _ in rows], object)
    ds = tf.data.Dataset.from_tensor_slices({
        F.ITEM_ID: items, F.USER_ID: np.array([b"u"] * len(rows), object),
        F.TIMESTAMP: np.array([t for _, t in rows], np.int64),
        F.LABEL: np.full(len(rows), 4.0, np.float32),
        ITEM: np.zeros(len(rows), np.int64)}).batch(batch_size)
    return inputs.train_stats(ds, num_item_ids=1)


def test_popular_items_all_time_and_recency_weighted_match_numpy():
    for batch_size in (2, 100):
        stats = _stats(batch_size)
        assert stats.popular(3) == [(b"old", 4), (b"new", 3), (b"mid", 2)]
        assert stats.recent_popular(3, 0.0) == [(b"old", 4.0), (b"new", 3.0), (b"mid", 2.0)]
        for half_life in (1.0, 7.0, 100.0):
            expected = {m: float(np.sum(0.5 ** (np.array(a) / half_life)))
                        for m, a in AGES.items()}
            got = stats.recent_popular(3, half_life)
            assert [m for m, _ in got] == sorted(expected, key=lambda m: -expected[m])
            for m, score in got:
                np.testing.assert_allclose(score, expected[m], rtol=1e-9)
        # A week's half-life puts the recent item first; a long one leaves the most rated.
        assert stats.recent_popular(1, 7.0)[0][0] == b"new"
        assert stats.recent_popular(1, 100.0)[0][0] == b"old"


def _train_batches(rows, batch_size):
    """Model-feature batches of (user, item index, segment ids, age z) rows, the segment
    lists padded per batch as Transform's sparse outputs are."""
    segment = F.index_name(F.user_feature("segment"))
    age = F.numeric_name(F.user_feature("age"))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(r[2]) for r in chunk)
        yield {F.USER_ID: np.array([r[0] for r in chunk], object),
               F.ITEM_ID: np.array([b"m%d" % r[1] for r in chunk], object),
               ITEM: np.array([r[1] for r in chunk], np.int64),
               F.TIMESTAMP: np.arange(len(chunk), dtype=np.int64),
               F.LABEL: np.ones(len(chunk), np.float32),
               segment: np.array([r[2] + [P] * (width - len(r[2])) for r in chunk],
                                 np.int64).reshape(len(chunk), width),
               age: np.array([r[3] for r in chunk], np.float32)}


def test_the_user_table_holds_each_users_first_row_of_every_user_feature():
    rows = [(b"u2", 0, [], 0.5), (b"u1", 1, [3], -1.0), (b"u2", 2, [], 0.5),
            (b"u3", 0, [1, 2], 2.0), (b"u1", 1, [3], -1.0)]
    ds = tf.data.Dataset.from_generator(
        lambda: _train_batches(rows, 2),
        output_signature={k: tf.TensorSpec(None, tf.as_dtype(v.dtype if v.dtype != object
                                                             else tf.string))
                          for k, v in next(_train_batches(rows, 2)).items()})
    stats = inputs.train_stats(ds, num_item_ids=3)
    table = stats.users
    assert table.ids.tolist() == [b"u1", b"u2", b"u3"]
    segment = F.index_name(F.user_feature("segment"))
    age = F.numeric_name(F.user_feature("age"))
    assert set(table.columns) == {segment, age}
    # Batches were 1, 2 and 2 wide lists: one table, padded to the widest.
    assert table.columns[segment].tolist() == [[3, P], [P, P], [1, 2]]
    assert table.columns[age].tolist() == [-1.0, 0.5, 2.0]
