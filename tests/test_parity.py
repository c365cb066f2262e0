"""The comparison engine (basam_deploy/parity/): the statistics and their bounds, the report every
command prints, and the loop's contract (each side's decoder on its own embeddings, one image at a
time, the same inputs for every side), run on numpy stand-ins for the graphs."""

import json

import numpy as np
import pytest

from basam_deploy.parity import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    INT8_TOLERANCE,
    Case,
    ParityReport,
    Side,
    Tolerance,
    compare_sides,
    output_stats,
    tolerance_for,
)


def quiet(_: str) -> None:
    pass


# Statistics and bounds ----------------------------------------------------------------------------


def test_statistics_of_a_known_error():
    reference = np.array([[3.0, 4.0]], np.float32)  # norm 5
    actual = np.array([[3.0, 4.5]], np.float32)  # error (0, 0.5): norm 0.5
    stats = output_stats(actual, reference)
    assert stats.max_abs_error == pytest.approx(0.5)
    assert stats.relative_error == pytest.approx(0.1)
    assert stats.cosine == pytest.approx((9 + 18) / (5 * np.hypot(3, 4.5)))
    assert stats.mask_iou is None  # only asked for mask outputs


def test_mask_iou_is_of_the_logits_above_zero():
    reference = np.array([1.0, 2.0, -1.0, -3.0])  # mask 1 1 0 0
    actual = np.array([0.5, -0.1, 2.0, -1.0])  # mask 1 0 1 0: 1 shared of 3
    assert output_stats(actual, reference, is_mask=True).mask_iou == pytest.approx(1 / 3)
    empty = -np.ones(4)
    assert output_stats(empty, empty, is_mask=True).mask_iou == 1.0  # both empty: the same mask


def test_zero_references_and_shape_mismatches():
    zero = np.zeros(3)
    same = output_stats(zero, zero)  # was a NaN relative error: identical outputs failed
    assert same.relative_error == 0.0 and same.cosine == 1.0 and same.max_abs_error == 0.0
    assert output_stats(np.ones(3), zero).relative_error == np.inf  # any error on nothing fails
    with pytest.raises(ValueError, match=r"shape \(2,\) differs from the reference's \(3,\)"):
        output_stats(np.zeros(2), zero)


def test_bounds_name_what_failed_and_nan_never_passes():
    reference = np.array([3.0, 4.0])
    good = output_stats(reference * (1 + 1e-6), reference, is_mask=True)
    assert good.failures(FP32_TOLERANCE) == [] and good.failures(FP16_TOLERANCE) == []
    bad = output_stats(np.array([-3.0, 4.0]), reference, is_mask=True)
    failures = bad.failures(Tolerance(max_relative_error=1e-4, min_cosine=0.999, min_mask_iou=0.98))
    assert [f.split()[0] for f in failures] == ["relative", "cosine", "mask"]
    assert failures[0] == "relative error 1.20e+00 > 0.0001"
    assert bad.failures(Tolerance()) == []  # every bound disabled
    nan = output_stats(np.array([np.nan, 4.0]), reference)
    assert nan.failures(FP32_TOLERANCE) and nan.failures(FP16_TOLERANCE)
    assert nan.failures(Tolerance(max_relative_error=np.inf)) == ["relative error nan > inf"]


def test_the_loosest_side_sets_the_bounds():
    assert tolerance_for("fp32", "fp32") == FP32_TOLERANCE
    assert tolerance_for("fp32", "fp16") == tolerance_for("fp16") == FP16_TOLERANCE
    # An INT8 export compared with anything (basam-trt compare, selftest) gets INT8's bounds.
    assert tolerance_for("fp32", "int8") == tolerance_for("fp16", "int8") == INT8_TOLERANCE
    assert INT8_TOLERANCE.max_relative_error is None and INT8_TOLERANCE.min_mask_iou == 0.95
    with pytest.raises(ValueError, match="unknown precision 'bf16'"):
        tolerance_for("fp32", "bf16")


# The report ---------------------------------------------------------------------------------------


def test_report_passes_only_with_rows_that_all_pass(tmp_path):
    report = ParityReport("pytorch", "onnxruntime", FP32_TOLERANCE)
    assert not report and report.table().endswith("parity: FAILED (nothing was compared)")
    ones = np.ones((1, 4, 2, 2))
    report.add("encoder", "256x320", 2, {"image_embeddings": output_stats(ones, ones)})
    assert report and report.table().endswith("parity: PASSED")
    row = report.add("enc+dec", "256x320", 2, {"low_res_masks": output_stats(-ones, ones, True)})
    assert not row.passed and row.failures[0].startswith("low_res_masks: relative error")
    assert not report and report.table().splitlines()[-1] == "parity: FAILED"
    assert "enc+dec     256x320     2 low_res_masks" in report.table()

    path = tmp_path / "sub" / "parity.json"
    report.write_json(path)
    data = json.loads(path.read_text())
    assert data["passed"] is False and data["tolerance"]["max_relative_error"] == 1e-4
    assert [r["passed"] for r in data["rows"]] == [True, False]
    assert data["rows"][1]["outputs"]["low_res_masks"]["mask_iou"] == 0.0
    assert [p.name for p in path.parent.iterdir()] == ["parity.json"]  # no temporary left


# The loop -----------------------------------------------------------------------------------------


class Recorder:
    """A runner that adds ``offset`` to one output and records every feed it is given."""

    def __init__(self, fn, offset=0.0):
        self.name, self.fn, self.offset, self.feeds, self.active = "rec", fn, offset, [], 0

    def activate(self):
        self.active += 1

    def deactivate(self):
        self.active -= 1

    def infer(self, feed):
        self.feeds.append({k: np.array(v) for k, v in feed.items()})
        return {k: v + self.offset for k, v in self.fn(feed).items()}


def encode(feed):  # B 3 H W -> B 4 H/16 W/16
    image = feed["image"]
    pooled = image.reshape(*image.shape[:2], image.shape[2] // 16, 16, image.shape[3] // 16, 16)
    return {"image_embeddings": np.concatenate([pooled.mean((3, 5))] * 2, axis=1)}


def decode(feed):  # 1 C h w, P prompts -> P 4 4h 4w masks, P 4 scores
    emb, prompts = feed["image_embeddings"], feed["point_coords"].shape[0]
    assert emb.shape[0] == 1, "the decoder takes one image's embeddings"
    masks = np.repeat(np.repeat(emb[:, :4], 4, axis=2), 4, axis=3)  # 1 4 4h 4w
    return {
        "low_res_masks": np.repeat(masks, prompts, axis=0),
        "iou_predictions": np.repeat(emb.mean((2, 3))[:, :4], prompts, axis=0),
    }


def test_each_side_decodes_its_own_embeddings_one_image_at_a_time():
    ref = Side("ref", Recorder(encode), Recorder(decode))
    off = Side("off", Recorder(encode, offset=0.5), Recorder(decode))
    same = Side("same", Recorder(encode), Recorder(decode))
    cases = [Case(2, 32, 48), Case(1, 48, 32)]
    reports = compare_sides(ref, [off, same], cases, progress=quiet)
    # every side saw the same images
    for a, b in zip(ref.encoder.feeds, off.encoder.feeds):
        np.testing.assert_array_equal(a["image"], b["image"])
    # the decoder ran once per image, on the side's own (shifted) embeddings
    assert len(off.decoder.feeds) == 3
    shifted = encode(ref.encoder.feeds[0])["image_embeddings"] + 0.5
    np.testing.assert_array_equal(off.decoder.feeds[1]["image_embeddings"], shifted[1:2])
    # activated once, deactivated at the end
    assert all(r.active == 0 for s in (ref, off, same) for r in (s.encoder, s.decoder))
    bad, good = reports
    assert not bad.passed and good.passed
    assert [(r.graph, r.size, r.batch) for r in good.rows] == [
        ("encoder", "32x48", 2),
        ("enc+dec", "32x48", 2),
        ("encoder", "48x32", 1),
        ("enc+dec", "48x32", 1),
    ]
    # batch 2 x 2 prompts decoded outputs are compared together
    assert good.rows[1].outputs["low_res_masks"].mask_iou == 1.0
    assert bad.rows[1].failures  # the shift reaches the decoder's outputs


def test_a_side_without_decoder_is_compared_on_the_encoder_with_a_note():
    ref = Side("ref", Recorder(encode), Recorder(decode))
    enc_only = Side("enc", Recorder(encode))
    (report,) = compare_sides(ref, [enc_only], [Case(1, 32, 32)], progress=quiet)
    assert [r.graph for r in report.rows] == ["encoder"] and report.passed
    assert report.notes == ["decoder not compared: no decoder on enc"]
    assert "note: decoder not compared" in report.table()


def test_tolerance_follows_the_precision_of_either_side():
    fp32 = Side("a", Recorder(encode))
    fp16 = Side("b", Recorder(encode), precision="fp16")
    reports = compare_sides(fp32, [fp32, fp16], [Case(1, 16, 16)], progress=quiet)
    assert [r.tolerance for r in reports] == [FP32_TOLERANCE, FP16_TOLERANCE]
