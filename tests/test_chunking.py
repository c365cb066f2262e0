"""Chunked global attention equals the single pass, with the bias made per chunk."""

import pytest
import torch
from conftest import randomize_, relative_error

from basam_deploy import build_sam
from basam_deploy.configs import AttentionSpec
from basam_deploy.modeling import BasamAttention
from basam_deploy.modeling import attention as attention_module
from basam_deploy.modeling.attention import rows_per_chunk

SPECS = {
    "sam": AttentionSpec(scale="sam"),
    "basam-manhattan": AttentionSpec(scale="log_n", n0=36, bias_slope=0.4),
    "basam-euclidean": AttentionSpec(scale="log_n", n0=36, bias_slope=0.4, bias_metric="euclidean"),
    "official": AttentionSpec(scale="official", patch_size=256, learned_coefficient=True),
}


@pytest.mark.parametrize("chunk", [1, 9, 12, 20], ids=lambda c: f"chunk{c}")
@pytest.mark.parametrize("grid", [(7, 5), (4, 9)], ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("name", list(SPECS))
def test_chunked_equals_unchunked(name, grid, chunk):
    single = randomize_(BasamAttention(48, 3, True, (6, 6), SPECS[name], chunk=0), seed=4).eval()
    chunked = BasamAttention(48, 3, True, (6, 6), SPECS[name], chunk=chunk).eval()
    chunked.load_state_dict(single.state_dict())
    assert rows_per_chunk(chunk, 6, grid, 4) is not None  # the test really chunks
    x = torch.randn(2, *grid, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert relative_error(chunked(x), single(x)) < 1e-5


def test_automatic_chunking_follows_the_memory_budget(monkeypatch):
    # B * nh * N * N * 4 bytes for 2 x 4 heads x (32 x 48 tokens)^2 is 75 MB: over a 4 MB budget.
    monkeypatch.setattr(attention_module, "LOGITS_BUDGET_BYTES", 4 << 20)
    rows = rows_per_chunk(None, 2 * 4, (32, 48), 4)
    row_bytes = 2 * 4 * 48 * (32 * 48) * 4
    assert rows == (4 << 20) // row_bytes and rows * row_bytes <= 4 << 20
    assert rows_per_chunk(None, 2 * 4, (8, 8), 4) is None  # small: one pass
    assert rows_per_chunk(0, 2 * 4, (32, 48), 4) is None  # 0: never chunk

    model = randomize_(build_sam("tiny", "basam", attention_chunk=0), seed=2)
    auto = build_sam("tiny", "basam")  # attention_chunk=None: automatic
    auto.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 512, 768, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert relative_error(auto.image_encoder(x), model.image_encoder(x)) < 1e-5


def test_explicit_chunk_rounds_to_whole_rows():
    assert rows_per_chunk(100, 4, (10, 30), 4) == 3
    assert rows_per_chunk(5, 4, (10, 30), 4) == 1  # at least one row
    assert rows_per_chunk(10_000, 4, (10, 30), 4) is None  # one chunk holds everything


@pytest.mark.parametrize("chunk", [0, 9], ids=["one-pass", "chunk9"])
@pytest.mark.parametrize("name", list(SPECS))
def test_the_reused_workspace_gives_bitwise_the_same_output(name, chunk, monkeypatch):
    # On the CPU the logits and softmax are computed in place in one reused workspace (it saves
    # the page faults of two fresh N-sized tensors per chunk): the values must not move by a bit.
    block = randomize_(BasamAttention(48, 3, True, (6, 6), SPECS[name], chunk=chunk), seed=4).eval()
    x = torch.randn(2, 7, 5, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reused = block(x)
        monkeypatch.setattr(attention_module, "workspace_for", lambda *a, **k: None)
        allocated = block(x)
    assert torch.equal(reused, allocated)


def test_no_workspace_while_autograd_records():
    # softmax's backward needs its output: an in-place softmax would corrupt the gradient.
    q = torch.randn(1, 3, 4, 4, 16, requires_grad=True)
    assert attention_module.workspace_for(3, 4, (4, 4), q) is None
    with torch.no_grad():
        assert attention_module.workspace_for(3, 4, (4, 4), q).numel() == 3 * 4 * 4 * 16
