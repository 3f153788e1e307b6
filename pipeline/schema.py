"""The curated schema of a declared interaction log, generated from its declaration.

MovieLens layouts have fixed columns, so their schemas are checked in (``schemas/``). A team's
own log declares its item features, their kinds and the rating range in ``[interactions]``:
its schema is that declaration's, written here as a ``schema.proto`` text. It starts from the
checked-in ``interactions.pbtxt`` (the canonical features every layout writes), adds the
rating's domain and one feature per declared item and user column, and is written, named by its
content, under the pipeline root, where ImportSchemaGen imports it. ExampleValidator then
blocks on anomalies against it as for any layout, and ML Metadata records the file the run
imported (ImportSchemaGen's ``schema_file``) beside the schema artifact.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources

from recsys_pipeline.data.declaration import (
    LOG_NUMERIC,
    MULTI_CATEGORICAL,
    NUMERIC,
    InteractionsLayout,
)
from recsys_pipeline.transform import features as F

BASE_SCHEMA = "interactions.pbtxt"
SCHEMA_DIR = "schemas"  # under the pipeline root


def base_schema_path() -> str:
    """The checked-in schema of the canonical features, in this install."""
    return str(resources.files("recsys_pipeline.pipeline").joinpath("schemas", BASE_SCHEMA))


def declared_features(layout: InteractionsLayout) -> dict[str, str]:
    """{raw feature name: kind} of every declared item and user feature (Transform's
    ``custom_config``, and this schema's features)."""
    return {**{F.item_feature(f.column): f.kind for f in layout.declared_item_features()},
            **{F.user_feature(f.column): f.kind for f in layout.declared_user_features()}}


def _feature_line(name: str, kind: str) -> str:
    # An item may lack any declared value (ExampleGen then writes no feature): no presence
    # bound, and at most one value unless the kind is a list.
    count = "value_count { min: 0 }" if kind == MULTI_CATEGORICAL else \
        "value_count { min: 0 max: 1 }"
    value_type = "FLOAT" if kind in (NUMERIC, LOG_NUMERIC) else "BYTES"
    domain = " float_domain { min: 0.0 }" if kind == LOG_NUMERIC else ""
    return (f'feature {{ name: "{name}" type: {value_type}{domain} presence {{ min_count: 0 }} '
            f"{count} }}")


def declared_schema(layout: InteractionsLayout, base_text: str) -> str:
    """The schema text of a declared log: ``base_text`` (the canonical features) with the
    rating's declared domain and the declared item and user features."""
    rating = f'feature {{ name: "{F.USER_RATING}" type: FLOAT'
    if rating not in base_text:
        raise ValueError(f"the base schema has no {F.USER_RATING} feature")
    bounded = (f"{rating} float_domain {{ min: {float(layout.min_rating)!r} "
               f"max: {float(layout.max_rating)!r} }}")
    lines = [base_text.replace(rating, bounded).rstrip("\n"),
             "# Declared features ([interactions] item_features, user_features):"]
    lines += [_feature_line(name, kind) for name, kind in declared_features(layout).items()]
    if layout.weight_column:
        lines.append(f'feature {{ name: "{F.WEIGHT}" type: FLOAT float_domain {{ min: 0.0 }} '
                     "presence { min_fraction: 1.0 min_count: 1 } shape { dim { size: 1 } } }")
    return "\n".join(lines) + "\n"


def write_declared_schema(layout: InteractionsLayout, pipeline_root: str) -> str:
    """Writes the declared schema under ``pipeline_root``/schemas, named by its content (a
    changed declaration is a new file, so TFX's cache sees it), and returns its path."""
    import tensorflow as tf

    # Read from this install, also when compiling for Kubeflow: the image's copy is the same.
    with tf.io.gfile.GFile(base_schema_path()) as f:
        text = declared_schema(layout, f.read())
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = os.path.join(pipeline_root, SCHEMA_DIR, f"interactions-{digest}.pbtxt")
    if not tf.io.gfile.exists(path):
        tf.io.gfile.makedirs(os.path.dirname(path))
        temporary = f"{path}.tmp-{os.getpid()}"
        with tf.io.gfile.GFile(temporary, "w") as f:
            f.write(text)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    return path
