"""The serving tests' two-stage fixtures (a tiny retrieval export, its ScaNN index and a
ranking export), for the Recommender's and the ScannIndexer's tests, and input artifacts
over them."""

import os

from tests.serving.conftest import data, excluding, retrieval, stages, tiny  # noqa: F401  (fixtures, used by name)


def input_artifact(kind, uri, serving_dir=None, **properties):
    """A ``kind`` artifact at ``uri`` (its ``Format-Serving`` a link to ``serving_dir``), with
    int custom ``properties``: what an upstream component would have handed on."""
    artifact = kind()
    artifact.uri = str(uri)
    os.makedirs(artifact.uri, exist_ok=True)
    if serving_dir is not None:
        os.symlink(serving_dir, os.path.join(artifact.uri, "Format-Serving"))
    for key, value in properties.items():
        artifact.set_int_custom_property(key, value)
    return artifact
