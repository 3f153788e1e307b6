"""A declared interaction log (data.layout = "interactions"): CSV and Parquet read by the
declared columns, timestamps in each unit, the item table, and each bad input named by file,
column and line or row."""

import datetime
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from recsys_pipeline.components import interactions_example_gen
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
    assert [(r.user_id, r.item_id, r.rating) for r in ratings] == [
        ("c1", "SKU-1", 8.0), ("c2", "SKU-2", 3.5)]
    assert ratings[0].timestamp == int(datetime.datetime(
        2026, 11, 30, 10, tzinfo=datetime.timezone.utc).timestamp())
    assert ratings[1].timestamp - ratings[0].timestamp == 1800  # 11:30 at +01:00 is 10:30 UTC
    assert ratings[1].where == f"{tmp_path / 'clicks-1.csv'} line 3"
    items = movielens.load_items(dataset)
    assert items["SKU-1"] == movielens.Item("SKU-1", "Red Kettle", ("kitchen", "red"))
    assert items["SKU-2"] == movielens.Item("SKU-2", "Lamp, tall", ())
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
    assert [(r.user_id, r.item_id, r.rating, r.timestamp) for r in ratings] == [
        ("7", "100", 4.0, 1_700_000_000), ("8", "200", 5.0, 1_700_000_001)]
    assert ratings[1].where.endswith("log.parquet row 2")
    assert movielens.load_items(dataset) == {
        "100": movielens.Item("100", "100", ("a", "b")), "200": movielens.Item("200", "200", ())}
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
    assert dataset.items_file is None and movielens.load_items(dataset) == {}


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


WEIGHTED = InteractionsLayout(**{**LAYOUT.__dict__, "weight_column": "plays"})


def _weighted(tmp_path, rows):
    _write(tmp_path / "clicks-1.csv", "customer,sku,when,stars,plays\n" + rows)
    _write(tmp_path / "items.csv", "sku,name,tags\nSKU-1,Red Kettle,kitchen\n")
    return movielens.detect_layout(str(tmp_path), "interactions", declaration=WEIGHTED)


def test_a_declared_weight_column_is_read_into_each_interaction_and_its_example(tmp_path):
    dataset = _weighted(tmp_path, "c1,SKU-1,2026-11-30T10:00:00Z,8,3\n"
                                  "c2,SKU-1,2026-11-30T10:00:00Z,8,0.5\n")
    ratings = list(movielens.iter_ratings(dataset))
    assert [r.weight for r in ratings] == [3.0, 0.5]
    item = movielens.load_items(dataset)["SKU-1"]
    example = tf.train.Example.FromString(interactions_example_gen.to_example(
        movielens.join_features(ratings[0], item, None)))
    assert example.features.feature["interaction_weight"].float_list.value == [3.0]
    (tmp_path / "plain").mkdir()
    assert "interaction_weight" not in movielens.join_features(
        list(movielens.iter_ratings(_log(tmp_path / "plain")))[0], item, None)


@pytest.mark.parametrize("value, message", [
    ("-1", r"clicks-1.csv line 2: plays '-1' is negative: a weight counts an interaction"),
    ("nan", r"clicks-1.csv line 2: plays 'nan' is not a finite number \(the interaction's "
            r"weight, interactions.weight_column\)"),
    ("many", r"line 2: plays 'many' is not a finite number"),
    ("", r"line 2: plays '' is not a finite number"),
])
def test_a_negative_nan_or_missing_weight_is_named_by_file_line_and_column(tmp_path, value,
                                                                          message):
    dataset = _weighted(tmp_path, f"c1,SKU-1,2026-11-30T10:00:00Z,8,{value}\n")
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
        movielens.load_items(dataset)
    _write(tmp_path / "items.csv", "sku,title\nA,a\n")
    with pytest.raises(DataError, match=r"items.csv: column 'name' is missing"):
        movielens.load_items(dataset)
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
    assert InteractionsLayout(weight_column="rating").problems() == [
        "interactions: column 'rating' is declared for two fields"]
    assert InteractionsLayout(repeats="sum", rating_values=[1, 6]).problems() == [
        "interactions.repeats is 'sum'; expected one of ('newest', 'refuse')",
        "interactions.rating_values holds 6, not a number in [1, 5] (min_rating, max_rating)"]


def test_declared_rating_values_refuse_any_other(tmp_path):
    whole = InteractionsLayout(files="log.csv", rating_values=[1, 2, 3, 4, 5])
    _write(tmp_path / "log.csv", "user_id,item_id,timestamp,rating\nu,i,1700000000,4\n"
                                 "u,j,1700000000,3.5\n")
    dataset = movielens.detect_layout(str(tmp_path), "interactions", declaration=whole)
    with pytest.raises(DataError, match=r"log.csv line 3: rating '3.5' is not one of the log's "
                                        r"ratings \(1, 2, 3, 4, 5; interactions.rating_values\)"):
        list(movielens.iter_ratings(dataset))


def test_headerless_files_in_other_dialects_are_read_by_their_declared_columns(tmp_path):
    # MovieLens 1M's shape: "::" between fields, no header rows, a latin-1 item table whose
    # categories are flag columns, a tab-separated user table.
    dialects = InteractionsLayout(
        files="ratings.dat", delimiter="::", header=["user", "item", "stars", "when"],
        user_column="user", item_column="item", rating_column="stars", timestamp_column="when",
        items_file="items.dat", items_delimiter="|", items_encoding="latin-1",
        items_header=["id", "title", "Comedy", "Drama"], item_id_column="id",
        title_column="title", category_flag_columns=["Comedy", "Drama"],
        users_file="users.tsv", users_delimiter="\t", users_header=["uid", "age"],
        user_id_column="uid", user_features=["age:numeric"])
    assert dialects.problems() == []
    _write(tmp_path / "ratings.dat", "1::10::5::978300760\n\n2::11::3::978302109\n")
    (tmp_path / "items.dat").write_bytes("10|Amélie (2001)|1|1\n11|Heat (1995)|0|1\n"
                                         .encode("latin-1"))
    _write(tmp_path / "users.tsv", "1\t25\n2\t40\n")
    dataset = movielens.detect_layout(str(tmp_path), "interactions", declaration=dialects)
    ratings = list(movielens.iter_ratings(dataset))
    assert [(r.user_id, r.item_id, r.rating, r.timestamp) for r in ratings] == [
        ("1", "10", 5.0, 978300760), ("2", "11", 3.0, 978302109)]
    assert ratings[1].where == f"{tmp_path / 'ratings.dat'} line 3"  # the blank line counts
    items = interactions.load_items(dialects, str(tmp_path / "items.dat"))
    assert (items["10"].title, items["10"].genres) == ("Amélie (2001)", ("Comedy", "Drama"))
    assert items["11"].genres == ("Drama",)
    users = interactions.load_users(dialects, str(tmp_path / "users.tsv"))
    assert users["2"].features == (("user_feature_age", (40.0,)),)
    # A line with a field too many or too few names the separator it was split on; a flag
    # that is not 0 or 1 is named by line and column.
    _write(tmp_path / "ratings.dat", "1::10::5::978300760::x\n")
    with pytest.raises(DataError, match=r"ratings.dat line 1: 5 fields, but the declared "
                                        r"header has 4 \(separator '::'\)"):
        list(movielens.iter_ratings(dataset))
    (tmp_path / "items.dat").write_bytes(b"10|Heat|yes|0\n")
    with pytest.raises(DataError, match=r"items.dat line 1: Comedy 'yes' is not a flag"):
        interactions.load_items(dialects, str(tmp_path / "items.dat"))
    (tmp_path / "items.dat").write_bytes("10|Amélie|1|0\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"items.dat line 1: not valid UTF-8 .*declare the "
                                        r"file's encoding"):
        interactions.load_items(InteractionsLayout(**{**dialects.__dict__, "items_encoding":
                                                      "utf-8"}), str(tmp_path / "items.dat"))


def test_the_dialects_of_a_declaration_are_checked():
    bad = InteractionsLayout(delimiter="", header=["user_id", "item_id", "user_id"],
                             items_file="items.csv", items_header=["item_id", ""],
                             users_encoding="klingon", users_delimiter='"')
    assert bad.problems() == [
        "interactions.delimiter is ''; expected a field separator (not empty, no quote or "
        "line break)",
        "interactions.header names 'user_id' twice",
        "interactions.items_header ['item_id', ''] holds an empty name",
        "interactions.users_delimiter is '\"'; expected a field separator (not empty, no "
        "quote or line break)",
        "interactions.users_encoding 'klingon' is not a text encoding Python knows (e.g. "
        "utf-8, latin-1)",
        "interactions.header does not name column 'timestamp', which the declaration reads "
        "(it names: user_id, item_id, user_id)",
    ]


def test_parquet_on_a_remote_filesystem_is_read_through_gfile(tmp_path):
    import tensorflow as tf

    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["i"], "rating": [2.0],
                             "timestamp": [1_700_000_000]}), tmp_path / "log.parquet")
    remote = "ram://declared-test/log.parquet"  # TensorFlow's in-memory filesystem
    tf.io.gfile.makedirs("ram://declared-test")
    tf.io.gfile.copy(str(tmp_path / "log.parquet"), remote, overwrite=True)
    ratings = list(interactions.iter_interactions(InteractionsLayout(files="*.parquet"), remote))
    assert [(r.user_id, r.item_id, r.rating) for r in ratings] == [("u", "i", 2.0)]


FEATURED = InteractionsLayout(
    files="clicks-*.csv", user_column="customer", item_column="sku", timestamp_column="when",
    timestamp_unit="iso8601", rating_column="stars", min_rating=0.0, max_rating=10.0,
    items_file="items.csv", item_id_column="sku", title_column="name",
    categories_separator=";",
    item_features=["brand:categorical", "tags:multi_categorical", "blurb:text",
                   "price:numeric", "weight:log_numeric"])


def _featured(tmp_path, items, name="items.csv"):
    _write(tmp_path / "clicks-1.csv", "customer,sku,when,stars\n" + ROWS)
    if isinstance(items, str):
        _write(tmp_path / name, items)
    else:
        pq.write_table(pa.table(items), tmp_path / name)
    layout = FEATURED if name == "items.csv" else InteractionsLayout(
        **{**FEATURED.__dict__, "items_file": name})
    return movielens.detect_layout(str(tmp_path), "interactions", declaration=layout)


def test_declared_item_features_are_read_by_kind_and_may_be_missing(tmp_path):
    dataset = _featured(tmp_path, "sku,name,brand,tags,blurb,price,weight\n"
                                  "SKU-1,Kettle,Acme,kitchen; red ;,Boils fast,19.5,0\n"
                                  "SKU-2,Lamp,,,,,\n")
    items = movielens.load_items(dataset)
    assert dict(items["SKU-1"].features) == {
        "item_feature_brand": ("Acme",), "item_feature_tags": ("kitchen", "red"),
        "item_feature_blurb": ("Boils fast",), "item_feature_price": (19.5,),
        "item_feature_weight": (0.0,)}
    assert dict(items["SKU-2"].features) == {
        "item_feature_brand": (), "item_feature_tags": (), "item_feature_blurb": (),
        "item_feature_price": (), "item_feature_weight": ()}
    # ExampleGen writes them as raw features: text as bytes, numbers as floats.
    assert movielens.item_features(items["SKU-1"])["item_feature_price"] == [19.5]
    assert movielens.item_features(items["SKU-1"])["item_feature_tags"] == [b"kitchen", b"red"]


def test_declared_item_features_from_parquet_lists_and_integers(tmp_path):
    dataset = _featured(tmp_path, {
        "sku": ["SKU-1", "SKU-2"], "name": ["Kettle", "Lamp"], "brand": [7, None],
        "tags": [["kitchen", "red"], None], "blurb": ["Boils fast", None],
        "price": [19, None], "weight": [1.5, 2.0]}, name="items.parquet")
    items = movielens.load_items(dataset)
    assert dict(items["SKU-1"].features)["item_feature_brand"] == ("7",)
    assert dict(items["SKU-1"].features)["item_feature_tags"] == ("kitchen", "red")
    assert dict(items["SKU-1"].features)["item_feature_price"] == (19.0,)
    assert dict(items["SKU-2"].features)["item_feature_tags"] == ()


@pytest.mark.parametrize("row, message", [
    ("SKU-1,K,Acme,a,b,cheap,1", r"items.csv line 2: price 'cheap' is not a finite number "
                                 r"\(declared numeric\)"),
    ("SKU-1,K,Acme,a,b,nan,1", r"items.csv line 2: price 'nan' is not a finite number"),
    ("SKU-1,K,Acme,a,b,1,-2", r"items.csv line 2: weight '-2' is negative, and log_numeric "
                              r"takes log\(1 \+ x\): declare it numeric"),
])
def test_a_bad_item_feature_value_is_named_by_file_line_and_column(tmp_path, row, message):
    dataset = _featured(tmp_path, "sku,name,brand,tags,blurb,price,weight\n" + row + "\n")
    with pytest.raises(DataError, match=message):
        movielens.load_items(dataset)


def test_a_bad_parquet_item_feature_value_is_named_by_row(tmp_path):
    table = {"sku": ["SKU-1", "SKU-2"], "name": ["K", "L"], "brand": [["a", "b"], ["c"]],
             "tags": [["x"], ["y"]], "blurb": ["b", "c"], "price": [1.0, 2.0],
             "weight": [1.0, 2.0]}
    dataset = _featured(tmp_path, table, name="items.parquet")
    with pytest.raises(DataError, match=r"items.parquet row 1: brand holds a list; declare it "
                                        r"\"brand:multi_categorical\""):
        movielens.load_items(dataset)
    table["brand"] = [1.5, 2.5]
    dataset = _featured(tmp_path, table, name="items.parquet")
    with pytest.raises(DataError, match=r"items.parquet row 1: brand 1.5 is not text or an "
                                        r"integer \(declared categorical\)"):
        movielens.load_items(dataset)
    dataset = _featured(tmp_path, "sku,name,brand,tags,blurb,price\nA,a,b,c,d,1\n")
    with pytest.raises(DataError, match=r"items.csv: column 'weight' is missing"):
        movielens.load_items(dataset)


def test_declared_item_features_are_checked():
    def problems(features, **kw):
        return InteractionsLayout(items_file="items.csv", item_features=features,
                                  **kw).problems()

    assert problems(["brand:categorical", "price:log_numeric"]) == []
    assert problems(["brand:colour"]) == [
        "interactions.item_features 'brand:colour': unknown kind 'colour'; expected one of "
        "('categorical', 'multi_categorical', 'text', 'numeric', 'log_numeric')"]
    assert problems(["brand"]) == [
        "interactions.item_features entry 'brand' is not \"column:kind\""]
    assert problems(["brand:categorical", "brand:text"]) == [
        "interactions.item_features declares column 'brand' twice"]
    assert problems(["item_id:categorical"]) == [
        "interactions.item_features 'item_id:categorical': 'item_id' is the item id column, "
        "which the model already learns from"]
    assert InteractionsLayout(item_features=["brand:categorical"]).problems() == [
        "interactions.item_features needs interactions.items_file (the table the features "
        "are read from)"]


def test_a_declared_user_table_is_read_by_kind_and_joined_to_each_interaction(tmp_path):
    layout = InteractionsLayout(**{**LAYOUT.__dict__, "users_file": "customers.csv",
                                   "user_id_column": "customer",
                                   "user_features": ["segment:categorical", "age:numeric",
                                                     "interests:multi_categorical"]})
    _log(tmp_path)
    _write(tmp_path / "customers.csv", "customer,segment,age,interests\nc1,Garden,34,a;b\n"
                                       "c9,,,\n")
    dataset = movielens.detect_layout(str(tmp_path), "interactions", declaration=layout)
    assert dataset.users_path == str(tmp_path / "customers.csv")
    users = movielens.load_users(dataset)
    assert dict(users["c1"].features) == {"user_feature_segment": ("Garden",),
                                          "user_feature_age": (34.0,),
                                          "user_feature_interests": ("a", "b")}
    assert dict(users["c9"].features)["user_feature_age"] == ()
    rating = next(movielens.iter_ratings(dataset))
    joined = movielens.join_features(rating, movielens.load_items(dataset)["SKU-1"],
                                     users["c1"])
    assert joined["user_feature_segment"] == [b"Garden"] and joined["user_feature_age"] == [34.0]
    # The table is part of the input's fingerprint: a new export reruns ExampleGen.
    before = movielens.fingerprint(dataset)
    _write(tmp_path / "customers.csv", "customer,segment,age,interests\nc1,Toys,34,\n")
    assert movielens.fingerprint(dataset) != before
    _write(tmp_path / "customers.csv", "customer,segment,age,interests\nc1,a,1,\nc1,b,2,\n")
    with pytest.raises(DataError, match=r"customers.csv line 3: user id 'c1' appears twice in "
                                        r"the user table"):
        movielens.load_users(dataset)
    _write(tmp_path / "customers.csv", "customer,segment,age,interests\nc1,a,old,\n")
    with pytest.raises(DataError, match=r"customers.csv line 2: age 'old' is not a finite "
                                        r"number \(declared numeric\)"):
        movielens.load_users(dataset)


def test_declared_user_features_are_checked():
    assert InteractionsLayout(users_file="u.csv", user_features=["age:numeric"]).problems() == []
    assert InteractionsLayout(user_features=["age:numeric"]).problems() == [
        "interactions.user_features needs interactions.users_file (the table the features "
        "are read from)"]
    assert InteractionsLayout(users_file="u.csv", user_features=["user_id:text", "a:x"]
                              ).problems() == [
        "interactions.user_features 'user_id:text': 'user_id' is the user id column, which "
        "the model already learns from",
        "interactions.user_features 'a:x': unknown kind 'x'; expected one of ('categorical', "
        "'multi_categorical', 'text', 'numeric', 'log_numeric')"]
