"""TF Serving's own settings files, written beside models.config with every push.

``batching.config`` is TF Serving's ``--batching_parameters_file`` (with ``--enable_batching``):
concurrent requests to one model are merged into one batch of at most ``max_batch_size``,
waiting at most ``batch_timeout_micros`` for more, on ``num_batch_threads`` threads; a request
beyond ``max_enqueued_batches`` waiting batches is refused at once rather than queued without
bound. Every signature this pipeline exports takes a batch dimension first, as batching needs.
``monitoring.config`` is its ``--monitoring_config_file``: Prometheus metrics (request counts
and latencies per model, load and batching state) at ``prometheus_path`` on the REST port.
Both Kubernetes manifests pass the three flags. The values come from ``[serving]``.
"""

from __future__ import annotations

import dataclasses
import json
import os

from recsys_pipeline import files

BATCHING_FILE = "batching.config"
MONITORING_FILE = "monitoring.config"


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    """What goes into the two files (see the module doc; defaults: ``[serving]``)."""

    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int
    prometheus_path: str

    @classmethod
    def of(cls, serving) -> ServerSettings:
        """From a ``ServingConfig``."""
        return cls(**{f.name: getattr(serving, f.name) for f in dataclasses.fields(cls)})

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServerSettings:
        return cls(**json.loads(text))

    def batching_text(self) -> str:
        """A ``BatchingParameters`` text proto (its limits are wrapped integers)."""
        return "".join(f"{name} {{ value: {getattr(self, name)} }}\n" for name in (
            "max_batch_size", "batch_timeout_micros", "num_batch_threads",
            "max_enqueued_batches"))

    def monitoring_text(self) -> str:
        """A ``MonitoringConfig`` text proto."""
        return ("prometheus_config {\n  enable: true\n"
                f"  path: {json.dumps(self.prometheus_path)}\n}}\n")


def write(serving_dir: str, settings: ServerSettings) -> None:
    """(Re)writes both files in ``serving_dir``, each in one rename."""
    files.atomic_write(os.path.join(serving_dir, BATCHING_FILE), settings.batching_text())
    files.atomic_write(os.path.join(serving_dir, MONITORING_FILE), settings.monitoring_text())
