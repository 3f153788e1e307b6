"""SpanWindow: which spans a window holds, how their ratings become train and eval, what the
window records for the next one, and the registry that stands in for the Resolver."""

import json
import os

import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from recsys_pipeline.components import span_window
from recsys_pipeline.components.interactions_example_gen import to_example
from recsys_pipeline.errors import DataError
from recsys_pipeline.transform import features as F


def _span_examples(tmp_path, number, train, eval_, user=None, first_time=None):
    """An ExampleGen output for span ``number`` with ``train``/``eval`` ratings of user u<N>
    (or ``user``), a second apart from ``first_time`` (by default, day N)."""
    artifact = standard_artifacts.Examples()
    artifact.uri = str(tmp_path / f"examples-{number}")
    artifact.span = number
    for split, count in (("train", train), ("eval", eval_)):
        os.makedirs(os.path.join(artifact.uri, f"Split-{split}"))
        path = os.path.join(artifact.uri, f"Split-{split}", "data_tfrecord-00000-of-00001.gz")
        start = (number * 86_400 if first_time is None else first_time) + (
            0 if split == "train" else train)
        with tf.io.TFRecordWriter(path, options="GZIP") as w:
            for i in range(count):
                w.write(to_example({F.USER_ID: [(user or f"u{number}").encode()],
                                    F.ITEM_ID: [f"{split}{i}".encode()],
                                    F.USER_RATING: [4.0], F.TIMESTAMP: [start + i]}))
    return artifact


def _run(tmp_path, examples, previous=None, size=3, kind="random", read_registry=0, name="w"):
    window = standard_artifacts.Examples()
    window.uri = str(tmp_path / name)
    executor = span_window.SpanWindow.EXECUTOR_SPEC.executor_class()
    inputs = {"examples": [examples]}
    if previous is not None:
        inputs["previous_window"] = [previous]
    executor.Do(inputs, {"window": [window]},
                {"window_spans": size, "split_kind": kind, "read_registry": read_registry,
                 "registry": str(tmp_path / "registry")})
    return window


def _users(window, split):
    folder = os.path.join(window.uri, f"Split-{split}")
    files = [os.path.join(folder, n) for n in sorted(os.listdir(folder))]
    users = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        users.append(example.features.feature[F.USER_ID].bytes_list.value[0].decode())
    return sorted(set(users)), len(users)


def _days(tmp_path, kind="random", size=3, read_registry=0):
    windows = []
    for number in (1, 2, 3, 4):
        previous = windows[-1] if windows and not read_registry else None
        windows.append(_run(tmp_path, _span_examples(tmp_path, number, 4, 1), previous,
                            size, kind, read_registry, name=f"w{number}"))
    return windows


def test_each_window_holds_the_span_and_the_spans_before_it(tmp_path):
    windows = _days(tmp_path)
    assert [w.get_string_custom_property("window_spans") for w in windows] == [
        "1", "1,2", "1,2,3", "2,3,4"]
    last = windows[-1]
    assert last.span == 4
    assert artifact_utils.decode_split_names(last.split_names) == ["train", "eval"]
    assert _users(last, "train") == (["u2", "u3", "u4"], 12)
    assert _users(last, "eval") == (["u2", "u3", "u4"], 3)
    assert last.get_int_custom_property("window_ratings") == 15
    record = span_window.read_window(last.uri)
    assert record["spans"] == [2, 3, 4] and record["split"] == span_window.WITHIN_SPANS
    assert [h["number"] for h in record["history"]] == [1, 2, 3, 4]


def test_next_span_trains_on_the_older_spans_and_evaluates_on_the_newest(tmp_path):
    first, *_, last = _days(tmp_path, kind="next_span")
    assert _users(last, "train") == (["u2", "u3"], 10)
    assert _users(last, "eval") == (["u4"], 5)
    assert last.get_string_custom_property("window_split") == span_window.NEXT_SPAN
    # A lone span has nothing older to train on: its own time split, said in the record.
    assert _users(first, "eval") == (["u1"], 1)
    assert first.get_string_custom_property("window_split") == span_window.WITHIN_SPANS


def test_a_window_larger_than_the_spans_uses_those_and_says_so(tmp_path, caplog):
    window = _run(tmp_path, _span_examples(tmp_path, 5, 2, 1), size=7)
    assert window.get_string_custom_property("window_spans") == "5"
    assert "window_spans is 7 but only 1 accepted span(s) exist up to span 5" in caplog.text


def test_the_registry_gives_the_same_windows_as_the_resolver(tmp_path):
    by_resolver = _days(tmp_path / "resolver")
    by_registry = _days(tmp_path / "registry", read_registry=1)
    assert [w.get_string_custom_property("window_spans") for w in by_registry] == [
        w.get_string_custom_property("window_spans") for w in by_resolver]
    records = sorted(os.listdir(tmp_path / "registry" / "registry"))
    assert len(records) == 4
    with open(tmp_path / "registry" / "registry" / records[-1]) as f:
        assert json.load(f)["window_uri"] == by_registry[-1].uri


def test_an_accepted_span_whose_examples_are_gone_is_named(tmp_path):
    first = _run(tmp_path, _span_examples(tmp_path, 1, 2, 1), name="w1")
    tf.io.gfile.rmtree(str(tmp_path / "examples-1" / "Split-train"))
    with pytest.raises(Exception, match=r"examples-1, have no train split.*--reingest"):
        _run(tmp_path, _span_examples(tmp_path, 2, 2, 1), first, name="w2")


def test_a_span_delivered_again_is_refused_naming_both_spans(tmp_path):
    first = _run(tmp_path, _span_examples(tmp_path, 1, 4, 2), name="w1")
    again = _span_examples(tmp_path / "again", 2, 4, 2, user="u1", first_time=86_400)
    with pytest.raises(DataError, match=r"span 2 repeats 6 of its 6 ratings from span 1 \(same "
                       r"user, item and timestamp; e\.g\. user u1, item train0 at 86400\): "
                       "a span delivered again. Nothing was trained or pushed"):
        _run(tmp_path, again, previous=first, name="w2")
    assert not os.path.exists(tmp_path / "w2" / span_window.WINDOW_FILE)


def test_a_span_with_nothing_newer_is_refused_as_a_backfill(tmp_path):
    first = _run(tmp_path, _span_examples(tmp_path, 1, 4, 2), name="w1")
    older = _span_examples(tmp_path / "old", 2, 4, 2, first_time=86_400 - 30 * 86_400)
    with pytest.raises(DataError, match=r"span 2 holds nothing newer than span 1: its newest "
                       r"rating is at 1969-12-03 00:00:05 UTC, span 1's at 1970-01-02 00:00:05 "
                       "UTC"):
        _run(tmp_path, older, previous=first, name="w2")
