"""Span folders through `recsys run`: the newest span is ingested and recorded in ML Metadata
(the Examples artifact's span), then a run finds no new span, runs nothing and leaves a record
of the attempt in ML Metadata, and the span
cannot be taken again without --reingest. The span's data breaks the schema on purpose, so
the run stops after ExampleGen's part and stays short."""

import os
import shutil
import subprocess
import sys

import pytest

from recsys_pipeline import metadata
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.pipeline.config import PipelineConfig
from tests.conftest import write_subset

RECSYS = os.path.join(os.path.dirname(sys.executable), "recsys")


def _recsys(*args):
    return subprocess.run([RECSYS, *args], capture_output=True, text=True, timeout=1200)


@pytest.mark.e2e
def test_a_span_is_ingested_once(real_ml100k, tmp_path):
    d = write_subset(real_ml100k, tmp_path / "ml-100k", 2000)
    (d / "span-20261201").mkdir()
    shutil.move(d / "u.data", d / "span-20261201" / "u.data")
    users = (d / "u.user").read_text().splitlines(keepends=True)
    users[0] = "1|24|X|technician|85711\n"  # outside the schema: the run stops at the gate
    (d / "u.user").write_text("".join(users))
    out = tmp_path / "out"

    first = _recsys("run", "--output-dir", str(out), "--data-dir", str(d))
    assert first.returncode == 2, first.stdout + first.stderr
    assert f"data {d}, span 20261201" in first.stdout
    assert "data validation found anomalies" in first.stderr
    config = PipelineConfig()
    config.output_dir = str(out)
    ingested = metadata.ingested_spans(config)
    assert list(ingested) == [20261201]
    store = metadata.open_store(config)
    (run,) = metadata.summarize_runs(config, store=store)
    example_gen = next(c for c in run.components if c.node_id == nodes.EXAMPLE_GEN)
    (examples,) = [a for a in store.get_artifacts_by_type("Examples")
                   if a.uri == example_gen.outputs["examples"][0]]
    assert examples.properties["span"].int_value == 20261201

    second = _recsys("run", "--output-dir", str(out), "--data-dir", str(d))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "no new span" in second.stdout and "nothing ran" in second.stdout
    assert len(metadata.summarize_runs(config)) == 1
    (attempt,) = metadata.no_new_span_attempts(config)  # the store keeps the attempt
    assert attempt.data_dir == str(d) and attempt.spans == "20261201"

    again = _recsys("run", "--output-dir", str(out), "--data-dir", str(d), "--span", "20261201")
    assert again.returncode == 2
    assert "span 20261201 was already ingested" in again.stderr and "--reingest" in again.stderr
    missing = _recsys("run", "--output-dir", str(out), "--data-dir", str(d), "--span", "7")
    assert missing.returncode == 2 and "there is no span 7" in missing.stderr
