"""The run directory: its lock, and each run's own temp directory."""

import fcntl
import os
import tempfile

import pytest

from recsys_pipeline import rundir
from recsys_pipeline.errors import OutputError


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


def test_a_new_output_dir_is_stamped_with_the_names_and_reread(tmp_path):
    out, store = str(tmp_path / "out"), str(tmp_path / "out" / "metadata.sqlite")
    rundir.check_names(out, store)
    with open(os.path.join(out, rundir.NAMES_FILE), encoding="utf-8") as f:
        assert f.read() == "users-items/2\n"
    open(store, "w").close()  # a run happened: the stamp still says this code's names
    rundir.check_names(out, store)


def test_an_output_dir_written_with_movie_names_is_refused(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "metadata.sqlite").write_bytes(b"")  # a store and no stamp: before the stamp
    with pytest.raises(OutputError, match=r"'.*old' was written by an older recsys-pipeline "
                       r"\(movie names: movie_id, movie_ids\).*fresh --output-dir"):
        rundir.check_names(str(out), str(out / "metadata.sqlite"))
    assert not (out / rundir.NAMES_FILE).exists()  # refused, not adopted


def test_an_output_dir_stamped_with_other_names_is_refused(tmp_path):
    (tmp_path / rundir.NAMES_FILE).write_text("users-items/0\n")
    with pytest.raises(OutputError, match=r"older recsys-pipeline \(users-items/0\)"):
        rundir.check_names(str(tmp_path), str(tmp_path / "metadata.sqlite"))
