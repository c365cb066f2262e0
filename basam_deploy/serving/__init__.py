"""``basam-serve``: the Predictor as two Triton Inference Server models (``basam_encoder``,
``basam_decoder``) through PyTriton. ``protocol`` is the wire format; ``server`` binds the models.

Importing this package does not import PyTriton; ``BasamServer`` needs it (``pip install
'basam-deploy[serve]'``).
"""

from .protocol import DECODER_MODEL, ENCODER_MODEL, RequestError, error_line
from .server import Backend, BasamServer, SamModels, ServeConfig, load_backend

__all__ = [
    "DECODER_MODEL",
    "Backend",
    "ENCODER_MODEL",
    "BasamServer",
    "RequestError",
    "SamModels",
    "ServeConfig",
    "error_line",
    "load_backend",
]
