import math
import os

# Triton chooses between compiling and interpreting once per process, at its first import: the
# suite has no GPU, so every Triton kernel it runs goes through the interpreter.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Registers segment_anything so that tests can import it where torchvision is missing (see
# basam_deploy/sam_modules.py); conftest is imported before any test module.
import basam_deploy.sam_modules  # noqa: E402, F401


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter with random values that keep activations O(1).

    segment-anything zero-initialises the rel-pos tables and position embedding; random values are
    needed so that the tests exercise every term of the logits.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if name.endswith("coefficient"):
                param.copy_(0.5 + 0.3 * noise)
            elif name.endswith(("rel_pos_h", "rel_pos_w")):
                param.copy_(noise / math.sqrt(param.shape[-1]))
            elif param.dim() == 1 and "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif param.dim() >= 2:
                fan_in = param[0].numel()
                param.copy_(noise / math.sqrt(fan_in))
            else:
                param.copy_(0.1 * noise)
    return module


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected||, in float64."""
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture
def no_basam_warnings(recwarn):
    yield
    assert not [w for w in recwarn if "basam" in str(w.category).lower()]
