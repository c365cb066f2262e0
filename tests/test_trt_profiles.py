"""Resolution profiles without TensorRT: parsing, validation, presets, per-input shapes, and the
choice of profile at run time (narrowest first, ties, non-square sizes, none at all)."""

import json

import pytest

from basam_deploy.errors import BasamError
from basam_deploy.tensorrt.profiles import (
    DECODER,
    ENCODER,
    MAX_BATCH,
    PromptRange,
    ResolutionProfile,
    ShapeRange,
    SizeRange,
    graph_kind,
    input_ranges,
    load_preset,
    parse_triple,
    preset_names,
    select_profile,
    validate_profile,
)

EXPORT = SizeRange(256, 4096, 16)
ENCODER_INPUTS = {"image": ["batch", 3, "height", "width"]}
DECODER_INPUTS = {
    "image_embeddings": [1, 256, "grid_h", "grid_w"],
    "point_coords": ["prompts", "points", 2],
    "point_labels": ["prompts", "points"],
    "mask_input": ["prompts", 1, "mask_h", "mask_w"],
    "has_mask_input": ["prompts"],
}


def P(text):
    return ResolutionProfile.parse(text)


def encoder_profiles(*texts):
    return [input_ranges(P(t), ENCODER_INPUTS, ENCODER) for t in texts]


def test_parse_round_trips_and_orders_min_opt_max():
    profile = P("1x256x256:2x512x320:4x768x768")
    assert profile.min == (1, 256, 256) and profile.opt == (2, 512, 320)
    assert profile.max == (4, 768, 768)
    assert str(profile) == "1x256x256:2x512x320:4x768x768"
    assert ResolutionProfile.from_json(profile.to_json()) == profile


@pytest.mark.parametrize(
    "text", ["256x256", "1x256x256:1x512x512", "1x256:1x512:1x768", "axbxc:1x2x3:1x2x3", ""]
)
def test_parse_errors_are_one_line_with_the_syntax(text):
    with pytest.raises(BasamError) as info:
        P(text)
    message = str(info.value)
    assert "\n" not in message and "BxHxW:BxHxW:BxHxW" in message and repr(text) in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0x256x256:1x256x256:1x256x256", "min batch 0 must be >= 1"),
        ("1x250x256:1x256x256:1x256x256", "min height 250 is not a positive multiple of 16"),
        ("1x256x256:1x256x264:1x256x512", "opt width 264 is not a positive multiple of 16"),
        ("1x128x256:1x256x256:1x256x256", "min height 128 is outside the exported size range"),
        ("1x256x256:1x256x256:1x256x8192", "max width 8192 is outside the exported size range"),
        ("1x512x512:1x256x512:1x768x768", "height needs min <= opt <= max, got 512, 256, 768"),
        ("2x256x256:1x256x256:4x256x256", "batch needs min <= opt <= max, got 2, 1, 4"),
        ("1x256x768:1x256x512:1x256x768", "width needs min <= opt <= max"),
        ("1x256x256:1x256x256:65x256x256", "max batch 65 is over the limit of 64 images"),
        ("1x256x256:1x256x256:99999999999x256x256", "max batch 99999999999 is over the limit"),
        ("100x256x256:100x256x256:100x256x256", "min batch 100 is over the limit of 64"),
    ],
)
def test_validation_names_the_rule_that_fails(text, expected):
    with pytest.raises(BasamError) as info:
        validate_profile(P(text), EXPORT, where="--profile")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_batch_limit_is_documented_and_names_the_fix():
    validate_profile(P(f"1x256x256:1x256x256:{MAX_BATCH}x256x256"), EXPORT)
    with pytest.raises(BasamError) as info:
        validate_profile(P(f"1x256x256:1x256x256:{MAX_BATCH + 1}x256x256"), EXPORT, "--profile")
    assert f"max batch <= {MAX_BATCH}" in str(info.value)
    # Every shipped preset stays within it.
    assert all(p.max[0] <= MAX_BATCH for name in preset_names() for p in load_preset(name))


def test_validation_uses_the_exports_range_and_multiple():
    profile = P("1x512x512:1x1024x1024:1x1536x1536")
    validate_profile(profile, EXPORT)
    with pytest.raises(BasamError, match="outside the exported size range 1024-4096"):
        validate_profile(profile, SizeRange(1024, 4096, 16))
    with pytest.raises(BasamError, match="not a positive multiple of 32"):
        validate_profile(P("1x528x512:1x1024x1024:1x1536x1536"), SizeRange(256, 4096, 32))


def test_presets_are_valid_for_the_default_export_and_the_ladder_is_as_documented():
    assert {"ladder", "wide", "sam1024"} <= set(preset_names())
    for name in preset_names():
        profiles = load_preset(name)
        assert profiles
        for profile in profiles:
            validate_profile(profile, EXPORT, where=name)
    ladder = load_preset("ladder")
    assert [(p.min[1], p.opt[1], p.max[1]) for p in ladder] == [
        (256, 512, 768),
        (768, 1024, 1536),
        (1536, 2048, 2048),
    ]
    assert all(p.min[1:] == (p.min[1],) * 2 and p.max[1:] == (p.max[1],) * 2 for p in ladder)
    (wide,) = load_preset("wide")
    assert (wide.min[1:], wide.opt[1:], wide.max[1:]) == ((256, 256), (1024, 1024), (2048, 2048))


def test_preset_errors_and_preset_files_by_path(tmp_path):
    with pytest.raises(BasamError) as info:
        load_preset("laddder")
    assert "unknown profile preset 'laddder'" in str(info.value) and "ladder" in str(info.value)
    custom = tmp_path / "mine.json"
    custom.write_text(
        json.dumps(
            {"profiles": [{"min": [1, 256, 512], "opt": [1, 256, 512], "max": [1, 256, 512]}]}
        )
    )
    assert load_preset(str(custom)) == (P("1x256x512:1x256x512:1x256x512"),)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(BasamError, match="not valid JSON"):
        load_preset(str(broken))
    empty = tmp_path / "empty.json"
    empty.write_text('{"profiles": []}')
    with pytest.raises(BasamError, match="has no 'profiles' list"):
        load_preset(str(empty))
    short = tmp_path / "short.json"
    short.write_text(
        '{"profiles": [{"min": [256, 256], "opt": [1, 256, 256], "max": [1, 256, 256]}]}'
    )
    with pytest.raises(BasamError, match="batch, height, width"):
        load_preset(str(short))


def test_encoder_shapes_take_the_profile_as_is():
    (ranges,) = encoder_profiles("1x256x320:2x512x512:4x768x1024")
    image = ranges["image"]
    assert (image.min, image.opt, image.max) == (
        (1, 3, 256, 320),
        (2, 3, 512, 512),
        (4, 3, 768, 1024),
    )


def test_decoder_shapes_are_derived_from_the_same_resolution_profile():
    profile = P("1x256x512:1x512x1024:4x768x1536")
    prompts = PromptRange(prompts=(1, 2, 8), points=(1, 3, 5))
    ranges = input_ranges(profile, DECODER_INPUTS, DECODER, prompts)
    emb = ranges["image_embeddings"]
    # grid = H/16, W/16; the decoder's image batch stays 1 whatever the profile's batch
    assert (emb.min, emb.opt, emb.max) == ((1, 256, 16, 32), (1, 256, 32, 64), (1, 256, 48, 96))
    mask = ranges["mask_input"]
    assert (mask.min, mask.opt, mask.max) == ((1, 1, 64, 128), (2, 1, 128, 256), (8, 1, 192, 384))
    coords = ranges["point_coords"]
    assert (coords.min, coords.opt, coords.max) == ((1, 1, 2), (2, 3, 2), (8, 5, 2))
    assert ranges["has_mask_input"].max == (8,)


def test_an_unknown_dimension_name_is_a_one_line_error():
    with pytest.raises(BasamError, match="dimension 'frames' that basam-trt cannot derive"):
        input_ranges(
            P("1x256x256:1x256x256:1x256x256"), {"image": ["frames", 3, "height", "width"]}, ENCODER
        )


def test_graph_kind_from_input_names():
    assert graph_kind(["image"]) == ENCODER
    assert graph_kind(list(DECODER_INPUTS)) == DECODER
    with pytest.raises(BasamError, match="neither basam-export's encoder"):
        graph_kind(["input_ids"])


def test_selection_picks_the_narrowest_profile_that_contains_the_input():
    ladder = [input_ranges(p, ENCODER_INPUTS, ENCODER) for p in load_preset("ladder")]
    wide = input_ranges(load_preset("wide")[0], ENCODER_INPUTS, ENCODER)
    profiles = [wide, *ladder]  # the wide profile first: order must not decide
    assert select_profile(profiles, {"image": (1, 3, 512, 512)}) == 1
    assert select_profile(profiles, {"image": (1, 3, 1024, 1024)}) == 2
    assert select_profile(profiles, {"image": (1, 3, 2048, 2048)}) == 3
    # 768 is on the boundary of rungs 0 and 1: rung 0 serves fewer shapes
    assert select_profile(profiles, {"image": (1, 3, 768, 768)}) == 1
    # non-square, both sides in one rung
    assert select_profile(profiles, {"image": (1, 3, 1536, 800)}) == 2
    # non-square across rungs: only the wide profile contains it
    assert select_profile(profiles, {"image": (1, 3, 512, 1024)}) == 0
    # batch 4 at 512: only rung 0 allows batch 4 (the wide profile stops at 2)
    assert select_profile(profiles, {"image": (4, 3, 512, 512)}) == 1


def test_selection_ties_go_to_the_nearest_opt_then_the_lowest_index():
    profiles = encoder_profiles(
        "1x256x256:1x256x256:1x512x512",
        "1x256x256:1x512x512:1x512x512",
        "1x256x256:1x512x512:1x512x512",
    )
    assert select_profile(profiles, {"image": (1, 3, 272, 272)}) == 0
    assert select_profile(profiles, {"image": (1, 3, 496, 480)}) == 1  # 2 and 1 tie: lowest index
    non_square = encoder_profiles(
        "1x256x512:1x256x512:1x512x1024", "1x512x256:1x512x256:1x1024x512"
    )
    assert select_profile(non_square, {"image": (1, 3, 320, 768)}) == 0
    assert select_profile(non_square, {"image": (1, 3, 768, 320)}) == 1


def test_no_profile_is_a_one_line_error_naming_every_range():
    profiles = [input_ranges(p, ENCODER_INPUTS, ENCODER) for p in load_preset("ladder")]
    with pytest.raises(BasamError) as info:
        select_profile(profiles, {"image": (1, 3, 512, 1024)})
    message = str(info.value)
    assert "\n" not in message and "no optimization profile serves image 1x3x512x1024" in message
    assert "#0 image 1x3x256x256..4x3x768x768 (opt 1x3x512x512)" in message
    assert "#2 image 1x3x1536x1536..1x3x2048x2048 (opt 1x3x2048x2048)" in message
    with pytest.raises(BasamError, match="serves image 8x3x512x512"):
        select_profile(profiles, {"image": (8, 3, 512, 512)})


def test_selection_over_several_inputs_needs_all_of_them_inside():
    profile = P("1x256x256:1x512x512:1x768x768")
    ranges = [input_ranges(profile, DECODER_INPUTS, DECODER)]
    shapes = {
        "image_embeddings": (1, 256, 32, 32),
        "point_coords": (2, 3, 2),
        "point_labels": (2, 3),
        "mask_input": (2, 1, 128, 128),
        "has_mask_input": (2,),
    }
    assert select_profile(ranges, shapes) == 0
    with pytest.raises(BasamError, match="point_coords 2x17x2"):
        select_profile(ranges, {**shapes, "point_coords": (2, 17, 2), "point_labels": (2, 17)})


def test_shape_range_contains_and_extent():
    r = ShapeRange((1, 3, 256, 256), (1, 3, 512, 512), (2, 3, 768, 768))
    assert r.contains((2, 3, 768, 256)) and not r.contains((1, 3, 784, 256))
    assert not r.contains((1, 3, 256))
    assert r.extent() == 2 * 1 * 513 * 513


def test_small_parsers():
    assert parse_triple("1:2:16", "points") == (1, 2, 16)
    for bad in ("1:2", "2:1:3", "0:1:1", "a:b:c"):
        with pytest.raises(BasamError, match="`points`"):
            parse_triple(bad, "points")
