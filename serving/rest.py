"""TF Serving's REST ``predict`` bodies, turned into signature inputs and back.

The rules are TF Serving's (``tensorflow_serving/util/json_tensor.h``): a body has either
``instances`` (the row form: one entry per example, an object naming every input, or a bare
value when the signature has one input) or ``inputs`` (the columnar form: an object of whole
tensors, or a bare value for one input), and an optional ``signature_name``. Each value takes
the signature input's dtype; a string is UTF-8 text or ``{"b64": ...}`` for binary data such
as serialized tf.Examples. The answer is ``predictions`` (rows) or ``outputs`` (columns).

The request contract tests run the bodies through these rules against saved models loaded
as TF Serving loads them, so a client written from ``docs/serving.md`` sends what the models
take.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from recsys_pipeline.errors import ConfigError

DEFAULT_SIGNATURE = "serving_default"


def _value(value: Any, dtype, where: str) -> Any:
    if dtype == np.object_:
        if isinstance(value, dict) and set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, list):
            return [_value(v, dtype, where) for v in value]
        raise ConfigError(f"{where}: expected a string or {{\"b64\": ...}}, got {value!r}")
    if isinstance(value, list):
        return [_value(v, dtype, where) for v in value]
    if isinstance(value, (str, dict)) or value is None:
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return value


def _array(values: Any, spec, where: str) -> np.ndarray:
    dtype = np.object_ if spec.dtype.name == "string" else spec.dtype.as_numpy_dtype
    return np.array(_value(values, dtype, where), dtype=dtype)


def signature_inputs(body: dict, input_specs: dict) -> dict[str, np.ndarray]:
    """The arrays a ``predict`` body gives each input of a signature (``input_specs``: name ->
    tf.TensorSpec), by TF Serving's JSON rules (module doc)."""
    forms = [key for key in ("instances", "inputs") if key in body]
    if len(forms) != 1:
        raise ConfigError("a predict body needs exactly one of 'instances' (rows) or 'inputs' "
                          f"(columns); got keys {sorted(body)}")
    names = sorted(input_specs)
    data = body[forms[0]]
    if forms[0] == "inputs":
        if not isinstance(data, dict):
            if len(names) != 1:
                raise ConfigError(f"'inputs' must name the signature's inputs {names}")
            data = {names[0]: data}
        missing, extra = set(names) - set(data), set(data) - set(names)
        if missing or extra:
            raise ConfigError(f"'inputs' must name exactly {names}; missing "
                              f"{sorted(missing)}, unknown {sorted(extra)}")
        return {n: _array(data[n], input_specs[n], f"inputs.{n}") for n in names}
    if not isinstance(data, list) or not data:
        raise ConfigError("'instances' must be a non-empty list")
    rows = []
    for i, row in enumerate(data):
        if not isinstance(row, dict) or set(row) == {"b64"}:
            if len(names) != 1:
                raise ConfigError(f"instances[{i}]: must be an object naming {names}")
            row = {names[0]: row}
        if set(row) != set(names):
            raise ConfigError(f"instances[{i}]: must name exactly {names}; got {sorted(row)}")
        rows.append(row)
    return {n: _array([r[n] for r in rows], input_specs[n], f"instances.{n}") for n in names}


def _plain(value: np.ndarray) -> Any:
    if value.dtype == np.object_:
        return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(
            value).tolist() if value.size else value.tolist()
    return value.tolist()


def response_body(body: dict, outputs: dict[str, np.ndarray]) -> dict:
    """The answer TF Serving gives ``body``: ``predictions`` (one entry per row) for the row
    form, ``outputs`` for the columnar one; a lone output is given bare."""
    names = sorted(outputs)
    if "instances" in body:
        rows = len(next(iter(outputs.values())))
        predictions = [{n: _plain(np.asarray(outputs[n][i])) for n in names}
                       for i in range(rows)]
        if len(names) == 1:
            predictions = [p[names[0]] for p in predictions]
        return {"predictions": predictions}
    columns = {n: _plain(np.asarray(outputs[n])) for n in names}
    return {"outputs": columns[names[0]] if len(names) == 1 else columns}


def predict(model: Any, body: dict) -> dict:
    """Answers a ``predict`` body with a loaded SavedModel, as TF Serving's REST API would."""
    import tensorflow as tf

    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if name not in model.signatures:
        raise ConfigError(f"no signature {name!r}; the model has {sorted(model.signatures)}")
    signature = model.signatures[name]
    specs = signature.structured_input_signature[1]
    inputs = signature_inputs(body, specs)
    result = signature(**{n: tf.constant(v) for n, v in inputs.items()})
    return response_body(body, {n: t.numpy() for n, t in result.items()})
