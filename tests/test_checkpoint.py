"""Every checkpoint layout round-trips; every bad checkpoint is one clear line."""

import io
import os
import warnings

import numpy as np
import pytest
import torch
from conftest import randomize_, relative_error

from basam_deploy import BasamError, BasamWarning, build_sam
from basam_deploy.modeling.attention_terms import resize_rel_pos

TINY_GLOBAL_BLOCKS = (1, 3)


def embeddings(model, size=(1024, 1024)):
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.image_encoder(x)


def assert_same_weights(model, state):
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def official_training_checkpoint(source, training_side=512):
    """The official BA-SAM training code's layout, built from a basam-official model: a dict with
    epoch/model/state_dict/optimizer/best_mae/path_helper; global-block rel-pos tables at the
    training resolution's size; coefficients; no pos_embed."""
    state = dict(source.state_dict())
    length = 2 * (training_side // 16) - 1
    for i in TINY_GLOBAL_BLOCKS:
        for axis in "hw":
            key = f"image_encoder.blocks.{i}.attn.rel_pos_{axis}"
            state[key] = resize_rel_pos(state[key], length).contiguous()
    return {
        "epoch": 12,
        "model": "sam",
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
        "best_mae": np.float64(0.0412),
        "path_helper": {"prefix": "logs/basam", "ckpt_path": "logs/basam/Model"},
    }


def test_stock_sam_layout_round_trips(tmp_path, no_basam_warnings):
    source = randomize_(build_sam("tiny", "basam"), seed=1)
    path = tmp_path / "sam_tiny.pth"
    torch.save(source.state_dict(), path)
    loaded = build_sam("tiny", "basam", checkpoint=path)
    assert_same_weights(loaded, source.state_dict())
    assert torch.equal(embeddings(loaded, (320, 512)), embeddings(source, (320, 512)))


def test_official_training_layout_loads_everything_it_contains(tmp_path, no_basam_warnings):
    source = randomize_(build_sam("tiny", "basam-official"), seed=2)
    checkpoint = official_training_checkpoint(source)
    path = tmp_path / "Model" / "checkpoint_best.pth"
    path.parent.mkdir()
    torch.save(checkpoint, path)
    loaded = build_sam("tiny", "basam-official", checkpoint=path)
    assert_same_weights(loaded, checkpoint["state_dict"])  # rel-pos tables at 63 rows, coefficients
    assert loaded.image_encoder.blocks[1].attn.rel_pos_h.shape == (63, 32)
    assert loaded.image_encoder.blocks[0].attn.rel_pos_h.shape == (15, 32)  # window block
    assert loaded.image_encoder.pos_embed is None
    # At its training grid the stored tables are used as they are: same as a model whose tables
    # were never resized, evaluated at 1024 px where it resizes 63 -> 127 rows.
    out = embeddings(loaded, (1024, 1024))
    assert out.shape == (1, 64, 64, 64) and torch.isfinite(out).all()
    assert relative_error(out, embeddings(source, (1024, 1024))) > 1e-6  # the longer tables matter


def test_image_encoder_only_layout(tmp_path):
    source = randomize_(build_sam("tiny", "sam"), seed=3)
    path = tmp_path / "encoder.pth"
    torch.save(source.image_encoder.state_dict(), path)
    with pytest.warns(BasamWarning, match="prompt encoder and mask decoder keep their random"):
        loaded = build_sam("tiny", "sam", checkpoint=path)
    for key, value in source.image_encoder.state_dict().items():
        assert torch.equal(loaded.image_encoder.state_dict()[key], value), key
    assert torch.equal(embeddings(loaded, (256, 384)), embeddings(source, (256, 384)))


def test_stock_sam_checkpoint_into_the_official_preset(tmp_path):
    source = randomize_(build_sam("tiny", "sam"), seed=4)
    path = tmp_path / "sam.pth"
    torch.save(source.state_dict(), path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = build_sam("tiny", "basam-official", checkpoint=path)
    notes = " | ".join(str(w.message) for w in caught if w.category is BasamWarning)
    assert "left at the official initial value 0.1" in notes
    assert "dropped image_encoder.pos_embed" in notes
    assert loaded.image_encoder.blocks[0].attn.coefficient.item() == pytest.approx(0.1)
    assert torch.equal(
        loaded.image_encoder.blocks[1].attn.rel_pos_h, source.image_encoder.blocks[1].attn.rel_pos_h
    )


def test_dataparallel_prefix_is_stripped(tmp_path):
    source = randomize_(build_sam("tiny", "sam"), seed=5)
    path = tmp_path / "dp.pth"
    torch.save({"module." + k: v for k, v in source.state_dict().items()}, path)
    assert_same_weights(build_sam("tiny", "sam", checkpoint=path), source.state_dict())


class NotData:
    pass


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return path


def _good_state():
    return randomize_(build_sam("tiny", "basam"), seed=6).state_dict()


def _without(key):
    state = _good_state()
    del state[key]
    return state


def _with_extra():
    state = _good_state()
    state["image_encoder.blocks.0.attn.gate"] = torch.zeros(1)
    return state


def _with_bad_shape():
    state = _good_state()
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 32)
    return state


def _with_nan():
    state = _good_state()
    state["image_encoder.neck.0.weight"][0, 0] = float("nan")
    return state


def _saved(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _legacy(obj) -> bytes:
    return _saved(obj, _use_new_zipfile_serialization=False)


def _truncated(tmp_path):
    full = _write(tmp_path, "full.pth", _good_state())
    return full.read_bytes()[: full.stat().st_size // 2]


BAD = {
    "missing-file": (None, r"checkpoint not found: .*nope\.pth"),
    "truncated": ("truncated", r"is truncated or not a PyTorch checkpoint"),
    "empty": (b"", r"is truncated or not a PyTorch checkpoint \(0 bytes"),
    "text": (b"<html>Not Found</html>\n", r"truncated or not a PyTorch"),
    "lfs-pointer": (
        b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
        r"Git LFS pointer",
    ),
    "code": ({"model": NotData()}, r"is a pickle that asks for code \(test_checkpoint\.NotData\)"),
    # torch 2.13 words this refusal differently ("whose module posix is blocked"): named all the same.
    "code-blocked-module": ({"f": os.system}, r"is a pickle that asks for code \(posix\.system\)"),
    "legacy-format-code": (
        lambda: _legacy({"f": os.system}),
        r"is a pickle that asks for code \(posix\.system",
    ),
    "pickle-protocol-4": (
        lambda: _saved({"w": torch.zeros(2)}, pickle_protocol=4),
        r"saved with pickle protocol 4, which a weights-only load cannot read",
    ),
    "non-finite": (_with_nan, r"NaN or infinite values in 1 tensors \(image_encoder\.neck\.0"),
    "tensor": (torch.zeros(3), r"holds a Tensor, not a state dict"),
    "no-sam-keys": ({"fc.weight": torch.zeros(2, 2)}, r"holds no SAM weights"),
    "missing-key": (
        lambda: _without("image_encoder.neck.0.weight"),
        r"1 missing keys \(image_encoder\.neck\.0\.weight\)",
    ),
    "unexpected-key": (_with_extra, r"1 unexpected keys \(image_encoder\.blocks\.0\.attn\.gate\)"),
    "shape": (
        _with_bad_shape,
        r"1 shape mismatches \(mask_decoder\.iou_token\.weight \(1, 32\) vs model \(1, 64\)\)",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_checkpoints_are_one_line_errors(tmp_path, case):
    content, message = BAD[case]
    if content is None:
        path = tmp_path / "nope.pth"
    else:
        if content == "truncated":
            content = _truncated(tmp_path)
        elif callable(content):
            content = content()
        path = _write(tmp_path, "bad.pth", content)
    with warnings.catch_warnings(record=True) as printed:
        warnings.simplefilter("always")
        with pytest.raises(BasamError, match=message) as err:
            build_sam("tiny", "basam", checkpoint=path)
    assert "\n" not in str(err.value)
    assert [str(w.message) for w in printed] == []  # nothing on stderr beside the one line


def test_directory_is_an_error(tmp_path):
    with pytest.raises(BasamError, match="is a directory"):
        build_sam("tiny", checkpoint=tmp_path)


def test_wrong_model_size_names_the_right_model(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(build_sam("tiny", "sam").state_dict(), path)
    with pytest.raises(
        BasamError, match=r"width 128, depth 4, 4 heads.*build it as model 'tiny'"
    ) as err:
        build_sam("vit_b", "sam", checkpoint=path)
    assert "\n" not in str(err.value)


def test_official_checkpoint_needs_the_official_preset(tmp_path):
    source = randomize_(build_sam("tiny", "basam-official"), seed=7)
    path = tmp_path / "official.pth"
    torch.save(official_training_checkpoint(source), path)
    with pytest.raises(
        BasamError, match=r"official BA-SAM.*'coefficient'.*preset 'basam-official'"
    ):
        build_sam("tiny", "basam", checkpoint=path)


def test_code_is_named_whatever_words_torch_uses_for_the_refusal(tmp_path, monkeypatch):
    """The reason is read from the pickle itself, not from torch's message, which changed across
    the supported versions (2.6 .. 2.13) and may change again."""
    import pickle

    path = _write(tmp_path, "code.pth", {"model": NotData(), "w": torch.zeros(2)})
    real_load = torch.load

    def reworded(*args, **kwargs):
        try:
            return real_load(*args, **kwargs)
        except pickle.UnpicklingError:
            raise pickle.UnpicklingError("Weights only load failed: some new wording") from None

    monkeypatch.setattr(torch, "load", reworded)
    with pytest.raises(BasamError, match=r"asks for code \(test_checkpoint\.NotData\)") as err:
        build_sam("tiny", "basam", checkpoint=path)
    assert "truncated" not in str(err.value)
