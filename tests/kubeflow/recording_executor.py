"""A TFX executor for the entrypoint tests: writes what TFX built from the executor input (each
input artifact's class, split names and span) into its output artifact's folder."""

import json
import os

from tfx.dsl.components.base import base_executor


class RecordingExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        seen = {key: [{"class": type(a).__name__, "split_names": a.split_names,
                       "span": a.span, "uri": a.uri} for a in artifacts]
                for key, artifacts in input_dict.items()}
        (out,) = output_dict["examples"]
        os.makedirs(out.uri, exist_ok=True)
        with open(os.path.join(out.uri, "seen.json"), "w") as f:
            json.dump(seen, f)
