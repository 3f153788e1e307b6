"""InteractionsExampleGen's executor on tiny datasets: joins, splits, orphans, bad lines."""

import glob
import json
import os

import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from recsys_pipeline import rundir
from recsys_pipeline.components.interactions_example_gen import Executor
from recsys_pipeline.data import splits
from recsys_pipeline.errors import DataError
from recsys_pipeline.pipeline.config import PipelineConfig
from recsys_pipeline.transform import features as F

from ..conftest import make_ml100k


def _run(tmp_path, data_dir, split=None, max_orphans=0.01, layout="auto", span=None,
         **extra):
    examples, catalogue = standard_artifacts.Examples(), standard_artifacts.Examples()
    examples.uri, catalogue.uri = str(tmp_path / "examples"), str(tmp_path / "catalogue")
    split = split or {"kind": "random", "eval_fraction": 0.5, "seed": 7, "cutoff_timestamp": None}
    with rundir.run_temp_dir():  # for TFX's sdist of itself, as in `recsys run`
        executor = Executor(Executor.Context(
            beam_pipeline_args=PipelineConfig().beam.pipeline_args, tmp_dir=str(tmp_path / "tmp")))
        executor.Do({}, {"examples": [examples], "catalogue": [catalogue]}, {
            "data_dir": str(data_dir), "layout": layout, "split_config": json.dumps(split),
            "max_orphan_fraction": max_orphans, "input_fingerprint": "",
            **({"span": span} if span is not None else {}), **extra})
    return examples, catalogue


def _holds_nothing(path):
    return not os.path.exists(path) or os.listdir(path) == []


def _read(uri, split):
    files = glob.glob(os.path.join(uri, f"Split-{split}", "*.gz"))
    out = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        ex = tf.train.Example.FromString(record.numpy())
        out.append({k: list(getattr(v, v.WhichOneof("kind")).value) if v.WhichOneof("kind")
                    else [] for k, v in ex.features.feature.items()})
    return out


def test_joined_examples_split_reproducibly(tmp_path, ml100k):
    examples, catalogue = _run(tmp_path, ml100k)
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "eval"]
    rows = {s: _read(examples.uri, s) for s in splits.SPLITS}
    assert sum(len(r) for r in rows.values()) == 4
    for split, exs in rows.items():
        for ex in exs:
            want = splits.random_split(ex[F.USER_ID][0].decode(), ex[F.ITEM_ID][0].decode(),
                                       ex[F.TIMESTAMP][0], seed=7, eval_fraction=0.5)
            assert want == split
    cafe = [ex for exs in rows.values() for ex in exs if ex[F.ITEM_ID] == [b"2"]][0]
    assert cafe[F.ITEM_TITLE] == ["Café au lait (1993)".encode()]
    assert cafe[F.ITEM_GENRES] == [b"Action", b"Comedy"]
    # The demographics, as MovieLens' declaration names them (the zip code is not read).
    assert cafe[F.user_feature("gender")] == [b"M"] and cafe[F.user_feature("age")] == [b"24"]
    assert not [name for name in cafe if "zip" in name]
    assert cafe[F.USER_RATING] == [3.0] and cafe[F.TIMESTAMP] == [876893171]
    items = _read(catalogue.uri, "catalogue")
    assert sorted(m[F.ITEM_ID] for m in items) == [[b"1"], [b"2"], [b"3"]]
    assert set(items[0]) == set(F.ITEM_FEATURES)


def test_csv_layout_has_no_demographics(tmp_path, csv_dataset):
    examples, _ = _run(tmp_path, csv_dataset)
    rows = _read(examples.uri, "train") + _read(examples.uri, "eval")
    assert len(rows) == 3
    assert not [name for r in rows for name in r if F.is_user_feature(name)]
    assert [r[F.ITEM_GENRES] for r in rows if r[F.ITEM_ID] == [b"3"]] == [[]]


def test_temporal_split_with_explicit_and_derived_cutoff(tmp_path, ml100k):
    split = {"kind": "temporal", "eval_fraction": 0.25, "seed": 0,
             "cutoff_timestamp": 876893171}
    examples, _ = _run(tmp_path / "a", ml100k, split)
    assert sorted(r[F.TIMESTAMP][0] for r in _read(examples.uri, "eval")) == [876893171,
                                                                             878542960]
    split["cutoff_timestamp"] = None  # the 75% quantile of the 4 timestamps
    examples, _ = _run(tmp_path / "b", ml100k, split)
    assert [r[F.TIMESTAMP][0] for r in _read(examples.uri, "eval")] == [878542960]
    assert len(_read(examples.uri, "train")) == 3


def test_orphans_below_threshold_are_dropped(tmp_path):
    d = make_ml100k(tmp_path, ratings="1\t1\t5\t874965758\n1\t99\t3\t876893171\n"
                                      "2\t3\t4\t878542960\n9\t1\t1\t875071561\n")
    examples, _ = _run(tmp_path, d, max_orphans=0.5)
    kept = _read(examples.uri, "train") + _read(examples.uri, "eval")
    assert sorted(r[F.ITEM_ID][0] for r in kept) == [b"1", b"1", b"3"]
    # User 9 is not in u.user: kept, without demographics (the curated schema then blocks
    # the run at ExampleValidator, naming the feature).
    (stranger,) = [r for r in kept if r[F.USER_ID] == [b"9"]]
    assert not [name for name in stranger if F.is_user_feature(name)]


def test_orphans_above_threshold_fail_and_leave_no_output(tmp_path):
    d = make_ml100k(tmp_path, ratings="1\t1\t5\t874965758\n1\t99\t3\t876893171\n")
    with pytest.raises(DataError) as e:
        _run(tmp_path, d)
    msg = str(e.value)
    assert "1 of 2 ratings (50.00%)" in msg and "max_orphan_fraction = 0.01" in msg
    assert f"u.data line 2: item id 99 is not in {d / 'u.item'}" in msg
    assert _holds_nothing(tmp_path / "examples") and _holds_nothing(tmp_path / "catalogue")


def test_bad_line_inside_beam_names_file_and_line(tmp_path):
    d = make_ml100k(tmp_path, ratings="1\t1\t5\t874965758\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"u.data line 2: 3 fields, but the declared header has "
                                        r"4 \(separator '\\t'\)"):
        _run(tmp_path, d)
    assert _holds_nothing(tmp_path / "examples") and _holds_nothing(tmp_path / "catalogue")


def test_duplicate_ratings_fail_naming_the_pair_and_lines_and_leave_no_output(tmp_path):
    d = make_ml100k(tmp_path, ratings="1\t1\t5\t874965758\n2\t3\t4\t878542960\n"
                                      "1\t1\t2\t875000000\n")
    with pytest.raises(DataError) as e:
        _run(tmp_path, d)
    msg = str(e.value)
    # MovieLens has one rating per pair: its declaration refuses repeats.
    assert f"{d / 'u.data'} line 3: user 1 and item 1 again (first at {d / 'u.data'} line 1)" \
        in msg
    assert _holds_nothing(tmp_path / "examples") and _holds_nothing(tmp_path / "catalogue")


def test_a_span_is_read_from_its_folder_with_the_shared_catalogue(tmp_path, ml100k):
    # span-2 holds two of the ratings; the item and user files stay in the parent.
    (ml100k / "span-2").mkdir()
    (ml100k / "span-2" / "u.data").write_text("1\t2\t3\t876893171\n2\t3\t4\t878542960\n")
    (ml100k / "span-1").mkdir()
    (ml100k / "span-1" / "u.data").write_text("3\t1\t1\t875071561\n")
    examples, catalogue = _run(tmp_path, ml100k, span=2)
    assert examples.span == 2 and catalogue.span == 2
    rows = _read(examples.uri, "train") + _read(examples.uri, "eval")
    assert sorted(r[F.ITEM_ID][0] for r in rows) == [b"2", b"3"]
    assert {r[F.ITEM_TITLE][0] for r in rows} == {"Café au lait (1993)".encode(), b"Heat (1995)"}
    assert sorted(m[F.ITEM_ID] for m in _read(catalogue.uri, "catalogue")) == [
        [b"1"], [b"2"], [b"3"]]


def test_on_kubeflow_the_step_chooses_the_span_from_its_registry(tmp_path, ml100k):
    (ml100k / "span-1").mkdir()
    (ml100k / "span-1" / "u.data").write_text("3\t1\t1\t875071561\n")
    (ml100k / "span-2").mkdir()
    (ml100k / "span-2" / "u.data").write_text("1\t2\t3\t876893171\n2\t3\t4\t878542960\n")
    registry = str(tmp_path / "registry")
    chosen = {"span_choice": "latest", "span_registry": registry}
    first, _ = _run(tmp_path / "a", ml100k, **chosen)
    second, _ = _run(tmp_path / "b", ml100k, **chosen)
    assert (first.span, second.span) == (1, 2)  # a backlog, oldest first
    with pytest.raises(DataError, match=r"no new span: .* holds spans 1, 2, none newer than "
                                        r"those ingested by earlier runs"):
        _run(tmp_path / "c", ml100k, **chosen)
    again, _ = _run(tmp_path / "d", ml100k, span_choice="2", span_registry=registry)
    assert again.span == 2  # a number is taken again: a scheduler's rerun
    with pytest.raises(DataError, match="there is no span 9"):
        _run(tmp_path / "e", ml100k, span_choice="9", span_registry=registry)


def test_a_malformed_file_in_a_span_names_the_span_file_and_line(tmp_path, ml100k):
    (ml100k / "span-5").mkdir()
    (ml100k / "span-5" / "u.data").write_text("1\t2\t3\t876893171\n2\t3\tfive\t1\n")
    with pytest.raises(DataError, match=r"span-5/u.data line 2: rating 'five' is not a number"):
        _run(tmp_path, ml100k, span=5)
    assert _holds_nothing(str(tmp_path / "examples"))


def _declared(tmp_path, items=True, **overrides):
    from recsys_pipeline.data.declaration import InteractionsLayout

    d = tmp_path / "shop"
    d.mkdir()
    (d / "log-a.csv").write_text("who,what,at,score\nu1,sku-b,1700000000,5\nu1,sku-a,"
                                 "1700000100,2\nu2,sku-b,1700000200,4\n")
    # u1 rated sku-b again later: the newer rating stands.
    (d / "log-b.csv").write_text("who,what,at,score\nu1,sku-b,1700000300,1\nu3,9,1700000400,3\n")
    if items:
        (d / "items.csv").write_text("id,title,tags\nsku-a,Kettle,kitchen|red\nsku-b,Lamp,\n"
                                     "9,Mug,kitchen\n10,Unrated,\n")
    layout = InteractionsLayout(files="log-*.csv", user_column="who", item_column="what",
                                timestamp_column="at", rating_column="score",
                                items_file="items.csv" if items else "", item_id_column="id",
                                title_column="title", categories_column="tags", **overrides)
    return d, json.dumps(__import__("dataclasses").asdict(layout))


def test_a_declared_log_keeps_the_newest_repeat_and_its_item_table(tmp_path):
    d, layout = _declared(tmp_path)
    examples, catalogue = _run(tmp_path, d, layout="interactions", interactions=layout)
    rows = _read(examples.uri, "train") + _read(examples.uri, "eval")
    got = sorted((r[F.USER_ID][0], r[F.ITEM_ID][0], r[F.USER_RATING][0], r[F.ITEM_TITLE][0],
                  r[F.ITEM_GENRES]) for r in rows)
    assert got == [(b"u1", b"sku-a", 2.0, b"Kettle", [b"kitchen", b"red"]),
                   (b"u1", b"sku-b", 1.0, b"Lamp", []),
                   (b"u2", b"sku-b", 4.0, b"Lamp", []),
                   (b"u3", b"9", 3.0, b"Mug", [b"kitchen"])]
    assert not [name for r in rows for name in r if F.is_user_feature(name)]
    # The whole item table, rated or not (streamed: in no fixed order).
    assert sorted(r[F.ITEM_ID][0] for r in _read(catalogue.uri, "catalogue")) == [
        b"10", b"9", b"sku-a", b"sku-b"]


def test_a_declared_log_that_refuses_repeats_names_both_lines_and_writes_nothing(tmp_path):
    d, layout = _declared(tmp_path, repeats="refuse")
    with pytest.raises(DataError, match=r"log-b.csv line 2: user u1 and item sku-b again "
                                        r"\(first at .*log-a.csv line 2\): a repeat, refused by "
                                        r"interactions.repeats = \"refuse\""):
        _run(tmp_path, d, layout="interactions", interactions=layout)
    assert _holds_nothing(str(tmp_path / "examples"))


def test_declared_features_are_written_and_a_user_missing_from_its_table_is_kept(tmp_path):
    d, layout = _declared(tmp_path, item_features=["price:numeric", "tags:multi_categorical"],
                          users_file="users.csv", user_id_column="who",
                          user_features=["segment:categorical"])
    (d / "items.csv").write_text("id,title,tags,price\nsku-a,Kettle,kitchen|red,9.5\n"
                                 "sku-b,Lamp,,\n9,Mug,kitchen,3\n10,Unrated,,1\n")
    (d / "users.csv").write_text("who,segment\nu1,Garden\nu2,\n")  # u3 is not listed
    examples, catalogue = _run(tmp_path, d, layout="interactions", interactions=layout)
    rows = _read(examples.uri, "train") + _read(examples.uri, "eval")
    got = sorted((r[F.USER_ID][0], r[F.ITEM_ID][0], r.get("item_feature_price"),
                  r.get("item_feature_tags"), r.get("user_feature_segment")) for r in rows)
    # A missing value is no feature at all (the schema allows 0 values).
    assert got == [(b"u1", b"sku-a", [9.5], [b"kitchen", b"red"], [b"Garden"]),
                   (b"u1", b"sku-b", None, None, [b"Garden"]),
                   (b"u2", b"sku-b", None, None, None),
                   (b"u3", b"9", [3.0], [b"kitchen"], None)]
    listed = {r[F.ITEM_ID][0]: r.get("item_feature_price")
              for r in _read(catalogue.uri, "catalogue")}
    assert listed == {b"9": [3.0], b"10": [1.0], b"sku-a": [9.5], b"sku-b": None}


def test_without_an_item_table_the_catalogue_is_what_the_log_names(tmp_path):
    d, layout = _declared(tmp_path, items=False)
    _, catalogue = _run(tmp_path, d, layout="interactions", interactions=layout)
    listed = sorted((r[F.ITEM_ID][0], r[F.ITEM_TITLE][0], r[F.ITEM_GENRES])
                    for r in _read(catalogue.uri, "catalogue"))
    assert listed == [(b"9", b"9", []), (b"sku-a", b"sku-a", []), (b"sku-b", b"sku-b", [])]


@pytest.mark.parametrize("table, rows, message", [
    ("items.csv", "id,title,tags\nsku-a,Kettle,\nsku-b,Lamp,\n9,Mug,\nsku-b,Lamp 2,\n",
     r"items.csv line 5: item id 'sku-b' appears twice in the item table \(first at "
     r".*items.csv line 3\)"),
    ("users.csv", "who\nu1\nu2\nu3\nu2\n",
     r"users.csv line 5: user id 'u2' appears twice in the user table \(first at "
     r".*users.csv line 3\)"),
])
def test_an_id_twice_in_a_streamed_table_is_refused_naming_both_lines(tmp_path, table, rows,
                                                                      message):
    d, layout = _declared(tmp_path, users_file="users.csv", user_id_column="who")
    (d / "users.csv").write_text("who\nu1\nu2\nu3\n")
    (d / table).write_text(rows)
    with pytest.raises(DataError, match=message):
        _run(tmp_path, d, layout="interactions", interactions=layout)
    assert _holds_nothing(tmp_path / "examples") and _holds_nothing(tmp_path / "catalogue")


def test_a_declared_log_names_its_orphans_by_file_and_line(tmp_path):
    d, layout = _declared(tmp_path)
    (d / "items.csv").write_text("id,title,tags\nsku-a,Kettle,\nsku-b,Lamp,\n")
    with pytest.raises(DataError) as e:
        _run(tmp_path, d, layout="interactions", interactions=layout)
    # Four after the repeat of u1 and sku-b; the orphan is named by its file and line.
    assert f"1 of 4 ratings (25.00%) refer to an item missing from {d / 'items.csv'}" in str(
        e.value)
    assert f"{d / 'log-b.csv'} line 3: item id 9 is not in {d / 'items.csv'}" in str(e.value)
    assert _holds_nothing(tmp_path / "examples") and _holds_nothing(tmp_path / "catalogue")
