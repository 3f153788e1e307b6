import os

import pytest

from recsys_pipeline import files


def test_atomic_write_replaces_the_whole_file(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("old")
    files.atomic_write(str(path), "new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["models.config"]


def test_a_failed_write_leaves_the_old_file_and_nothing_beside_it(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="killed mid-write"):
        with files.replacing(str(path)) as f:
            f.write("half of the new")
            assert os.path.exists(files.partial_path(str(path)))
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["ratings.csv"]
