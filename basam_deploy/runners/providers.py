"""onnxruntime execution providers by the names users type (``cpu``, ``cuda``, ``tensorrt``).

A thin pass-through: the names map to onnxruntime's provider names, a provider this onnxruntime
does not offer (``onnxruntime.get_available_providers()``) is refused in one line before a session
is made, and once made, a session that silently dropped a requested provider (onnxruntime falls
back to the CPU with only a log message when, e.g., the CUDA libraries fail to load) is refused too.
The CUDA and TensorRT providers come with the ``onnxruntime-gpu`` wheel (``basam-deploy[gpu]``).
Not verified on a GPU: this project's machines have only the CPU provider.
"""

from typing import List, Optional, Sequence

from ..errors import BasamError

# The short names of the command lines -> onnxruntime's provider names.
PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
DEFAULT_PROVIDERS = ("cpu",)
GPU_HINT = "pip install 'basam-deploy[gpu]' (onnxruntime-gpu) on a machine with CUDA"


def provider_name(name: str) -> str:
    """'cuda' or 'CUDAExecutionProvider' -> 'CUDAExecutionProvider'; a one-line error otherwise."""
    if name in PROVIDERS.values():
        return name
    if name.lower() in PROVIDERS:
        return PROVIDERS[name.lower()]
    raise BasamError(
        f"unknown onnxruntime execution provider {name!r}: choose {', '.join(PROVIDERS)}"
    )


def resolve_providers(names: Sequence[str], available: Optional[Sequence[str]] = None) -> List[str]:
    """onnxruntime provider names for ``names``, in priority order, each checked to be available
    (``available``: default ``onnxruntime.get_available_providers()``)."""
    if not names:
        raise BasamError("no onnxruntime execution provider given: choose from cpu, cuda, tensorrt")
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    resolved: List[str] = []
    for name in names:
        provider = provider_name(name)
        if provider not in available:
            raise BasamError(
                f"onnxruntime execution provider {provider} is not available here (this "
                f"onnxruntime has {', '.join(available)}): {GPU_HINT}, or use the cpu provider"
            )
        if provider not in resolved:
            resolved.append(provider)
    return resolved


def check_session_providers(requested: Sequence[str], session_providers: Sequence[str]) -> None:
    """One line when a session runs without a provider it was asked for: onnxruntime drops a
    provider whose libraries (CUDA, cuDNN, TensorRT) do not load, with only a log warning."""
    dropped = [p for p in requested if p not in session_providers]
    if dropped:
        raise BasamError(
            f"onnxruntime could not start {', '.join(dropped)} (the session fell back to "
            f"{', '.join(session_providers)}; usually CUDA, cuDNN or TensorRT libraries that do not "
            f"load): install the versions onnxruntime-gpu needs, or use the cpu provider"
        )


def short_names(providers: Sequence[str]) -> str:
    """['CUDAExecutionProvider', 'CPUExecutionProvider'] -> 'cuda+cpu', for labels."""
    short = {v: k for k, v in PROVIDERS.items()}
    return "+".join(short.get(p, p) for p in providers)
