"""Progress events from TFX's log records: rendered on the console, kept as JSON lines."""

import io
import logging

from recsys_pipeline import progress


def _record(msg, *args):
    return logging.LogRecord("absl", logging.INFO, __file__, 1, msg, args, None)


def test_tfx_records_become_events_on_every_sink(tmp_path):
    console = io.StringIO()
    log = progress.JsonLinesSink(str(tmp_path / "run.events.jsonl"))
    reporter = progress.ProgressReporter(["A", "B"], [progress.console_sink(console), log])
    for record in (_record("Component %s is running.", "A"),
                   _record("Component %s is finished.", "A"),
                   _record("Component %s is running.", "B"),
                   _record("A cached execution %d is used.", 7),
                   _record("Component %s is finished.", "B"),
                   _record("Component %s is running.", "not in the DAG")):
        reporter.emit(record)
    log.close()
    with open(tmp_path / "run.events.jsonl") as f:
        events = list(progress.read_events(f))
    assert [(e.event, e.node_id, e.position, e.total, e.status) for e in events] == [
        (progress.STARTED, "A", 1, 2, None), (progress.FINISHED, "A", 1, 2, progress.DONE),
        (progress.STARTED, "B", 2, 2, None), (progress.FINISHED, "B", 2, 2, progress.CACHED),
        (progress.STARTED, "not in the DAG", 0, 2, None)]
    assert events[1].seconds == reporter.seconds["A"] >= 0
    lines = console.getvalue().splitlines()
    assert lines[0] == "[1/2] A ..." and lines[2] == "[2/2] B ..."
    assert lines[3] == f"      B: cached in {reporter.seconds['B']:.1f}s"
    assert lines == [progress.render(e) for e in events]


def test_an_event_survives_its_json_line():
    event = progress.ProgressEvent(progress.FINISHED, "Transform", 6, 16, 1.5e9,
                                   progress.DONE, 12.25)
    assert progress.ProgressEvent.from_json(event.to_json()) == event
    assert list(progress.read_events(["", event.to_json(), "  "])) == [event]


def test_steps_go_to_the_running_component_or_to_stdout_without_a_run(tmp_path, capsys):
    console = io.StringIO()
    idle = progress.ProgressReporter(["Trainer"], [progress.console_sink(console)])
    progress.step("before any run", n=1)  # a benchmark calling train(), a KFP container
    assert capsys.readouterr().out == "      before any run\n"
    events = []
    with progress.ProgressReporter(["Trainer"], [events.append]) as reporter:
        reporter.emit(_record("Component %s is running.", "Trainer"))
        progress.step("ranking epoch 1/2: loss 0.9000 (0.1s)", epoch=1, loss=0.9)
        reporter.emit(_record("Component %s is finished.", "Trainer"))
    progress.step("after the run")
    assert capsys.readouterr().out == "      after the run\n"
    (step,) = [e for e in events if e.event == progress.STEP]
    assert (step.node_id, step.position, step.detail) == ("Trainer", 1, {"epoch": 1, "loss": 0.9})
    assert progress.render(step) == "      ranking epoch 1/2: loss 0.9000 (0.1s)"
    assert progress.ProgressEvent.from_json(step.to_json()) == step
    idle.emit(_record("Component %s is running.", "Trainer"))
    progress.step("while another reporter is idle")
    assert console.getvalue() == "[1/1] Trainer ...\n"  # a reporter not entered gets no steps
