"""Bulk recommendations: every known user's top k, as Parquet, equal to the servable's own
answers, never a rated item, with the coverage counted in the same Beam pipeline."""

import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from recsys_pipeline.errors import OutputError
from recsys_pipeline.serving import bulk, list_metrics, two_stage
from tests.conftest import beam_pipeline
from tests.trainer.conftest import rated_items

K = 4


@pytest.fixture(scope="module")
def servable(stages, tmp_path_factory):
    """The two-stage recommender over the ScaNN stage, saved."""
    _, scann_dir, ranking_dir = stages
    out = str(tmp_path_factory.mktemp("bulk") / "recommender")
    two_stage.build(scann_dir, ranking_dir, out, 1.0)
    return out


def test_writes_every_known_users_top_k_as_the_servable_answers(servable, tiny, tmp_path):
    users = bulk.known_users(servable)
    assert set(users) == {r["user_id"] for r in tiny.raw_train_rows}  # the train vocabulary
    path = str(tmp_path / "out" / "recs.parquet")
    report = bulk.write(servable, path, K, 7, beam_pipeline())
    table = pq.read_table(path).to_pylist()
    assert report.files == [path] and report.rows == len(table) and report.users == len(users)
    assert [name for name, _ in bulk.COLUMNS] == pq.read_schema(path).names
    served = tf.saved_model.load(servable).signatures["serving_default"](
        user_id=tf.constant(users), timestamp=tf.constant([0] * len(users), tf.int64),
        k=tf.constant([K] * len(users), tf.int64))
    rated = rated_items(tiny)
    by_user: dict[str, list] = {}
    for row in sorted(table, key=lambda r: (r["user_id"], r["rank"])):
        by_user.setdefault(row["user_id"], []).append(row)
    for i, user in enumerate(users):
        rows = by_user[user.decode()]
        expected = [m for m in served["item_ids"].numpy()[i] if m]
        assert [r["item_id"].encode() for r in rows] == expected
        assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
        assert not {r["item_id"].encode() for r in rows} & rated[user]
        assert [r["score"] for r in rows] == pytest.approx(
            served["scores"].numpy()[i][:len(rows)].tolist(), rel=1e-6)
    lists = [[r["item_id"] for r in rows] for rows in by_user.values()]
    assert report.coverage == pytest.approx(list_metrics.coverage(lists, report.catalogue_size))
    assert report.covered == len({m for ids in lists for m in ids})


def test_sharded_output_and_bad_requests(servable, tmp_path):
    report = bulk.write(servable, str(tmp_path / "recs"), K, 5, beam_pipeline(),
                        single_file=False)
    assert report.files and all(f.endswith(".parquet") for f in report.files)
    assert sum(pq.read_table(f).num_rows for f in report.files) == report.rows
    with pytest.raises(OutputError, match="k 21 must be from 1 to the 20 candidates"):
        bulk.write(servable, str(tmp_path / "x.parquet"), 21, 5, beam_pipeline())
    with pytest.raises(OutputError, match="carries no user vocabulary"):
        bulk.known_users(str(tmp_path))
