"""Warm start on the tiny Transform output: rows mapped by vocabulary value (the new
vocabulary is the test's own file, so that users come and go), dense weights copied, and
every reason for a cold start."""

import dataclasses
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline.trainer import models, ranking_trainer, retrieval_trainer, warm_start
from recsys_pipeline.trainer.common import first_batch, save_warm_start, start_from
from recsys_pipeline.trainer.export import read_metadata
from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams
from recsys_pipeline.transform import features as F

HP = RetrievalHParams(embedding_dim=8, id_embedding_dim=8, context_embedding_dim=4,
                      hidden_layers=[8], epochs=1, warm_epochs=1, batch_size=64)
KIND = "retrieval"


def test_row_map_pairs_values_and_out_of_vocabulary_rows():
    to, frm, counts = warm_start.row_map([b"a", b"b", b"c"], [b"b", b"d", b"a"], 4, 4)
    assert list(zip(to.tolist(), frm.tolist(), strict=True)) == [(0, 1), (2, 0), (3, 3)]
    assert counts == warm_start.VocabularyRows(kept=2, new=1, dropped=1)


@pytest.fixture(scope="module")
def base(data, tiny, tmp_path_factory):
    """A trained retrieval model and its warm-start weights (beside a fake serving dir)."""
    model, _, _ = retrieval_trainer.train(data, HP, tiny.train_files)
    serving = tmp_path_factory.mktemp("base") / "Format-Serving"
    save_warm_start([model], KIND, data, str(serving))
    return model, str(serving)


def _build(data, hp):
    return models.build_retrieval(data.sizes, hp, data.stats.item_index_counts,
                                            numeric=data.numeric)


def _weights(model):
    return [w.numpy() for w in model.weights]


def _user_table(model):
    return model.query_tower.user.embeddings.numpy()


def test_saved_weights_carry_the_vocabularies_they_index(base, data):
    model, serving = base
    directory = pathlib.Path(warm_start.weights_dir(serving))
    assert (directory / warm_start.VOCABULARY_DIR / F.USER_ID).read_bytes() == \
        pathlib.Path(data.tft_output.vocabulary_file_by_name(F.USER_ID)).read_bytes()
    tags = warm_start.vocabulary_tags(model)
    assert tags.count(F.USER_ID) == 1 and tags.count(F.ITEM_ID) == 1
    assert None in tags  # the dense layers and the timestamp buckets


def test_rows_follow_their_values_and_new_users_keep_their_own(base, data, tiny, tmp_path):
    model, serving = base
    # The next window's user vocabulary: reversed, u0 gone, a newcomer in its place.
    old = data.tft_output.vocabulary_by_name(F.USER_ID)
    new = [b"newcomer" if v == b"u0" else v for v in reversed(old)]
    new_file = tmp_path / "user_id"
    new_file.write_bytes(b"\n".join(new) + b"\n")

    def vocabulary_file(name):
        return str(new_file) if name == F.USER_ID else data.tft_output.vocabulary_file_by_name(name)

    fresh = _build(data, dataclasses.replace(HP, seed=7))
    models.build_weights(fresh, first_batch(data, tiny.train_files))
    initial = _user_table(fresh).copy()
    start = warm_start.restore([fresh], KIND, vocabulary_file, serving, warm_epochs=1,
                               cold_epochs=5)
    assert start.warm and start.epochs == 1
    assert start.rows[F.USER_ID] == warm_start.VocabularyRows(kept=len(old) - 1, new=1,
                                                              dropped=1)
    base_users, users = _user_table(model), _user_table(fresh)
    for value in (b"u3", b"u17"):
        np.testing.assert_array_equal(users[new.index(value)], base_users[old.index(value)])
    newcomer = new.index(b"newcomer")
    np.testing.assert_array_equal(users[newcomer], initial[newcomer])
    assert not any(np.array_equal(users[newcomer], row) for row in base_users)
    np.testing.assert_array_equal(users[len(new):], base_users[len(old):])  # the OOV rows
    # Every weight without a vocabulary is the base model's, exactly.
    for mine, theirs, tag in zip(_weights(fresh), _weights(model),
                                 warm_start.vocabulary_tags(fresh), strict=True):
        if tag is None:
            np.testing.assert_array_equal(mine, theirs)


def test_another_architecture_starts_cold_and_is_left_as_initialized(base, data, tiny):
    _, serving = base
    other = _build(data, dataclasses.replace(HP, hidden_layers=[16]))
    models.build_weights(other, first_batch(data, tiny.train_files))
    before = _weights(other)
    start = warm_start.restore([other], KIND, data.tft_output.vocabulary_file_by_name, serving,
                               warm_epochs=1, cold_epochs=5)
    assert not start.warm and start.epochs == 5
    assert "architecture differs" in start.reason and "[25, 16]" in start.reason, start.reason
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(other), strict=True))
    assert start.describe().startswith("cold start (the architecture differs")


def test_missing_or_corrupt_base_weights_start_cold_with_the_reason(base, data, tiny, tmp_path):
    model = _build(data, HP)
    missing = start_from(str(tmp_path / "gone" / "Format-Serving"), [model], KIND, data,
                         tiny.train_files, HP)
    assert not missing.warm and "has no warm-start weights" in missing.reason
    _, serving = base
    corrupt = tmp_path / "corrupt"
    for f in pathlib.Path(warm_start.weights_dir(serving)).rglob("*"):
        target = corrupt / "WarmStart" / f.relative_to(warm_start.weights_dir(serving))
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.is_file():
            target.write_bytes(f.read_bytes())
    (corrupt / "WarmStart" / warm_start.WEIGHTS_FILE).write_bytes(b"not a zip file")
    broken = start_from(str(corrupt / "Format-Serving"), [model], KIND, data, tiny.train_files,
                        HP)
    assert not broken.warm and "unreadable" in broken.reason, broken.reason
    assert start_from(None, [model], KIND, data, tiny.train_files, HP).reason.startswith(
        "no base model")
    off = start_from(serving, [model], KIND, data, tiny.train_files,
                     dataclasses.replace(HP, warm_start=False))
    assert not off.warm and off.reason == "warm_start is off"


def test_ranking_members_warm_start_member_by_member(data, tiny, tmp_path):
    hp = RankingHParams(ensemble=2, epochs=1, warm_epochs=1, embedding_dim=4,
                        hidden_layers=[8])
    metadata = ranking_trainer.train_and_export(
        train_files=tiny.train_files, eval_files=tiny.eval_files,
        transform_dir=tiny.transform_dir, catalogue_dir=tiny.catalogue_dir,
        serving_model_dir=str(tmp_path / "base" / "Format-Serving"), hp=hp)
    assert warm_start.WarmStart.from_dict(metadata.warm_start).reason.startswith("no base")
    members = ranking_trainer.build_members(data, hp, tiny.train_files)
    start = start_from(str(tmp_path / "base" / "Format-Serving"), members, "ranking", data,
                       tiny.train_files, hp)
    assert start.warm, start.reason
    saved = np.load(tmp_path / "base" / "WarmStart" / warm_start.WEIGHTS_FILE)
    for i, member in enumerate(members):
        user = member.network.user.embeddings
        j = [w.ref() for w in member.weights].index(user.ref())
        np.testing.assert_array_equal(user.numpy(), saved[f"m{i}_w{j}"])
    single = ranking_trainer.build_members(data, dataclasses.replace(hp, ensemble=1),
                                           tiny.train_files)
    cold = start_from(str(tmp_path / "base" / "Format-Serving"), single, "ranking", data,
                      tiny.train_files, hp)
    assert not cold.warm and "2 members" in cold.reason


def test_a_warm_run_trains_warm_epochs_and_records_its_start(base, tiny, tmp_path):
    _, serving = base
    hp = dataclasses.replace(HP, epochs=3, warm_epochs=1)
    metadata = retrieval_trainer.train_and_export(
        train_files=tiny.train_files, transform_dir=tiny.transform_dir,
        catalogue_dir=tiny.catalogue_dir, serving_model_dir=str(tmp_path / "Format-Serving"),
        hp=hp, serving_k=5, eval_k=5, base_model=serving)
    start = warm_start.WarmStart.from_dict(metadata.warm_start)
    assert start.warm and start.base_model == serving and start.epochs == 1
    assert read_metadata(str(tmp_path / "Format-Serving")).warm_start == metadata.warm_start
    assert tf.io.gfile.exists(str(tmp_path / "WarmStart" / warm_start.WEIGHTS_FILE))
