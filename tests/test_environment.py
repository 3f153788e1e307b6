"""The installed environment: the declared TF mismatch is the only one; no name shadowing."""

import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys

import recsys_pipeline

REPO = pathlib.Path(__file__).resolve().parents[1]


def _uv() -> str:
    uv = shutil.which("uv") or str(REPO / ".tools" / "uv" / "bin" / "uv")
    assert os.path.exists(uv), "uv not found on PATH or in .tools/ (run make setup)"
    return uv


def test_pip_check_reports_only_the_documented_tensorflow_override():
    result = subprocess.run([_uv(), "pip", "check", "--python", sys.executable],
                            capture_output=True, text=True)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if line.startswith("The package")]
    assert problems, "expected the documented TF 2.20 override to show up in pip check"
    for line in problems:
        assert re.fullmatch(r"The package `[\w-]+` requires `tensorflow>=2\.21[^`]*`, but "
                            r"`2\.20\.\d+` is installed", line), line


def test_tensorflow_is_2_20_with_legacy_keras_and_scann_ops():
    import tensorflow as tf
    from scann.scann_ops.py import scann_ops  # noqa: F401  (loads the TF custom ops)

    assert tf.__version__.startswith("2.20.")
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    assert "tf_keras" in tf.keras.__name__


def test_installed_layout_does_not_shadow_generic_names():
    # Our folders install inside recsys_pipeline: no top-level `pipeline` or `kubeflow`.
    for name in ("pipeline", "components", "trainer", "transform", "data"):
        spec = importlib.util.find_spec(name)
        assert spec is None or "recsys" not in str(spec.origin), name
    kubeflow = importlib.util.find_spec("kubeflow")
    assert kubeflow is None or all(str(REPO) not in p for p in kubeflow.submodule_search_locations)
    assert importlib.util.find_spec("recsys_pipeline.kubeflow") is not None
    assert pathlib.Path(recsys_pipeline.__file__).parent == REPO / "recsys_pipeline"


def test_console_script_is_installed():
    script = pathlib.Path(sys.executable).parent / "recsys"
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "config" in out.stdout
