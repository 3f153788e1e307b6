"""models.config by version label: a push is canary (the first one stable), promote moves
stable to it, rollback moves stable back; a broken models.config or a label pointing at a
missing version is refused before anything is written. Read back as TF Serving's protos. Every
push also writes TF Serving's batching and monitoring files. Writers take turns on one lock,
which a killed writer does not keep."""

import json
import os
import subprocess
import sys
import time

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from recsys_pipeline import cli
from recsys_pipeline.components import serving_pusher
from recsys_pipeline.errors import OutputError
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.rollback import rollback
from recsys_pipeline.serving import layout, model_config
from tests.components.test_serving_pusher import _model

MODEL = nodes.RANKING_MODEL


def _entries(base, filename=layout.MODELS_CONFIG):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(open(os.path.join(base, filename)).read(), config)
    return {c.name: (list(c.model_version_policy.specific.versions), dict(c.version_labels),
                     c.model_version_policy.WhichOneof("policy_choice"))
            for c in config.model_config_list.config}


def _push(tmp_path, base, name, model=MODEL, labelled=True):
    return serving_pusher.push(_model(tmp_path, name), base, model, {"source_model": name},
                               labelled=labelled).version


def test_canary_promote_rollback_cycle_in_the_models_config_protos(tmp_path):
    base = str(tmp_path / "serving")
    v1 = _push(tmp_path, base, "m1")
    assert _entries(base)[MODEL] == ([v1], {"stable": v1}, "specific")  # the first: stable
    v2 = _push(tmp_path, base, "m2")
    assert _entries(base)[MODEL] == ([v1, v2], {"stable": v1, "canary": v2}, "specific")
    assert model_config.served_version_dir(base, MODEL) == os.path.join(base, MODEL, str(v1))
    # While the canary is undecided, a push is kept on disk unlabelled: TF Serving could not
    # move the canary label onto a version it has not loaded.
    pending = serving_pusher.push(_model(tmp_path, "m3"), base, MODEL, {"source_model": "m3"},
                                  labelled=True)
    assert pending.pushed and f"version {v2} is still the canary" in pending.reason
    assert _entries(base)[MODEL] == ([v1, v2], {"stable": v1, "canary": v2}, "specific")

    # Promote: stable onto the loaded canary; the old stable stays loaded as previous.
    assert model_config.promote(base, MODEL) == model_config.Labels(stable=v2, previous=v1)
    assert _entries(base)[MODEL] == ([v1, v2], {"stable": v2, "previous": v1}, "specific")
    assert model_config.served_version_dir(base, MODEL) == os.path.join(base, MODEL, str(v2))
    with pytest.raises(OutputError, match=f"no canary to promote: stable is version {v2}"):
        model_config.promote(base, MODEL)

    v4 = _push(tmp_path, base, "m4")  # no canary now: labelled canary
    assert _entries(base)[MODEL][1] == {"stable": v2, "previous": v1, "canary": v4}
    with pytest.raises(OutputError, match=f"version {pending.version} is not in service: TF "
                                          f"Serving moves .* the previous stable, version {v1}"):
        rollback(base, MODEL, pending.version)
    result = rollback(base, MODEL, v1)  # stable back onto the loaded previous; canary dropped
    assert result.version == v1
    assert layout.versions(os.path.join(base, MODEL)) == [v1, v2, pending.version, v4]
    assert _entries(base)[MODEL] == ([v1], {"stable": v1}, "specific")
    (entry,) = [json.loads(line) for line in open(os.path.join(base, MODEL, layout.ROLLBACK_LOG))]
    assert (entry["from_version"], entry["stable_label"]) == (v2, v1)
    assert entry["withdrawn_source_model"] == "m2"
    # The withdrawn model is not pushed back by a later run that blesses it again.
    again = serving_pusher.push(_model(tmp_path, "m2b"), base, MODEL, {"source_model": "m2"},
                                labelled=True)
    assert not again.pushed and "withdrawn by recsys rollback" in again.reason


def test_labels_are_kept_for_other_models_and_in_the_stock_config(tmp_path):
    base = str(tmp_path / "serving")
    s1 = _push(tmp_path, base, "s1", model=nodes.SCANN_MODEL)
    r1 = _push(tmp_path, base, "r1")
    r2 = _push(tmp_path, base, "r2")
    b1 = _push(tmp_path, base, "b1", model=nodes.BRUTE_FORCE_MODEL, labelled=False)
    entries = _entries(base)
    assert entries[nodes.SCANN_MODEL] == ([s1], {"stable": s1}, "specific")
    assert entries[MODEL] == ([r1, r2], {"stable": r1, "canary": r2}, "specific")
    assert entries[nodes.BRUTE_FORCE_MODEL] == ([], {}, None)  # unlabelled: the newest
    assert layout.versions(os.path.join(base, nodes.BRUTE_FORCE_MODEL)) == [b1]
    stock = _entries(base, layout.STOCK_MODELS_CONFIG)
    assert nodes.SCANN_MODEL not in stock and stock[MODEL] == entries[MODEL]
    # Labels off again: that model serves its newest.
    r3 = _push(tmp_path, base, "r3", labelled=False)
    assert _entries(base)[MODEL] == ([], {}, None)
    assert model_config.served_version_dir(base, MODEL) == os.path.join(base, MODEL, str(r3))


def test_a_broken_models_config_is_refused_with_its_line_and_nothing_is_pushed(tmp_path):
    base = str(tmp_path / "serving")
    v1 = _push(tmp_path, base, "m1")
    path = os.path.join(base, layout.MODELS_CONFIG)
    lines = open(path).read().splitlines()
    lines.insert(3, "    versoin_labels { key: 'stable' value: 1 }")
    open(path, "w").write("\n".join(lines) + "\n")
    with pytest.raises(OutputError, match=r"models.config does not parse at line 4, column 5"):
        _push(tmp_path, base, "m2")
    assert layout.versions(os.path.join(base, MODEL)) == [v1]  # nothing copied
    with pytest.raises(OutputError, match="does not parse at line 4"):
        model_config.promote(base, MODEL)


def test_a_label_pointing_at_a_missing_version_is_refused(tmp_path):
    base = str(tmp_path / "serving")
    v1 = _push(tmp_path, base, "m1")
    path = os.path.join(base, layout.MODELS_CONFIG)
    text = open(path).read().replace(f"value: {v1}", "value: 123")
    open(path, "w").write(text)
    with pytest.raises(OutputError, match=f"label stable of model {MODEL} points at version "
                                          f"123, which is not under .* \\(versions: {v1}\\)"):
        _push(tmp_path, base, "m2")
    assert layout.versions(os.path.join(base, MODEL)) == [v1]
    assert open(path).read() == text  # left as the operator wrote it


def test_cli_promote(tmp_path, capsys):
    base = str(tmp_path / "serving")
    _push(tmp_path, base, "m1")
    config = tmp_path / "c.toml"
    config.write_text(f'[serving]\nbase_dir = "{base}"\nversion_labels = true\n')
    assert cli.main(["promote", "--config", str(config), "--model", MODEL]) == 2
    assert f"{MODEL} has no canary to promote" in capsys.readouterr().err
    v2 = _push(tmp_path, base, "m2")
    assert cli.main(["promote", "--config", str(config), "--model", MODEL]) == 0
    assert f"{MODEL}: stable now points at version {v2}" in capsys.readouterr().out
    assert cli.main(["promote", "--config", str(config), "--model", "rankings"]) == 2
    assert "unknown model 'rankings'" in capsys.readouterr().err
    unlabelled = str(tmp_path / "plain")
    serving_pusher.push(_model(tmp_path, "p1"), unlabelled, MODEL, {"source_model": "p1"})
    with pytest.raises(OutputError, match=f"{MODEL} is not served by label"):
        model_config.promote(unlabelled, MODEL)


def test_every_push_writes_tf_servings_batching_and_monitoring_files(tmp_path):
    from recsys_pipeline.pipeline.config import ServingConfig
    from recsys_pipeline.serving import server_settings

    base = str(tmp_path / "serving")
    settings = server_settings.ServerSettings.of(ServingConfig(max_batch_size=32))
    assert server_settings.ServerSettings.from_json(settings.to_json()) == settings
    serving_pusher.push(_model(tmp_path, "m1"), base, MODEL, {"source_model": "m1"},
                        settings=settings)
    batching = open(os.path.join(base, server_settings.BATCHING_FILE)).read()
    assert batching == ("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000 }\n"
                        "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 100 }\n")
    monitoring = open(os.path.join(base, server_settings.MONITORING_FILE)).read()
    assert monitoring == ('prometheus_config {\n  enable: true\n'
                          '  path: "/monitoring/prometheus/metrics"\n}\n')


_PUSHER = """
import sys, time
from recsys_pipeline.components import serving_pusher
from recsys_pipeline.serving import model_config
read = model_config.read_labels
def slow_read(serving_dir):  # widens the read-edit-write window that a lock must cover
    labels = read(serving_dir)
    time.sleep(0.3)
    return labels
model_config.read_labels = slow_read
serving_pusher.push(sys.argv[1], sys.argv[2], sys.argv[3], {"source_model": sys.argv[3]},
                    labelled=True)
"""


def test_concurrent_pushes_keep_every_model_and_label(tmp_path):
    source = _model(tmp_path, "m")
    base = tmp_path / "serving"
    names = [f"model_{i}" for i in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", _PUSHER, source, str(base), name])
             for name in names]
    assert [p.wait(timeout=300) for p in procs] == [0] * len(names)
    labels = model_config.read_labels(str(base))
    assert sorted(labels) == names
    for name in names:
        assert labels[name] == model_config.Labels(stable=layout.versions(str(base / name))[0])


_HOLDER = """
import sys, time
from recsys_pipeline.serving import model_config
with model_config.locked(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_writer_leaves_no_lock_and_a_live_one_is_named(tmp_path):
    base = str(tmp_path / "serving")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, base], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=rf"{model_config.LOCK_FILE}: another writer of "
                           rf"models.config \(pid {holder.pid} on .*\) held it for over 0.5 s; "
                           "nothing was changed"):
            with model_config.locked(base, timeout=0.5):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs
        holder.wait()
    started = time.monotonic()
    with model_config.locked(base, timeout=5), model_config.locked(base):  # and it nests
        assert time.monotonic() - started < 5
