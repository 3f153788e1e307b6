"""Packaging for recsys-pipeline.

The source folders sit at the repository's top level (``pipeline/``, ``components/``,
``transform/``, ``trainer/``, ``serving/``, ``kubeflow/``, ``data/``) but are installed
*inside* the ``recsys_pipeline`` package (``recsys_pipeline.pipeline`` ...), so that an install
never shadows other distributions' top-level names -- notably the ``kubeflow`` namespace
package used by Kubeflow's SDKs, or any third-party ``pipeline`` module. See
docs/architecture.md, "Package layout".
"""

from setuptools import setup

_SUBPACKAGES = ("pipeline", "components", "transform", "trainer", "serving", "kubeflow", "data")

setup(
    name="recsys-pipeline",
    version="0.1.0",
    description="TFX + TensorFlow Recommenders + ScaNN recommender pipeline (local and Kubeflow).",
    packages=["recsys_pipeline"] + [f"recsys_pipeline.{name}" for name in _SUBPACKAGES],
    package_dir={
        "recsys_pipeline": "recsys_pipeline",
        **{f"recsys_pipeline.{name}": name for name in _SUBPACKAGES},
    },
    package_data={
        "recsys_pipeline.data": ["checksums.json"],
        "recsys_pipeline.pipeline": ["schemas/*.pbtxt"],
    },
    install_requires=[
        "tfx==1.21.0",
        # TFX 1.21 declares tensorflow>=2.21, but scann 1.4.2's TF ops are built for TF 2.20:
        # pyproject.toml's [tool.uv] override-dependencies forces 2.20 (see the comment there).
        "tensorflow==2.20.*",
        "tf-keras==2.20.*",
        "tensorflow-transform==1.21.*",
        "tensorflow-model-analysis==0.52.*",
        "tensorflow-data-validation==1.21.*",
        "tensorflow-recommenders==0.7.7",
        "scann[tf]==1.4.2",
        # tfx[kfp] pins kfp<2.17 on Python < 3.12; we pin the same 2.16 line on every Python
        # so the compiled Kubeflow spec does not depend on the interpreter version.
        "kfp==2.16.*",
        "kfp-pipeline-spec==2.16.*",
        "pyyaml>=6",
        "tqdm>=4.60",
    ],
    entry_points={"console_scripts": ["recsys=recsys_pipeline.cli:main"]},
)
