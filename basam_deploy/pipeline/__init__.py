"""The image pipeline around the graphs: resizing, padding and coordinate mapping
(``transform``). ``basam_deploy.predictor.Predictor`` is built on it."""

from .transform import ImageTransform, working_size

__all__ = ["ImageTransform", "working_size"]
