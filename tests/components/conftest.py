"""Input artifacts over the shared two-stage fixtures (tests/shared_fixtures.py), for the
Recommender's and the ScannIndexer's tests."""

import os


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
