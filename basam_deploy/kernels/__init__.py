"""The fused BA-SAM attention kernel (Triton) and what launches it (docs/fused_attention.md).

- ``launch``: plain-Python launch arithmetic shared by every caller: tile sizes per dtype and head
  dim, the grid, the int32 scalar arguments, the constexprs, Triton's signature. No Triton import.
- ``attention``: the ``@triton.jit`` kernel and ``basam_attention(q, k, v, rel_h, rel_w, ...)``,
  its launcher for torch tensors (CUDA, or CPU in Triton's interpreter).
- ``aot``: ``compile_attention(...)``, ahead-of-time PTX for a ``GPUTarget`` (the TensorRT plugin's
  kernel, ``basam_deploy/tensorrt/plugin.py``).
- ``ptx``: PTX ISA versions: the one the kernel is compiled for (``DEFAULT_PTX_VERSION``) and the
  CUDA driver each needs (``minimum_driver_for_ptx``). No Triton import.

Nothing is imported here, so ``launch`` and ``ptx`` work where Triton is not installed.
"""
