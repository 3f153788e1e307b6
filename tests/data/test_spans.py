"""Span folders: which exist (and which names, duplicates and empty folders are refused),
which one a run takes, and where each span's catalogue is read from."""

import shutil

import pytest

from recsys_pipeline.data import spans
from recsys_pipeline.errors import DataError
from tests.conftest import make_ml100k


def _spanned(tmp_path, numbers=(1, 2, 3), shared_catalogue=True):
    """A data directory with span-<N> folders holding u.data (the catalogue in the parent)."""
    root = make_ml100k(tmp_path)
    for n in numbers:
        (root / f"span-{n}").mkdir()
        shutil.copy(root / "u.data", root / f"span-{n}" / "u.data")
        if not shared_catalogue:
            for name in ("u.item", "u.user", "u.genre"):
                shutil.copy(root / name, root / f"span-{n}" / name)
    (root / "u.data").unlink()
    return root


def test_a_plain_directory_has_no_spans(tmp_path):
    root = make_ml100k(tmp_path)
    (root / "notes").mkdir()
    assert spans.list_spans(str(root)) == []
    assert spans.list_spans(str(tmp_path / "missing")) == []


def test_spans_are_listed_by_number(tmp_path):
    root = _spanned(tmp_path, numbers=(20261202, 3, 20261130))
    (root / "archive").mkdir()  # other folders are not spans
    assert [s.number for s in spans.list_spans(str(root))] == [3, 20261130, 20261202]
    assert spans.list_spans(str(root))[0].path == str(root / "span-3")


@pytest.mark.parametrize("folder, message", [
    ("span-x1", "is not named span-<integer>"),
    ("span_4", "is not named span-<integer>"),
    ("spans", "is not named span-<integer>"),
])
def test_a_badly_named_span_folder_is_refused(tmp_path, folder, message):
    root = _spanned(tmp_path)
    (root / folder).mkdir()
    (root / folder / "u.data").write_text("1\t1\t5\t1\n")
    with pytest.raises(DataError, match=message) as error:
        spans.list_spans(str(root))
    assert folder in str(error.value)


def test_an_empty_span_folder_is_refused(tmp_path):
    root = _spanned(tmp_path)
    (root / "span-4").mkdir()
    with pytest.raises(DataError, match=r"span folder '.*span-4' is empty"):
        spans.list_spans(str(root))


def test_two_folders_with_the_same_span_number_are_refused(tmp_path):
    root = _spanned(tmp_path)
    shutil.copytree(root / "span-2", root / "span-02")
    with pytest.raises(DataError, match="the folders span-02, span-2 all hold span 2; keep one"):
        spans.list_spans(str(root))


def test_choosing_a_span(tmp_path):
    root = _spanned(tmp_path)
    found = spans.list_spans(str(root))
    # A backlog is taken oldest first; nothing older than the newest ingested span.
    assert spans.choose_span(found, "latest", ingested=[]).number == 1
    assert spans.choose_span(found, "latest", ingested=[1]).number == 2
    assert spans.choose_span(found, "latest", ingested=[3]) is None
    assert [s.number for s in spans.passed_over(found, [3])] == [1, 2]
    assert spans.choose_span(found, "latest", ingested=[1, 2, 3]) is None
    with pytest.raises(DataError, match="span 2 is older than span 3, the newest ingested into "
                                        "'/out': a model trained on it would replace one "
                                        "trained on newer data. Pass --reingest"):
        spans.choose_span(found, "2", ingested=[3], output_dir="/out")
    assert spans.choose_span(found, "2", ingested=[3], reingest=True).number == 2
    assert spans.choose_span(found, "2", ingested=[]).number == 2
    assert spans.choose_span(found, 2, ingested=[2], reingest=True).number == 2
    with pytest.raises(DataError, match=r"there is no span 7 in '/d' \(spans: 1, 2, 3\)"):
        spans.choose_span(found, "7", ingested=[], data_dir="/d")
    with pytest.raises(DataError, match="span 2 was already ingested into '/out'; pass "
                                        "--reingest"):
        spans.choose_span(found, "2", ingested=[2], output_dir="/out")
    with pytest.raises(DataError, match="expected latest or a span number"):
        spans.choose_span(found, "newest", ingested=[])


@pytest.mark.parametrize("shared", [True, False])
def test_a_span_reads_its_catalogue_beside_it_or_in_the_parent(tmp_path, shared):
    root = _spanned(tmp_path, shared_catalogue=shared)
    dataset = spans.span_dataset(str(root), 2)
    assert dataset.ratings_path == str(root / "span-2" / "u.data")
    where = root if shared else root / "span-2"
    assert dataset.items_path == str(where / "u.item")
    assert dataset.users_path == str(where / "u.user")


def test_a_span_without_a_catalogue_is_refused(tmp_path):
    root = _spanned(tmp_path)
    (root / "u.item").unlink()
    with pytest.raises(DataError, match=r"span 2 \(.*span-2\) has u.data but no catalogue: "
                                        r"u.item and u.user must be in the span folder or in"):
        spans.span_dataset(str(root), 2)
    with pytest.raises(DataError, match=r"there is no span 9 in .* \(spans: 1, 2, 3\)"):
        spans.span_dataset(str(root), 9)


def _accepted(number, order=0):
    return spans.AcceptedSpan(number, f"/examples/{number}/{order}", order)


def test_the_window_is_the_span_and_the_newest_accepted_spans_before_it():
    earlier = [_accepted(n) for n in (20261128, 20261129, 20261130, 20261201)]
    current = _accepted(20261202, 9)
    # Day numbers across a month end: the window counts spans, not number distances.
    assert [s.number for s in spans.window(earlier, current, 3)] == [
        20261130, 20261201, 20261202]
    assert spans.window(earlier, current, 1) == [current]


def test_a_window_larger_than_the_spans_holds_what_exists():
    earlier = [_accepted(1), _accepted(2)]
    assert [s.number for s in spans.window(earlier, _accepted(3, 5), 7)] == [1, 2, 3]
    assert [s.number for s in spans.window([], _accepted(3, 5), 7)] == [3]


def test_an_ingested_again_span_counts_once_with_its_newest_examples():
    earlier = [_accepted(1, 1), _accepted(2, 2), _accepted(2, 4), _accepted(3, 3)]
    window = spans.window(earlier, _accepted(4, 5), 3)
    assert [(s.number, s.order) for s in window] == [(2, 4), (3, 3), (4, 5)]
    # Re-running span 3 replaces its old ingestion and ignores the newer span 4.
    window = spans.window(earlier + [_accepted(4, 5)], _accepted(3, 6), 3)
    assert [(s.number, s.order) for s in window] == [(1, 1), (2, 4), (3, 6)]
    assert [(s.number, s.order) for s in spans.history(earlier, 2)] == [(2, 4), (3, 3)]


def test_accepted_spans_round_trip_through_json():
    span = _accepted(20261201, 7)
    assert spans.AcceptedSpan.from_json(span.to_json()) == span
