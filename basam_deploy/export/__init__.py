"""ONNX export of BA-SAM: dynamic-resolution encoder and decoder graphs, checked against PyTorch."""
