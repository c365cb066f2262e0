"""``basam-web``: an interactive segmentation page, encoder on the server, decoder in the browser.

The split of segment-anything's web demo and of annotation tools built on SAM: the server encodes
each image once with a ``Predictor`` (its encoder runner and resize policy; ``images``/``model``),
and the page runs the exported ``decoder.onnx`` per click with onnxruntime-web (WebAssembly), with
the ``Predictor``'s pre- and post-processing re-stated in JavaScript (``static/transform.js``:
the browser cannot run Python). One origin serves the page, its scripts, onnxruntime-web's files
(from ``npm ci``'s node_modules, ``assets``), the model and the JSON API (``app``). docs/web.md.
"""

from .app import PageConfig, build_app, serve_page

__all__ = ["PageConfig", "build_app", "serve_page"]
