"""Training under TF_CONFIG: the task it names, refusals, and two local workers training the
retrieval and ranking models as one (MultiWorkerMirroredStrategy on loopback ports)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recsys_pipeline.errors import ConfigError, TrainingError
from recsys_pipeline.trainer import distribute, inputs
from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams


def _config(cluster, kind="worker", index=0):
    return {distribute.ENV: json.dumps({"cluster": cluster, "task": {"type": kind,
                                                                      "index": index}})}


def test_the_task_is_read_from_tf_config():
    assert distribute.task_from({}) is None
    assert distribute.task_from({distribute.ENV: " "}) is None
    assert distribute.task_from({distribute.ENV: '{"task": {"type": "worker"}}'}) is None
    two = {"worker": ["a:1", "b:2"]}
    first, second = (distribute.task_from(_config(two, index=i)) for i in (0, 1))
    assert (first.replicas, first.is_chief, second.is_chief) == (2, True, False)
    with_chief = {"chief": ["c:0"], "worker": ["a:1", "b:2"]}
    chief = distribute.task_from(_config(with_chief, "chief"))
    worker = distribute.task_from(_config(with_chief, "worker", 0))
    assert (chief.replicas, chief.is_chief, worker.is_chief) == (3, True, False)


@pytest.mark.parametrize("environ, message", [
    ({distribute.ENV: "{cluster: 1"}, r"TF_CONFIG does not parse as JSON"),
    ({distribute.ENV: "[1]"}, r"TF_CONFIG is '\[1\]'; expected an object"),
    (_config({"worker": ["a:1", "b:2"]}, index=2),
     r"TF_CONFIG: this task is worker 2, outside the cluster's 2 worker task\(s\)"),
    (_config({"worker": ["a:1"]}, "evaluator"),
     r"TF_CONFIG: this task is .*'evaluator'.*, whose type is not in the cluster \(worker\)"),
    (_config({"worker": ["a:1"], "ps": ["p:1"]}),
     r"TF_CONFIG: the cluster has 'ps' tasks; the Trainers run synchronous replicas"),
    (_config({"worker": "a:1"}), r"TF_CONFIG: \"cluster\" must map each task type to a list"),
])
def test_a_tf_config_that_does_not_place_this_task_is_refused(environ, message):
    with pytest.raises(ConfigError, match=message):
        distribute.task_from(environ)


def test_a_cluster_without_the_strategy_made_at_startup_is_refused(monkeypatch):
    monkeypatch.setenv(distribute.ENV, _config({"worker": ["a:1", "b:2"]})[distribute.ENV])
    with pytest.raises(TrainingError, match=r"did not call distribute.initialize\(\) at its "
                                            "start: it would train alone"):
        distribute.strategy()
    # One that ran TensorFlow first cannot make it any more (in a process of its own: the
    # attempt configures this one's collective ops).
    script = ("import tensorflow as tf; tf.constant(1.0) + 1\n"
              "from recsys_pipeline.trainer import distribute\n"
              "distribute.initialize()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode != 0
    assert "this process ran TensorFlow before its strategy was made" in result.stderr


def test_only_the_chief_writes_where_the_export_goes(monkeypatch, tmp_path):
    path = str(tmp_path / "model" / "Format-Serving")
    assert distribute.output_dir(path) == path  # alone
    monkeypatch.setattr(distribute, "_strategy", object())
    cluster = {"worker": ["a:1", "b:2"]}
    monkeypatch.setenv(distribute.ENV, _config(cluster, index=0)[distribute.ENV])
    assert distribute.output_dir(path) == path
    monkeypatch.setenv(distribute.ENV, _config(cluster, index=1)[distribute.ENV])
    written = distribute.output_dir(path)
    assert written == str(tmp_path / "model" / ".worker-1" / "Format-Serving")
    os.makedirs(written)
    os.makedirs(os.path.join(os.path.dirname(written), "WarmStart"))
    os.makedirs(path)
    distribute.discard(written, path)
    assert sorted(os.listdir(tmp_path / "model")) == ["Format-Serving"]


_WORKER = """
import json, sys
from recsys_pipeline.trainer import distribute
distribute.initialize()  # first: before TensorFlow runs anything
from recsys_pipeline.trainer import ranking_trainer, retrieval_trainer
from recsys_pipeline.trainer.hparams import RankingHParams, RetrievalHParams
a = json.loads(sys.argv[1])
retrieval_trainer.train_and_export(
    train_files=a["train"], transform_dir=a["transform"], catalogue_dir=a["catalogue"],
    serving_model_dir=a["out"] + "/retrieval/Format-Serving",
    hp=RetrievalHParams(epochs=a["epochs"]), serving_k=5, eval_k=5)
ranking_trainer.train_and_export(
    train_files=a["train"], eval_files=a["eval"], transform_dir=a["transform"],
    catalogue_dir=a["catalogue"], serving_model_dir=a["out"] + "/ranking/Format-Serving",
    hp=RankingHParams(epochs=a["epochs"], ensemble=1))
"""
EPOCHS = 3


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _top_k_accuracy(path, tiny, fresh_signature):
    serialized = [f.numpy() for f in tf.data.TFRecordDataset(
        inputs.files(tiny.raw_eval_dir), compression_type="GZIP")]
    got = fresh_signature(path, "evaluate", examples=np.array(serialized, dtype=object))
    return float(got["top_k_hit"].mean())


def test_two_workers_train_as_one_and_the_chief_exports(tiny, tmp_path, fresh_signature):
    from recsys_pipeline.trainer import export, ranking_trainer, retrieval_trainer

    out = tmp_path / "two"
    args = json.dumps({"train": tiny.train_files, "eval": tiny.eval_files,
                       "transform": tiny.transform_dir, "catalogue": tiny.catalogue_dir,
                       "out": str(out), "epochs": EPOCHS})
    hosts = [f"localhost:{p}" for p in _free_ports(2)]
    workers = [subprocess.Popen(
        [sys.executable, "-c", _WORKER, args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", distribute.ENV: json.dumps(
            {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}})})
        for i in range(2)]
    logs = [w.communicate(timeout=900)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(log[-3000:] for log in logs)
    for model in ("retrieval", "ranking"):  # the chief's export and weights, nothing else
        assert sorted(os.listdir(out / model)) == ["Format-Serving", "WarmStart"]
    # The chief's export serves, and scores within what single processes trained with other
    # seeds score (each of the two workers trained on half of every batch).
    retrieval = str(out / "retrieval" / "Format-Serving")
    served = fresh_signature(retrieval, "serving_default", user_id=np.array([b"u1"]),
                             timestamp=np.array([880_000_000]))
    assert served["item_ids"].shape == (1, 5)
    ranking = str(out / "ranking" / "Format-Serving")
    rmse = export.read_metadata(ranking).trainer_eval_rmse
    accuracy = _top_k_accuracy(retrieval, tiny, fresh_signature)
    alone_rmse, alone_accuracy = [], []
    for seed in (7, 8, 9):
        path = str(tmp_path / f"seed-{seed}" / "retrieval")
        retrieval_trainer.train_and_export(
            train_files=tiny.train_files, transform_dir=tiny.transform_dir,
            catalogue_dir=tiny.catalogue_dir, serving_model_dir=path,
            hp=RetrievalHParams(epochs=EPOCHS, seed=seed), serving_k=5, eval_k=5)
        alone_accuracy.append(_top_k_accuracy(path, tiny, fresh_signature))
        alone_rmse.append(ranking_trainer.train_and_export(
            train_files=tiny.train_files, eval_files=tiny.eval_files,
            transform_dir=tiny.transform_dir, catalogue_dir=tiny.catalogue_dir,
            serving_model_dir=str(tmp_path / f"seed-{seed}" / "ranking"),
            hp=RankingHParams(epochs=EPOCHS, ensemble=1, seed=seed)).trainer_eval_rmse)
    for got, alone in ((rmse, alone_rmse), (accuracy, alone_accuracy)):
        spread = max(alone) - min(alone)
        assert min(alone) - spread <= got <= max(alone) + spread, (got, alone)
