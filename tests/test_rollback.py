"""recsys rollback: an earlier version served again as the newest, atomically, and recorded
so that later runs do not push the withdrawn model back."""

import json
import os

import pytest

from recsys_pipeline import cli
from recsys_pipeline.components import serving_pusher
from recsys_pipeline.errors import OutputError
from recsys_pipeline.rollback import rollback
from recsys_pipeline.serving import layout
from tests.components.test_serving_pusher import _model


@pytest.fixture
def served(tmp_path):
    base = str(tmp_path / "serving")
    v1 = serving_pusher.push(_model(tmp_path, "good"), base, "ranking",
                             {"source_model": "good"}).version
    v2 = serving_pusher.push(_model(tmp_path, "bad", 9.0), base, "ranking",
                             {"source_model": "bad"}).version
    return base, v1, v2


def test_rollback_republishes_the_old_version_as_the_newest(served):
    base, v1, v2 = served
    result = rollback(base, "ranking", v1)
    v3, path = result.version, result.destination
    assert v3 > v2 and layout.latest_version_dir(base, "ranking") == path
    record = layout.read_push_record(path)
    assert record["source_model"] == "good"
    assert record["rollback"]["from_version"] == v2 and record["rollback"]["to_version"] == v1
    # Same files as the version rolled back to (but its own push record).
    for name in ("saved_model.pb", "assets.extra/tf_serving_warmup_requests"):
        with open(os.path.join(base, "ranking", str(v1), name), "rb") as a, \
                open(os.path.join(path, name), "rb") as b:
            assert a.read() == b.read()
    assert not [n for n in os.listdir(os.path.join(base, "ranking")) if n.startswith(".")]
    (entry,) = [json.loads(line) for line in
                open(os.path.join(base, "ranking", layout.ROLLBACK_LOG))]
    assert entry["withdrawn_source_model"] == "bad" and entry["new_version"] == v3


def test_a_withdrawn_model_is_not_pushed_again(served, tmp_path):
    base, v1, v2 = served
    v3 = rollback(base, "ranking", v1).version
    refused = serving_pusher.push(_model(tmp_path, "bad-again", 9.0), base, "ranking",
                                  {"source_model": "bad"})
    assert refused.version is None and "withdrawn by recsys rollback" in refused.reason
    assert layout.versions(os.path.join(base, "ranking"))[-1] == v3
    # A new model still goes through.
    v4 = serving_pusher.push(_model(tmp_path, "new", 2.0), base, "ranking",
                             {"source_model": "new"}).version
    assert v4 > v3


@pytest.mark.parametrize("model, version, message", [
    ("ranking", 123, "has no version 123"),
    ("rankings", 1, "unknown model 'rankings'"),
])
def test_bad_rollback_requests(served, model, version, message):
    base, _, _ = served
    with pytest.raises(OutputError, match=message):
        rollback(base, model, version)


def test_rollback_to_the_served_version_is_refused(served):
    base, _, v2 = served
    with pytest.raises(OutputError, match="already the newest"):
        rollback(base, "ranking", v2)


def test_cli_rollback(served, capsys, tmp_path):
    base, v1, _ = served
    config = tmp_path / "c.toml"
    config.write_text(f'[serving]\nbase_dir = "{base}"\n')
    assert cli.main(["rollback", "--config", str(config), "--model", "ranking",
                     "--to", str(v1)]) == 0
    out = capsys.readouterr().out
    assert f"now serves version {v1}'s model" in out
    assert cli.main(["rollback", "--config", str(config), "--model", "ranking",
                     "--to", "1"]) == 2
    assert "has no version 1" in capsys.readouterr().err


def test_rollback_to_a_version_pushed_with_movie_names_is_refused(served):
    base, v1, _ = served
    path = os.path.join(base, "ranking", str(v1), "assets.extra", "recsys_model.json")
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    del record["names"]  # what an export written before items were items holds
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f)
    with pytest.raises(OutputError, match=rf"ranking version {v1} \(.*\) was written by an "
                       r"older recsys-pipeline \(movie names: movie_id, movie_ids\)"):
        rollback(base, "ranking", v1)
