"""recsys-pipeline: a TFX / TensorFlow Recommenders / ScaNN recommender pipeline.

Importing this package selects Keras 2 (``tf_keras``) for TensorFlow, which TFRS requires.
It must happen before TensorFlow is first imported, so every entry point imports this package
first (all subpackages live inside it).
"""

import os

# setdefault: an explicit user choice is respected (e.g. to debug with Keras 3).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
