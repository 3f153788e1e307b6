"""The run directory: its lock, and each run's own temp directory."""

import fcntl
import os
import tempfile

import pytest

from recsys_pipeline import rundir


@pytest.fixture
def system_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_run_temp_dir_takes_what_tfx_leaves_with_it(system_tmp):
    from tfx.utils import dependency_utils

    with rundir.run_temp_dir() as path:
        assert tempfile.gettempdir() == os.environ["TMPDIR"] == path
        # What every Beam component's executor does when Beam arguments are set: a 41 MB
        # sdist of TFX in a fresh mkdtemp() that TFX never removes.
        args = dependency_utils.make_beam_dependency_flags(["--direct_num_workers=1"])
        sdist = args[-1].removeprefix("--extra_package=")
        assert sdist.startswith(path + os.sep) and os.path.isfile(sdist)
    assert list(system_tmp.iterdir()) == []
    assert tempfile.gettempdir() == os.environ["TMPDIR"] == str(system_tmp)


def test_run_temp_dir_is_removed_when_the_run_fails(system_tmp, monkeypatch):
    monkeypatch.delenv("TMPDIR")
    with pytest.raises(RuntimeError, match="component failed"):
        with rundir.run_temp_dir():
            tempfile.mkdtemp()
            raise RuntimeError("component failed")
    assert list(system_tmp.iterdir()) == []
    assert "TMPDIR" not in os.environ and tempfile.tempdir == str(system_tmp)


def test_a_killed_runs_temp_dir_goes_at_the_next_run_and_a_live_ones_stays(system_tmp):
    killed, live, starting = (system_tmp / f"{rundir.RUN_TEMP_PREFIX}{n}"
                              for n in ("killed", "live", "starting"))
    for path in (killed, live, starting):
        (path / "build").mkdir(parents=True)
    (killed / rundir.RUN_TEMP_OWNER).touch()  # nobody holds its lock any more
    (live / rundir.RUN_TEMP_OWNER).touch()
    with open(live / rundir.RUN_TEMP_OWNER) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a running run holds
        with rundir.run_temp_dir():
            pass
    assert sorted(p.name for p in system_tmp.iterdir()) == sorted([live.name, starting.name])
