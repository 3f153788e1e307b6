"""BulkRecommendations: every user's top k from the blessed recommender, as Parquet.

TFX's BulkInferrer for the two-stage recommender ([bulk] enabled): after the Recommender's
gate, and only for a recommender it blessed, it streams every user the recommender knows
through its ``serving_default`` with Beam (``serving.bulk``) and writes
``recommendations.parquet`` into its ``recommendations`` artifact (an InferenceResult, as
BulkInferrer's), with the catalogue coverage and counts as the artifact's ``report`` property
(a ``BulkReport``), which the run summary and the report show. For an unblessed recommender
it writes nothing and records why. ``source_fingerprint`` only keys TFX's cache.
"""

import os

import apache_beam as beam
from tfx.dsl.component.experimental.annotations import (
    BeamComponentParameter,
    InputArtifact,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from recsys_pipeline import progress
from recsys_pipeline.pipeline import nodes
from recsys_pipeline.serving import bulk

OUTPUT_FILE = "recommendations" + bulk.PARQUET_SUFFIX


@component(use_beam=True)
def BulkRecommendations(
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    recommendations: OutputArtifact[standard_artifacts.InferenceResult],
    k: Parameter[int],
    batch_size: Parameter[int],
    source_fingerprint: Parameter[str] = "",
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
):
    """Writes every user's top ``k`` from a blessed recommender (see module doc); TFX
    passes ``beam_pipeline``, made from the pipeline's Beam arguments."""
    if model_blessing.get_int_custom_property(nodes.BLESSED_PROPERTY) != 1:
        recommendations.set_string_custom_property(
            nodes.REASON_PROPERTY, "the recommender was not blessed: "
            + (model_blessing.get_string_custom_property(nodes.REASON_PROPERTY) or "see its gate"))
        return
    model_dir = path_utils.serving_model_path(model.uri)
    users = bulk.known_users(model_dir)
    progress.step(f"recommending {k} items to each of {len(users)} users ...",
                  users=len(users), k=k)
    report = bulk.write(model_dir, os.path.join(recommendations.uri, OUTPUT_FILE), k,
                        batch_size, beam_pipeline, users=users)
    progress.step(f"{report.rows} recommendations for {report.users} users in "
                  f"{report.seconds:.1f}s; catalogue coverage {report.coverage:.1%} "
                  f"({report.covered} of {report.catalogue_size} items)",
                  rows=report.rows, coverage=report.coverage, seconds=report.seconds)
    recommendations.set_string_custom_property("report", report.to_json())
    recommendations.set_float_custom_property("coverage", report.coverage)
