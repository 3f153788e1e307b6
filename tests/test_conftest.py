"""The test suite's own scheduling: the files it runs first exist."""

import pathlib

from tests.conftest import LONGEST_FIRST


def test_the_longest_files_listed_first_exist():
    tests = pathlib.Path(__file__).parent
    assert [name for name in LONGEST_FIRST if not (tests / name).is_file()] == []
