"""A declared interaction log (data.layout = "interactions"): CSV and Parquet read by the
declared columns, timestamps in each unit, the item table, and each bad input named by file,
column and line or row."""

import datetime
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsys_pipeline.data import interactions, movielens, spans
from recsys_pipeline.data.declaration import InteractionsLayout
from recsys_pipeline.errors import DataError

LAYOUT = InteractionsLayout(
    files="clicks-*.csv", user_column="customer", item_column="sku",
    timestamp_column="when", timestamp_unit="iso8601", rating_column="stars", min_rating=0.0,
    max_rating=10.0, items_file="items.csv", item_id_column="sku", title_column="name",
    categories_column="tags", categories_separator=";")


def _write(path, text):
    path.write_text(text)
    return path


ROWS = "c1,SKU-1,2026-11-30T10:00:00Z,8\nc2,SKU-2,2026-11-30T11:30:00+01:00,3.5\n"


def _log(tmp_path, rows=ROWS):
    _write(tmp_path / "clicks-1.csv", "customer,sku,when,stars\n" + rows)
    _write(tmp_path / "items.csv", "sku,name,tags\nSKU-1,Red Kettle,kitchen;red\n"
                                   "SKU-2,\"Lamp, tall\",\n")
    return movielens.detect_layout(str(tmp_path), "interactions", declaration=LAYOUT)


def test_a_csv_log_is_read_by_its_declared_columns(tmp_path):
    dataset = _log(tmp_path)
    ratings = list(movielens.iter_ratings(dataset))
    assert [(r.user_id, r.movie_id, r.rating) for r in ratings] == [
        ("c1", "SKU-1", 8.0), ("c2", "SKU-2", 3.5)]
    assert ratings[0].timestamp == int(datetime.datetime(
        2026, 11, 30, 10, tzinfo=datetime.timezone.utc).timestamp())
    assert ratings[1].timestamp - ratings[0].timestamp == 1800  # 11:30 at +01:00 is 10:30 UTC
    assert ratings[1].where == f"{tmp_path / 'clicks-1.csv'} line 3"
    items = movielens.load_movies(dataset)
    assert items["SKU-1"] == movielens.Movie("SKU-1", "Red Kettle", ("kitchen", "red"))
    assert items["SKU-2"] == movielens.Movie("SKU-2", "Lamp, tall", ())
    assert movielens.load_users(dataset) is None
    assert movielens.fingerprint(dataset) != movielens.fingerprint(_log(tmp_path, "c1,SKU-1,"
                                                                      "2026-11-30,1\n"))


def test_every_matching_file_is_a_source_and_markers_are_not(tmp_path):
    _log(tmp_path)
    _write(tmp_path / "clicks-2.csv", "stars,when,sku,customer\n1,2026-12-01T00:00:00,SKU-1,c3\n")
    _write(tmp_path / "_SUCCESS", "")
    dataset = movielens.detect_layout(str(tmp_path), "interactions", declaration=LAYOUT)
    assert [s.files for s in dataset.sources()] == [
        (str(tmp_path / "clicks-1.csv"),), (str(tmp_path / "clicks-2.csv"),)]
    assert [r.user_id for r in movielens.iter_ratings(dataset)] == ["c1", "c2", "c3"]


def test_a_parquet_log_with_integer_ids_lists_and_timestamps(tmp_path):
    layout = InteractionsLayout(files="log.parquet", timestamp_unit="milliseconds",
                                items_file="items.parquet", categories_column="tags")
    pq.write_table(pa.table({
        "user_id": [7, 8], "item_id": [100, 200], "rating": [4, 5],
        "timestamp": [1_700_000_000_000, 1_700_000_001_999]}), tmp_path / "log.parquet")
    pq.write_table(pa.table({"item_id": [100, 200], "tags": [["a", "b"], None]}),
                   tmp_path / "items.parquet")
    dataset = movielens.detect_layout(str(tmp_path), "interactions", declaration=layout)
    ratings = list(movielens.iter_ratings(dataset))
    assert [(r.user_id, r.movie_id, r.rating, r.timestamp) for r in ratings] == [
        ("7", "100", 4.0, 1_700_000_000), ("8", "200", 5.0, 1_700_000_001)]
    assert ratings[1].where.endswith("log.parquet row 2")
    assert movielens.load_movies(dataset) == {
        "100": movielens.Movie("100", "100", ("a", "b")), "200": movielens.Movie("200", "200", ())}
    # A Parquet timestamp column is a time, whatever the declared unit.
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5)
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "rating": [1.0],
                             "timestamp": pa.array([moment], pa.timestamp("us"))}),
                   tmp_path / "log.parquet")
    (rating,) = movielens.iter_ratings(movielens.detect_layout(
        str(tmp_path), "interactions", declaration=layout))
    assert rating.timestamp == int(moment.replace(tzinfo=datetime.timezone.utc).timestamp())


def test_without_an_item_table_there_is_no_catalogue_to_load(tmp_path):
    _write(tmp_path / "interactions.csv", "user_id,item_id,timestamp,rating\nu,i,1700000000,3\n")
    dataset = movielens.detect_layout(str(tmp_path), "interactions",
                                      declaration=InteractionsLayout())
    assert dataset.items_file is None and movielens.load_movies(dataset) == {}


def test_span_folders_take_the_item_table_from_their_parent(tmp_path):
    (tmp_path / "span-1").mkdir()
    _log(tmp_path / "span-1")
    (tmp_path / "items.csv").write_bytes((tmp_path / "span-1" / "items.csv").read_bytes())
    (tmp_path / "span-1" / "items.csv").unlink()
    dataset = spans.span_dataset(str(tmp_path), 1, "interactions", LAYOUT)
    assert dataset.items_file == str(tmp_path / "items.csv")
    (tmp_path / "items.csv").unlink()
    with pytest.raises(DataError, match="span 1: interactions.items_file 'items.csv' is in "
                                         "neither"):
        spans.span_dataset(str(tmp_path), 1, "interactions", LAYOUT)


@pytest.mark.parametrize("rows, message", [
    ("c1,,2026-11-30T10:00:00Z,8\n", r"clicks-1.csv line 2: sku is empty"),
    ("c1,SKU-1,yesterday,8\n", r"line 2: when 'yesterday' is not an ISO 8601 time"),
    ("c1,SKU-1,2026-11-30T10:00:00Z,ten\n", r"line 2: stars 'ten' is not a number"),
    ("c1,SKU-1,2026-11-30T10:00:00Z,nan\n", r"line 2: stars 'nan' is outside \[0, 10\]"),
    ("c1,SKU-1,2026-11-30T10:00:00Z,-1\n", r"line 2: stars '-1' is outside \[0, 10\]"),
    ("c1,SKU-1,2999-01-01T00:00:00Z,1\n", r"line 2: when .* lies in the future"),
    ("c1,SKU-1\n", r"line 2: 2 fields, but the header has 4"),
])
def test_a_bad_row_is_named_by_file_line_and_column(tmp_path, rows, message):
    dataset = _log(tmp_path, rows)
    with pytest.raises(DataError, match=message):
        list(movielens.iter_ratings(dataset))


@pytest.mark.parametrize("unit, value, message", [
    ("seconds", "1700000000000", "looks like milliseconds"),
    ("milliseconds", "1700000000", "looks like seconds"),
    ("seconds", "17e8", "is not an integer"),
    ("seconds", "-5", "is negative"),
])
def test_timestamps_against_their_declared_unit(unit, value, message):
    with pytest.raises(DataError, match=f"f.csv line 9: ts .*{message}"):
        interactions.timestamp_seconds(value, unit, "ts", "f.csv line 9")
    assert interactions.timestamp_seconds("1700000000", "seconds", "ts", "w") == 1_700_000_000
    future = str(int(time.time()) + 3 * 86_400)
    with pytest.raises(DataError, match="lies in the future"):
        interactions.timestamp_seconds(future, "seconds", "ts", "w")


def test_bad_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"interactions.files 'clicks-\*.csv' matches no file"):
        movielens.detect_layout(str(tmp_path), "interactions", declaration=LAYOUT)
    _write(tmp_path / "clicks-1.csv", "customer,item,when,stars\nc,i,2026-11-30,1\n")
    _write(tmp_path / "items.csv", "sku,name,tags\nA,a,\nA,b,\n")
    dataset = movielens.detect_layout(str(tmp_path), "interactions", declaration=LAYOUT)
    with pytest.raises(DataError, match=r"clicks-1.csv: column 'sku' is missing \(the header "
                                        r"has: customer, item, when, stars\)"):
        list(movielens.iter_ratings(dataset))
    with pytest.raises(DataError, match=r"items.csv line 3: item id 'A' appears twice"):
        movielens.load_movies(dataset)
    _write(tmp_path / "items.csv", "sku,title\nA,a\n")
    with pytest.raises(DataError, match=r"items.csv: column 'name' is missing"):
        movielens.load_movies(dataset)
    (tmp_path / "clicks-1.csv").write_bytes(b"customer,sku,when,stars\nc,\xff,2026-11-30,1\n")
    with pytest.raises(DataError, match=r"clicks-1.csv line 2: not valid UTF-8 \(byte 0xff at "
                                        r"column 3\)"):
        list(movielens.iter_ratings(dataset))
    (tmp_path / "log.parquet").write_bytes(b"PAR1 this is not parquet")
    parquet = InteractionsLayout(files="*.parquet")
    with pytest.raises(DataError, match=r"log.parquet: not a readable Parquet file"):
        list(movielens.iter_ratings(movielens.detect_layout(
            str(tmp_path), "interactions", declaration=parquet)))
    pq.write_table(pa.table({"user_id": ["u"], "item_id": [1.5], "rating": [1.0],
                             "timestamp": [1_700_000_000]}), tmp_path / "log.parquet")
    with pytest.raises(DataError, match=r"log.parquet row 1: item_id 1.5 is not an id"):
        list(movielens.iter_ratings(movielens.detect_layout(
            str(tmp_path), "interactions", declaration=parquet)))


def test_the_declaration_itself_is_checked():
    assert InteractionsLayout().problems() == []
    bad = InteractionsLayout(format="xlsx", timestamp_unit="days", user_column="id",
                             item_column="id", files="/abs/*.csv", min_rating=5, max_rating=1)
    assert bad.problems() == [
        "interactions.format is 'xlsx'; expected one of ('auto', 'csv', 'parquet')",
        "interactions.timestamp_unit is 'days'; expected one of ('seconds', 'milliseconds', "
        "'iso8601')",
        "interactions.files is '/abs/*.csv'; expected a name or glob relative to the data "
        "directory",
        "interactions: column 'id' is declared for two fields",
        "interactions.min_rating (5) must be below max_rating (1)",
    ]


def test_parquet_on_a_remote_filesystem_is_read_through_gfile(tmp_path):
    import tensorflow as tf

    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "rating": [2.0],
                             "timestamp": [1_700_000_000]}), tmp_path / "log.parquet")
    remote = "ram://declared-test/log.parquet"  # TensorFlow's in-memory filesystem
    tf.io.gfile.makedirs("ram://declared-test")
    tf.io.gfile.copy(str(tmp_path / "log.parquet"), remote, overwrite=True)
    ratings = list(interactions.iter_interactions(InteractionsLayout(files="*.parquet"), remote))
    assert [(r.user_id, r.movie_id, r.rating) for r in ratings] == [("u", "i", 2.0)]
