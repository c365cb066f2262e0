"""The image pipeline around the graphs: resizing, padding and coordinate mapping
(``transform``). ``basam_deploy.predictor.Predictor`` is built on it."""

from .transform import COORDS, PADDING, ImageTransform, working_size

__all__ = ["COORDS", "PADDING", "ImageTransform", "working_size"]
