"""The step's executor process: TF_CONFIG is read (and refused by name) before TFX starts."""

import json
import subprocess
import sys

from recsys_pipeline.kubeflow import entrypoint


def _run(tmp_path, tf_config=None):
    (tmp_path / "fake_tfx.py").write_text(
        "import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(' '.join(sys.argv[2:]))\n")
    script = ("import sys; sys.path.insert(0, sys.argv.pop(1))\n"
              "from recsys_pipeline.kubeflow import run_executor\n"
              "run_executor.main('fake_tfx')\n")
    env = {"PATH": "/usr/bin:/bin", **({"TF_CONFIG": tf_config} if tf_config else {})}
    return subprocess.run([sys.executable, "-c", script, str(tmp_path), str(tmp_path / "ran"),
                           "--flag", "x"], capture_output=True, text=True, timeout=300, env=env)


def test_the_step_runs_the_executor_module_with_its_arguments(tmp_path):
    assert entrypoint.EXECUTOR_MODULE == "recsys_pipeline.kubeflow.run_executor"
    result = _run(tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ran").read_text() == "--flag x"


def test_a_tf_config_that_does_not_place_the_task_stops_the_step_before_tfx(tmp_path):
    config = json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker",
                                                                   "index": 3}})
    result = _run(tmp_path, config)
    assert result.returncode == 2
    assert "recsys executor: TF_CONFIG: this task is worker 3, outside the cluster's 1 " \
           "worker task(s)" in result.stderr
    assert not (tmp_path / "ran").exists()
