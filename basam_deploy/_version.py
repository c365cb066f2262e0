"""The package version, in a module of its own so that any layer can name it.

Importing ``basam_deploy`` itself runs its ``__init__``, which imports the Predictor and through it
most of the package: a low layer (export, tensorrt) that read ``__version__`` from there would
depend on everything above it (docs/layers.md). Keep in step with ``version`` in pyproject.toml.
"""

__version__ = "0.1.0"
