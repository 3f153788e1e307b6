"""AnomalyGate: stops the run when ExampleValidator found anomalies.

TFX's ExampleValidator records anomalies but never fails. This component reads its output and
raises a ValidationError that names every anomalous feature and what is wrong with it, so the
pipeline stops before Transform and training. Downstream components depend on it via
``add_upstream_node``.
"""


import os
from typing import Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts

from recsys_pipeline.errors import ValidationError


def describe_anomalies(anomalies_by_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One line per anomalous feature: 'split: feature: short description (details)'."""
    lines = []
    for split, anomalies in sorted(anomalies_by_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(r.description or r.short_description for r in info.reason)
            lines.append(f"{split}: feature '{feature}': {info.short_description} ({reasons})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"{split}: dataset: {info.short_description}")
    return lines


def read_anomalies(uri: str, split_names: List[str]) -> Dict[str, anomalies_pb2.Anomalies]:
    """Reads ExampleValidator's per-split SchemaDiff.pb files."""
    result = {}
    for split in split_names:
        path = os.path.join(uri, f"Split-{split}", "SchemaDiff.pb")
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(tf.io.gfile.GFile(path, "rb").read())
        result[split] = anomalies
    return result


@component
def AnomalyGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
                source_fingerprint: Parameter[str] = "") -> None:
    """Fails with the list of anomalies, if there are any (``source_fingerprint``, the hash
    of this code, only keys TFX's cache)."""
    splits = artifact_utils.decode_split_names(anomalies.split_names)
    lines = describe_anomalies(read_anomalies(anomalies.uri, splits))
    if lines:
        raise ValidationError(
            "data validation found anomalies (the curated schema is pipeline/schemas/; "
            "fix the data or, if the change is intended, the schema):\n  " + "\n  ".join(lines)
        )
