"""BlessedModelLookup: a branch's baseline, the last blessed model, read from the registry
its Evaluator writes -- the one way every target finds a baseline.

Each Evaluator records what it blesses in its blessing registry (``components/registry.py``);
this node reads the newest record whose model still exists and writes a ``baseline.json``
pointer to that model into its output, which the Evaluator (and a warm-starting Trainer)
follows. Before the first blessing the pointer names no model, and the Evaluator runs without
a baseline. The composed Recommender reads its own blessing registry the same way
(``registry.latest_blessed``), so every baseline comes from one kind of record.

Why not TFX's latest-blessed-model Resolver: open-source Kubeflow Pipelines 2.x cannot run
Resolvers (its compiler fails with "resolver not implemented yet"), and one lookup on every
target keeps the local run the same DAG as the scheduled one.

``cache_key`` is what TFX's cache sees of the registry. Locally the DAG is built at each run,
so it is the model the registry names then: the lookup runs again exactly when a model was
blessed (or deleted) since, and is otherwise cached with its old, still right, pointer. A
compiled Kubeflow spec runs many times from one build, so there the key is empty and the
step is compiled with caching off (``kubeflow/compile.py``).
"""


from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from recsys_pipeline.components import registry
from recsys_pipeline.pipeline import nodes


def cache_key(blessing_registry: str) -> str:
    """The model the registry names as the baseline now ("" for none): see the module doc."""
    record = registry.latest_blessed(blessing_registry)
    return record["model_uri"] if record else ""


@component
def BlessedModelLookup(
    model: OutputArtifact[standard_artifacts.Model],
    blessing_registry: Parameter[str],
    cache_key: Parameter[str],
):
    """Writes a pointer to the newest blessed model in ``blessing_registry`` (module doc)."""
    del cache_key  # read by TFX's cache only
    record = registry.latest_blessed(blessing_registry)
    registry.write_pointer(model.uri, record["model_uri"] if record else None, blessing_registry)
    model.set_string_custom_property(nodes.BASELINE_MODEL_PROPERTY,
                                     record["model_uri"] if record else "")
