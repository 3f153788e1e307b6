"""Run progress as a stream of structured events.

A local run emits one ``ProgressEvent`` when a component starts and one when it finishes
(done or cached, with its wall time), read from TFX's own log records, and the components
report their long work as steps in between (``step``: a Trainer's epochs, the index's tuning
and recall), with the numbers as fields. Events go to sinks: the console renders each as a
line, and the run log keeps them as JSON lines (``<output-dir>/logs/run-*.events.jsonl``),
which the benchmarks read instead of the console.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from typing import Any, Callable, Iterable, Iterator, Optional, TextIO

STARTED, FINISHED, STEP = "component_started", "component_finished", "step"
DONE, CACHED = "done", "cached"

# TFX's log templates for a component's life, matched on the template (the record's msg),
# never on rendered text.
_RUNNING = "Component %s is running."
_CACHED = "A cached execution %d is used."
_FINISHED = "Component %s is finished."


@dataclasses.dataclass(frozen=True)
class ProgressEvent:
    """A component started, finished (``status`` and ``seconds`` set), or reported a step of
    its work (``message`` and ``detail`` set)."""

    event: str  # STARTED, FINISHED or STEP
    node_id: str  # for a step outside a run's components: ""
    position: int  # 1-based place in the DAG's order (0: not one of its nodes)
    total: int
    at: float  # Unix seconds
    status: Optional[str] = None  # DONE or CACHED
    seconds: Optional[float] = None
    message: Optional[str] = None  # a step, as the console shows it
    detail: Optional[dict[str, Any]] = None  # a step's numbers, e.g. {"epoch": 3, "loss": ..}

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> ProgressEvent:
        return cls(**json.loads(line))


Sink = Callable[[ProgressEvent], None]


def render(event: ProgressEvent) -> str:
    """The console line of an event."""
    if event.event == STARTED:
        return f"[{event.position}/{event.total}] {event.node_id} ..."
    if event.event == STEP:
        return f"      {event.message}"
    return f"      {event.node_id}: {event.status} in {event.seconds:.1f}s"


def console_sink(stream: TextIO) -> Sink:
    def write(event: ProgressEvent) -> None:
        print(render(event), file=stream, flush=True)
    return write


class JsonLinesSink:
    """Appends each event to a file as one JSON line, flushed at once (readers tail it)."""

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, "a", encoding="utf-8")

    def __call__(self, event: ProgressEvent) -> None:
        self._file.write(event.to_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_events(lines: Iterable[str]) -> Iterator[ProgressEvent]:
    """The events of JSON lines (a file, or a pipe being tailed); blank lines are skipped."""
    for line in lines:
        if line.strip():
            yield ProgressEvent.from_json(line)


# The reporters of the runs in progress in this process (a local run's components run here).
_reporters: list[ProgressReporter] = []


def step(message: str, **detail: Any) -> None:
    """Reports a step of a component's work: to the running local run's sinks as a STEP event
    (of the component running), or, with no run in progress here (a Kubeflow container, a
    benchmark calling a Trainer's ``train``), as a line on standard output."""
    if not _reporters:
        print(f"      {message}", file=sys.stdout, flush=True)
    for reporter in _reporters:
        reporter.step(message, detail)


class ProgressReporter(logging.Handler):
    """Turns TFX's per-component log records into ``ProgressEvent``s for ``sinks``, and the
    components' ``step`` reports while it is ``active``."""

    def __init__(self, node_ids: list[str], sinks: Iterable[Sink]):
        super().__init__(level=logging.INFO)
        self._ids = node_ids
        self._sinks = list(sinks)
        self._current: Optional[str] = None
        self._started = 0.0
        self._cached = False
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> ProgressReporter:
        _reporters.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _reporters.remove(self)

    def step(self, message: str, detail: dict[str, Any]) -> None:
        node = self._current or ""
        self._send(ProgressEvent(STEP, node, self._position(node), len(self._ids), time.time(),
                                 message=message, detail=detail))

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg
        node = str(record.args[0]) if isinstance(record.args, tuple) and record.args else None
        if msg == _RUNNING and node is not None:
            self._current, self._started, self._cached = node, time.monotonic(), False
            self._send(ProgressEvent(STARTED, node, self._position(node), len(self._ids),
                                     time.time()))
        elif msg == _CACHED:
            self._cached = True
        elif msg == _FINISHED and node is not None and node == self._current:
            self.seconds[node] = time.monotonic() - self._started
            self._send(ProgressEvent(FINISHED, node, self._position(node), len(self._ids),
                                     time.time(), CACHED if self._cached else DONE,
                                     self.seconds[node]))
            self._current = None

    def _position(self, node_id: str) -> int:
        return self._ids.index(node_id) + 1 if node_id in self._ids else 0

    def _send(self, event: ProgressEvent) -> None:
        for sink in self._sinks:
            sink(event)
