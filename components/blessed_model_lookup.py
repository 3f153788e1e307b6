"""BlessedModelLookup: the last blessed model, found without ML Metadata queries.

Locally (and on Vertex AI) the baseline of each Evaluator is TFX's Resolver with the
latest-blessed-model strategy, which queries ML Metadata. TFX compiles that Resolver into a
KFP ``resolver`` executor, which open-source Kubeflow Pipelines 2.x does not implement (its
compiler fails with "resolver not implemented yet"). On that target this component takes the
Resolver's place, with the same node id and output key: it reads the newest record of the
Evaluator's blessing registry (see ``recsys_evaluator``) and writes a ``baseline.json``
pointer to that model into its output, which RecsysEvaluator follows. Before the first
blessing the pointer names no model, and the Evaluator runs without a baseline, as it does
when the Resolver finds nothing.
"""


from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from recsys_pipeline.components import registry
from recsys_pipeline.pipeline import nodes


@component
def BlessedModelLookup(
    model: OutputArtifact[standard_artifacts.Model],
    blessing_registry: Parameter[str],
):
    """Writes a pointer to the newest blessed model in ``blessing_registry`` (module doc)."""
    record = registry.latest_blessed(blessing_registry)
    registry.write_pointer(model.uri, record["model_uri"] if record else None, blessing_registry)
    model.set_string_custom_property(nodes.BASELINE_MODEL_PROPERTY,
                                     record["model_uri"] if record else "")
