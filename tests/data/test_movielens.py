"""Parsing of the three MovieLens layouts and every bad-input case the parsers own."""

import dataclasses

import pytest

from recsys_pipeline.data import movielens
from recsys_pipeline.errors import DataError
from recsys_pipeline.transform import features as F

from ..conftest import make_csv, make_ml1m, make_ml100k, write


def _ratings(path):
    return list(movielens.iter_ratings(movielens.detect_layout(str(path))))


def test_ml100k_layout_parses_latin1_titles_genres_and_demographics(ml100k):
    ds = movielens.detect_layout(str(ml100k))
    assert ds.spec.kind == "ml-100k" and ds.spec.has_demographics
    items = movielens.load_items(ds)
    assert items["2"].title == "Café au lait (1993)"
    assert items["2"].genres == ("Action", "Comedy")  # names from u.genre, in flag order
    assert items["3"].genres == ("Action",)
    users = movielens.load_users(ds)
    assert users["2"] == movielens.User("2", "F", 53, "other", "94043")
    ratings = _ratings(ml100k)
    assert [(r.user_id, r.item_id, r.rating, r.timestamp, r.line_no) for r in ratings][:2] == [
        ("1", "1", 5.0, 874965758, 1), ("1", "2", 3.0, 876893171, 2)]
    feats = movielens.join_features(ratings[1], items["2"], users["1"])
    assert feats[F.ITEM_TITLE] == ["Café au lait (1993)".encode()]
    assert feats[F.ITEM_GENRES] == [b"Action", b"Comedy"]
    # The demographics as the declared user features MovieLens' preset names
    assert feats[F.user_feature("age")] == [b"24"]
    assert feats[F.user_feature("occupation")] == [b"technician"]
    assert sorted(n for n in feats if F.is_user_feature(n)) == sorted(
        F.user_feature(f.column) for f in movielens.preset("ml-100k").declared_user_features())


def test_ml1m_layout_maps_occupation_codes(ml1m):
    ds = movielens.detect_layout(str(ml1m))
    assert ds.spec.kind == "ml-1m"
    items = movielens.load_items(ds)
    assert items["3"].title == "Amélie (2001)"
    assert items["1"].genres == ("Animation", "Children's", "Comedy")
    users = movielens.load_users(ds)
    assert users["1"].occupation == "K-12 student" and users["1"].age == 1
    assert users["2"].occupation == "self-employed"
    assert [r.rating for r in _ratings(ml1m)] == [5.0, 3.0, 4.0]


def test_csv_layout_quoted_titles_no_genres_half_stars(csv_dataset):
    ds = movielens.detect_layout(str(csv_dataset))
    assert ds.spec.kind == "csv" and not ds.spec.has_demographics
    assert movielens.load_users(ds) is None
    items = movielens.load_items(ds)
    assert items["2"].title == "Dark Knight, The (2008)"
    assert items["3"].genres == ()
    ratings = _ratings(csv_dataset)
    assert [r.rating for r in ratings] == [4.0, 0.5, 3.5]
    assert ratings[0].line_no == 2  # the header is line 1
    assert not [n for n in movielens.join_features(ratings[0], items["1"], None)
                if F.is_user_feature(n)]
    assert movielens.preset("csv").declared_user_features() == []


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*--data-dir"):
        movielens.detect_layout(str(tmp_path / "nope"))


def test_unknown_layout_lists_what_is_there_and_what_is_expected(tmp_path):
    write(tmp_path / "ratings.txt", "1 2 3\n")
    with pytest.raises(DataError) as e:
        movielens.detect_layout(str(tmp_path))
    assert "no known MovieLens layout" in str(e.value)
    assert "ratings.txt" in str(e.value) and "u.data" in str(e.value)


def test_layout_mismatch_with_config(ml100k):
    with pytest.raises(DataError, match=r"holds the ml-100k layout.*data.layout"):
        movielens.detect_layout(str(ml100k), expected="csv")


@pytest.mark.parametrize("line, message", [
    ("1\t1\t5", r"u.data line 2: expected 4 '\\t'-separated fields"),
    ("1\t1\t6\t874965758", r"u.data line 2: rating '6' is outside the ml-100k scale \(1 to 5"),
    ("1\t1\t4.5\t874965758", r"rating '4.5' is outside the ml-100k scale"),
    ("1\t1\tfive\t874965758", r"u.data line 2: rating 'five' is not a number"),
    ("1\t1\t5\t2001-09-09", r"u.data line 2: timestamp '2001-09-09' is not an integer"),
    ("1\t1\t5\t-5", r"u.data line 2: timestamp -5 is negative"),
    ("1\t1\t5\tnan", r"u.data line 2: timestamp 'nan' is not an integer"),
    ("1\t1\t5\t", r"u.data line 2: timestamp '' is not an integer"),
    ("1\t1\tnan\t874965758", r"u.data line 2: rating 'nan' is outside the ml-100k scale"),
    ("x\t1\t5\t874965758", r"u.data line 2: user id must be a positive integer, got 'x'"),
    ("1\t1\t5\t874965758000", r"u.data line 2: timestamp 874965758000 looks like "
                                r"milliseconds \(as seconds it is in the year 29696\); the "
                                r"ratings' timestamps are seconds since 1970"),
    ("1\t1\t5\t4102444800", r"u.data line 2: timestamp 4102444800 \(2100-01-01 00:00 UTC\) "
                              r"lies in the future"),
])
def test_bad_ratings_line_names_file_and_line(tmp_path, line, message):
    d = make_ml100k(tmp_path, ratings=f"1\t1\t5\t874965758\n{line}\n")
    with pytest.raises(DataError, match=message):
        _ratings(d)


def test_csv_rating_scale_allows_half_stars_but_not_zero(tmp_path):
    d = make_csv(tmp_path)
    write(d / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,0.0,964982703\n")
    with pytest.raises(DataError, match=r"ratings.csv line 2: rating '0.0' is outside the csv"):
        _ratings(d)


def test_csv_wrong_header(tmp_path):
    d = make_csv(tmp_path)
    write(d / "ratings.csv", "user,item,rating,ts\n1,1,4.0,964982703\n")
    with pytest.raises(DataError, match=r"ratings.csv line 1: header"):
        _ratings(d)


def test_empty_ratings_file(tmp_path):
    d = make_ml100k(tmp_path, ratings="")
    with pytest.raises(DataError, match="holds no ratings"):
        _ratings(d)


def test_wrong_encoding_utf8_file_given_latin1_bytes(tmp_path):
    d = make_csv(tmp_path, items="movieId,title,genres\n1,Café (2000),Drama\n")
    (d / "movies.csv").write_bytes("movieId,title,genres\n1,Café (2000),Drama\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"movies.csv line 2: not valid utf-8 \(byte 0xe9"):
        movielens.load_items(movielens.detect_layout(str(d)))


@pytest.mark.parametrize("declared", [False, True], ids=["parser", "declaration"])
def test_wrong_encoding_latin1_file_saved_as_utf8(tmp_path, declared):
    d = make_ml100k(tmp_path)
    (d / "u.item").write_bytes("1|Café (1995)|x||x|0|0|1\n".encode("utf-8"))
    dataset = movielens.detect_layout(str(d))
    if declared:  # as ExampleGen reads it
        dataset = movielens.as_declared(dataset, movielens.declared_as(dataset))
    with pytest.raises(DataError, match=r"u.item line 1: text looks UTF-8 encoded.*latin-1"):
        movielens.load_items(dataset)


def test_malformed_item_and_user_lines(tmp_path):
    d = make_ml100k(tmp_path)
    write(d / "u.item", "1|Toy Story (1995)|x||x|0|1\n")
    with pytest.raises(DataError, match=r"u.item line 1: expected 8 '\|'-separated fields"):
        movielens.load_items(movielens.detect_layout(str(d)))
    d = make_ml100k(tmp_path / "b")
    write(d / "u.user", "1|24|X|technician|85711\n")
    with pytest.raises(DataError, match=r"u.user line 1: gender 'X' is not M or F"):
        movielens.load_users(movielens.detect_layout(str(d)))


def test_duplicate_item_id(tmp_path):
    d = make_csv(tmp_path, items="movieId,title,genres\n1,A (1990),Drama\n1,B (1991),Drama\n")
    with pytest.raises(DataError, match=r"movies.csv line 3: item id 1 appears twice"):
        movielens.load_items(movielens.detect_layout(str(d)))


def test_fingerprint_changes_with_content(ml100k):
    ds = movielens.detect_layout(str(ml100k))
    before = movielens.fingerprint(ds)
    assert movielens.fingerprint(ds) == before
    with open(ml100k / "u.data", "a") as f:
        f.write("3\t2\t2\t875071562\n")
    assert movielens.fingerprint(ds) != before


def _read_both_ways(data_dir):
    dataset = movielens.detect_layout(str(data_dir))
    declaration = movielens.declared_as(dataset)
    assert declaration.problems() == []
    # How ExampleGen reads it: the same files as a declared log's, the layout still named.
    declared = movielens.as_declared(dataset, declaration)
    assert declared == dataclasses.replace(movielens.detect_layout(
        str(data_dir), "interactions", declaration=declaration), spec=dataset.spec)
    return [list(reader(d)) if reader is movielens.iter_ratings else reader(d)
            for d in (dataset, declared) for reader in (movielens.iter_ratings,
                                                        movielens.load_items)]


def test_movielens_1m_files_read_through_their_declaration_as_through_the_parser(tmp_path):
    ratings, items, declared_ratings, declared_items = _read_both_ways(make_ml1m(tmp_path))
    assert [(r.user_id, r.item_id, r.rating, r.timestamp) for r in ratings] == [
        (r.user_id, r.item_id, r.rating, r.timestamp) for r in declared_ratings]
    assert items == declared_items


def test_the_grouplens_csv_layout_reads_through_its_declaration_as_through_the_parser(
        tmp_path):
    ratings, items, declared_ratings, declared_items = _read_both_ways(make_csv(tmp_path))
    assert [(r.user_id, r.item_id, r.rating, r.timestamp) for r in ratings] == [
        (r.user_id, r.item_id, r.rating, r.timestamp) for r in declared_ratings]
    assert items == declared_items and items["3"].genres == ()


@pytest.mark.e2e
def test_movielens_100k_read_through_its_declaration_as_through_the_parser(real_ml100k):
    ratings, items, declared_ratings, declared_items = _read_both_ways(real_ml100k)
    assert len(ratings) == 100_000 and len(items) == 1682
    assert [(r.user_id, r.item_id, r.rating, r.timestamp) for r in ratings] == [
        (r.user_id, r.item_id, r.rating, r.timestamp) for r in declared_ratings]
    assert items == declared_items
    assert items["1"].genres == ("Animation", "Children's", "Comedy")
    dataset = movielens.detect_layout(str(real_ml100k))
    users = movielens.load_users(dataset)
    declared_users = movielens.load_users(movielens.as_declared(
        dataset, movielens.declared_as(dataset)))
    assert len(users) == len(declared_users) == 943
    # The same raw features in the examples: the parser's demographics and the declared
    # user features (age, gender and occupation; the zip code read by neither).
    assert {uid: u.raw_features() for uid, u in users.items()} == {
        uid: u.raw_features() for uid, u in declared_users.items()}
    assert [name for name, _ in declared_users["1"].features] == [
        F.user_feature(n) for n in ("age", "gender", "occupation")]
