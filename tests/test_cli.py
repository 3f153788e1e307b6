"""The command line turns bad input into one clear message and a non-zero exit."""

import pytest

from recsys_pipeline import cli
from recsys_pipeline.errors import DataError


def _run(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr()


def test_config_command_prints_documented_toml(capsys, tmp_path):
    code, out = _run(capsys, "config")
    assert code == 0 and "[split]" in out.out and "# Seed of the random split." in out.out


def test_bad_config_file(capsys, tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[split]\nseed = \"x\"\n")
    code, out = _run(capsys, "run", "--config", str(path), "--output-dir", str(tmp_path / "o"))
    assert code == 2
    assert out.err.strip() == f"error: {path}: split.seed must be int, got 'x' (str)"


def test_unwritable_output_dir(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out = _run(capsys, "run", "--output-dir", str(blocker / "out"), "--data-dir", "x")
    assert code == 2 and "is not writable" in out.err and str(blocker / "out") in out.err


def test_missing_data_dir(capsys, tmp_path):
    code, out = _run(capsys, "run", "--data-dir", str(tmp_path / "none"),
                     "--output-dir", str(tmp_path / "o"))
    assert code == 2 and "does not exist" in out.err and str(tmp_path / "none") in out.err


def test_directory_without_a_movielens_layout(capsys, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("hi")
    code, out = _run(capsys, "run", "--data-dir", str(tmp_path / "d"),
                     "--output-dir", str(tmp_path / "o"))
    assert code == 2 and "no known MovieLens layout" in out.err and "notes.txt" in out.err


def test_recsys_errors_are_found_inside_wrapping_exceptions():
    inner = DataError("u.data line 3: bad")
    try:
        try:
            raise inner
        except DataError as e:
            raise RuntimeError("launcher failed") from e
    except RuntimeError as outer:
        assert cli.find_recsys_error(outer) is inner
    from_text = cli.find_recsys_error(RuntimeError(
        "Traceback...\nrecsys_pipeline.errors.DataError: u.data line 3: bad [while running 'X']"
    ))
    assert isinstance(from_text, DataError) and str(from_text) == "u.data line 3: bad"
    with pytest.raises(SystemExit):
        cli.main(["frobnicate"])


@pytest.mark.parametrize("args, message", [
    (["--user-id", "  "], "--user-id must be 1 to 256 characters"),
    (["--user-id", "x" * 257], "--user-id must be 1 to 256 characters"),
    (["--user-id", "42", "--k", "0"], "--k must be at least 1 (got 0)"),
    (["--user-id", "42", "--k", "-3"], "--k must be at least 1 (got -3)"),
])
def test_recommend_rejects_bad_requests(capsys, tmp_path, args, message):
    code, out = _run(capsys, "recommend", "--output-dir", str(tmp_path), *args)
    assert code == 2 and out.err.strip() == f"error: {message}"


@pytest.mark.parametrize("command", [["recommend", "--user-id", "42"],
                                     ["bulk", "--output", "recs.parquet"]])
def test_recommend_and_bulk_without_a_pushed_recommender_say_what_to_do(capsys, tmp_path,
                                                                        command):
    code, out = _run(capsys, command[0], "--output-dir", str(tmp_path), *command[1:])
    assert code == 2
    assert f"no pushed version of model 'recommender' under {tmp_path / 'serving'}" in out.err
    assert "recsys run" in out.err


def test_bulk_rejects_a_k_below_one(capsys, tmp_path):
    code, out = _run(capsys, "bulk", "--output-dir", str(tmp_path), "--output", "x.parquet",
                     "--k", "0")
    assert code == 2 and out.err.strip() == "error: --k must be at least 1 (got 0)"


def test_runs_without_a_metadata_store_says_so(tmp_path, capsys):
    assert cli.main(["runs", "--output-dir", str(tmp_path / "nothing-here")]) == 2
    assert "no ML Metadata store" in capsys.readouterr().err


def test_a_second_run_on_the_same_output_dir_is_refused_with_the_holders_pid(tmp_path, capsys):
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from recsys_pipeline.rundir import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)\n",
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli.main(["run", "--output-dir", str(out), "--data-dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"another recsys run (pid {holder.pid}) is using {out}" in err
    finally:
        holder.kill()
        holder.wait()
    # The kernel released the lock with the (killed) holder: a run may now start -- here it
    # gets past the lock and stops at the missing dataset instead.
    assert cli.main(["run", "--output-dir", str(out), "--data-dir", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["runs"], ["run", "--data-dir", "/nonexistent"]])
def test_corrupt_metadata_store_says_what_to_do_and_touches_nothing(tmp_path, capsys, command):
    store = tmp_path / "metadata.sqlite"
    store.write_bytes(b"this is not a database")
    assert cli.main([*command, "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"the ML Metadata store {store} is corrupt" in err and ".corrupt" in err
    assert store.read_bytes() == b"this is not a database"


def test_run_refuses_an_output_dir_written_with_movie_names(tmp_path, capsys):
    code, out = _run(capsys, "synth", "--ratings", "100", "--out", str(tmp_path / "d"))
    assert code == 0, out.err
    old = tmp_path / "old"
    old.mkdir()
    (old / "metadata.sqlite").write_bytes(b"")  # a history and no names stamp
    code, out = _run(capsys, "run", "--output-dir", str(old), "--data-dir", str(tmp_path / "d"))
    assert code == 2
    assert f"output directory '{old}' was written by an older recsys-pipeline (movie names" \
        in out.err and "fresh --output-dir" in out.err
    assert sorted(p.name for p in old.iterdir()) == ["metadata.sqlite"]  # nothing written


@pytest.mark.parametrize("content", ["empty", "foreign", "corrupt-record"])
def test_recommend_refuses_a_foreign_or_corrupt_newest_version(capsys, tmp_path, content):

    for name in ("recommender",):
        version = tmp_path / "serving" / name / "1795000000"
        version.mkdir(parents=True)
        if content != "empty":
            (version / "saved_model.pb").write_bytes(b"not ours")
        if content == "corrupt-record":
            (version / "assets.extra").mkdir()
            (version / "assets.extra" / "recsys_push.json").write_text("{truncated")
    code, out = _run(capsys, "recommend", "--output-dir", str(tmp_path), "--user-id", "42")
    assert code == 2
    assert f"{tmp_path / 'serving' / 'recommender' / '1795000000'} is not a version this " \
        "pipeline pushed" in out.err
    assert {"empty": "no saved_model.pb", "foreign": "missing or unreadable",
            "corrupt-record": "missing or unreadable"}[content] in out.err


def test_synth_writes_a_dataset_the_pipeline_reads(capsys, tmp_path):
    from recsys_pipeline.data import movielens

    code, out = _run(capsys, "synth", "--ratings", "2000", "--out", str(tmp_path / "d"))
    assert code == 0, out.err
    assert "2,000 / 2,000 ratings" in out.out and f"--data-dir {tmp_path / 'd'}" in out.out
    dataset = movielens.detect_layout(str(tmp_path / "d"))
    assert sum(1 for _ in movielens.iter_ratings(dataset)) == 2000
    code, out = _run(capsys, "synth", "--ratings", "5", "--out", str(tmp_path / "e"))
    assert code == 2 and "--ratings must be at least 20" in out.err
    shop = tmp_path / "shop"
    code, out = _run(capsys, "synth", "--ratings", "2000", "--layout", "interactions",
                     "--format", "parquet", "--out", str(shop))
    assert code == 0, out.err
    assert (f"Run it: recsys run --config {shop / 'recsys.toml'} --data-dir {shop}"
            in out.out)
    assert sorted(p.name for p in shop.iterdir()) == [
        "customers.parquet", "interactions.parquet", "products.parquet", "recsys.toml"]
    for args, message in (
            (["--ratings", "100", "--format", "parquet"],
             "--format parquet needs --layout interactions"),
            (["--days", "2", "--layout", "interactions"], "--days writes the GroupLens CSV")):
        code, out = _run(capsys, "synth", *args, "--out", str(tmp_path / "e"))
        assert code == 2 and message in out.err, (args, out.err)


def test_synth_days_writes_span_folders_in_date_order(capsys, tmp_path):
    from recsys_pipeline.data import movielens, spans

    code, out = _run(capsys, "synth", "--days", "2", "--ratings-per-day", "150", "--out",
                     str(tmp_path / "d"))
    assert code == 0, out.err
    assert "day 2/2: span-20250102" in out.out
    assert "--span 20250101, then --span 20250102" in out.out
    found = spans.list_spans(str(tmp_path / "d"))
    assert [s.number for s in found] == [20250101, 20250102]
    dataset = spans.span_dataset(str(tmp_path / "d"), 20250102)
    assert sum(1 for _ in movielens.iter_ratings(dataset)) == 150
    for args in (["--days", "2", "--ratings", "100"], [], ["--days", "0"], ["--days", "5000"]):
        code, out = _run(capsys, "synth", *args, "--out", str(tmp_path / "e"))
        assert code == 2 and ("--days" in out.err), (args, out.err)
        assert not (tmp_path / "e").exists()


def test_an_unwritable_events_file_is_refused_before_the_run(capsys, tmp_path):
    events = tmp_path / "no-such-dir" / "run.events.jsonl"
    code, out = _run(capsys, "run", "--output-dir", str(tmp_path / "o"), "--data-dir",
                     str(tmp_path), "--events", str(events))
    assert code == 2, out
    assert out.err.strip().startswith(f"error: cannot write the progress events to '{events}'")
    assert not (tmp_path / "o" / "logs").exists()  # nothing started


def test_span_on_a_directory_without_span_folders(capsys, tmp_path):
    from tests.conftest import make_ml100k

    d = make_ml100k(tmp_path)
    code, out = _run(capsys, "run", "--data-dir", str(d), "--output-dir", str(tmp_path / "o"),
                     "--span", "3")
    assert code == 2 and f"--span 3: {str(d)!r} holds no span-<N> folders" in out.err


def test_a_bad_span_folder_stops_the_run_before_it_starts(capsys, tmp_path):
    from tests.conftest import make_ml100k

    d = make_ml100k(tmp_path)
    (d / "span-1").mkdir()
    code, out = _run(capsys, "run", "--data-dir", str(d), "--output-dir", str(tmp_path / "o"))
    assert code == 2 and "span-1' is empty" in out.err
    assert not (tmp_path / "o" / "metadata.sqlite").exists()


def test_the_console_drops_a_logged_traceback_of_our_own_error_which_is_printed_once():
    import logging

    from recsys_pipeline.cli.run import _QuietFilter

    def record(error):
        try:
            raise RuntimeError("Beam's wrapper") from error
        except RuntimeError as wrapped:
            return logging.LogRecord("apache_beam.runners.common", logging.ERROR, "f", 1,
                                     str(error), (), (type(wrapped), wrapped, None))
    quiet = _QuietFilter()
    assert not quiet.filter(record(DataError("u.data line 301: rating '7' is outside")))
    assert quiet.filter(record(ValueError("a bug of ours or theirs")))  # shown, traceback too
    assert not quiet.filter(logging.LogRecord("tfx", logging.INFO, "f", 1, "chatter", (), None))
