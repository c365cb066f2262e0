"""samples/cpp: the pure C++ parts (resize policy, coordinates, image in, masks out, profile choice,
PPM/PGM) built with the project's CMakeLists.txt (or g++ directly) and compared number for number
with basam_deploy's Python (ImageTransform, select_profile) on non-square sizes; and, where a
TensorRT include folder is given (BASAM_TENSORRT_INCLUDE), the TensorRT part compile-checked with
samples/cpp/check_syntax.sh. Nothing here needs TensorRT's libraries or a GPU."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from basam_deploy.errors import BasamError
from basam_deploy.pipeline.transform import ImageTransform
from basam_deploy.tensorrt.profiles import (
    DECODER,
    ENCODER,
    input_ranges,
    load_preset,
    select_profile,
)

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "cpp"
PURE_SOURCES = ["src/transform.cpp", "src/profiles.cpp", "src/image_io.cpp", "tests/pure_check.cpp"]


@pytest.fixture(scope="module")
def pure_check(tmp_path_factory) -> Path:
    """The check program, built with CMake where present (exercising CMakeLists.txt without
    TensorRT), else with g++ directly."""
    build = tmp_path_factory.mktemp("cpp")
    if shutil.which("cmake") and (shutil.which("c++") or shutil.which("g++")):
        subprocess.run(
            ["cmake", "-S", str(SAMPLE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["cmake", "--build", str(build), "--target", "pure_check", "-j", "2"],
            check=True,
            capture_output=True,
        )
        return build / "pure_check"
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler (g++ or clang++) and no cmake on this machine")
    binary = build / "pure_check"
    subprocess.run(
        [compiler, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{SAMPLE / 'src'}"]
        + [str(SAMPLE / s) for s in PURE_SOURCES]
        + ["-o", str(binary)],
        check=True,
        capture_output=True,
    )
    return binary


def run(binary: Path, *args, stdin: str = "") -> str:
    result = subprocess.run(
        [str(binary), *map(str, args)], input=stdin, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def write_ppm(path: Path, image: np.ndarray) -> None:
    """Binary PPM (P6) or, for H x W, PGM (P5), with a header comment the reader must skip."""
    magic = b"P6" if image.ndim == 3 else b"P5"
    header = magic + b"\n# written by test_cpp_sample\n%d %d\n255\n" % (
        image.shape[1],
        image.shape[0],
    )
    path.write_bytes(header + np.ascontiguousarray(image, np.uint8).tobytes())


# (H, W, min, max, resolution or None): non-square both ways, shrinking, enlarging, unchanged, a
# fixed long side, halves rounded to even (12.5 -> 12, 13.5 -> 14) and a short side padded to min.
CASES = [
    (300, 517, 256, 1024, None),
    (517, 300, 256, 1024, None),
    (1000, 200, 256, 1024, None),
    (300, 517, 256, 1024, 400),
    (100, 37, 256, 4096, None),
    (2000, 3001, 256, 2048, None),
    (25, 100, 16, 64, 50),
    (27, 100, 16, 64, 50),
    (45, 70, 32, 64, None),
    (20, 13, 32, 64, None),
]


def plan_args(h, w, low, high, resolution):
    return [h, w, low, high, 16, resolution or 0]


@pytest.mark.parametrize("h, w, low, high, resolution", CASES)
def test_resize_policy_matches_image_transform(pure_check, h, w, low, high, resolution):
    expected = ImageTransform.plan((h, w), low, high, 16, resolution)
    out = run(pure_check, "plan", *plan_args(h, w, low, high, resolution)).split()
    assert (int(out[1]), int(out[2])) == tuple(expected.resized)
    assert (int(out[4]), int(out[5])) == tuple(expected.padded)


@pytest.mark.parametrize("h, w, low, high, resolution", CASES[:6])
def test_coordinate_mapping_matches_image_transform(pure_check, h, w, low, high, resolution):
    t = ImageTransform.plan((h, w), low, high, 16, resolution)
    for x, y in [(0.0, 0.0), (w / 3, h / 7), (w, h), (w - 0.5, 12.25)]:
        out = run(pure_check, "coords", *plan_args(h, w, low, high, resolution), x, y).split()
        model = np.array([float(out[1]), float(out[2])])
        np.testing.assert_allclose(model, t.to_model_coords([x, y]), rtol=0, atol=1e-9)
        np.testing.assert_allclose([float(out[4]), float(out[5])], [x, y], rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "shape, low, high, resolution",
    [
        ((45, 70, 3), 32, 64, None),  # shrink: PIL's widened filter
        ((20, 13, 3), 32, 64, None),  # enlarge, short side padded up to min
        ((48, 40, 3), 32, 64, None),  # fits: no resampling, padding only
        ((61, 37), 32, 64, 40),  # grey PGM read as RGB, a fixed long side
    ],
)
def test_model_input_matches_image_transform(pure_check, tmp_path, shape, low, high, resolution):
    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    write_ppm(tmp_path / "in.ppm", image)
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    t = ImageTransform.plan(rgb.shape[:2], low, high, 16, resolution)
    out = run(
        pure_check,
        "preprocess",
        tmp_path / "in.ppm",
        low,
        high,
        16,
        resolution or 0,
        tmp_path / "x.f32",
    )
    assert out.split() == ["padded", str(t.padded[0]), str(t.padded[1])]
    actual = np.fromfile(tmp_path / "x.f32", np.float32).reshape(1, 3, *t.padded)
    # PIL's fixed-point resize gives the same uint8 pixels; normalized in float32 by both
    np.testing.assert_array_equal(actual, t.model_input(rgb))


@pytest.mark.parametrize("h, w, low, high, resolution", [CASES[0], CASES[1], CASES[8], CASES[9]])
def test_masks_to_image_matches_image_transform(pure_check, tmp_path, h, w, low, high, resolution):
    t = ImageTransform.plan((h, w), low, high, 16, resolution)
    low_res = np.random.default_rng(h + w).normal(0, 4, t.grid).astype(np.float32)
    low_res.tofile(tmp_path / "low.f32")
    run(
        pure_check,
        "postprocess",
        tmp_path / "low.f32",
        *plan_args(h, w, low, high, resolution),
        tmp_path / "out.f32",
        tmp_path / "out.pgm",
    )
    expected = t.masks_to_image(low_res[None, None])[0, 0]
    logits = np.fromfile(tmp_path / "out.f32", np.float32).reshape(h, w)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    data = (tmp_path / "out.pgm").read_bytes()
    header = f"P5\n{w} {h}\n255\n".encode()
    assert data.startswith(header)
    mask = np.frombuffer(data[len(header) :], np.uint8).reshape(h, w)
    decided = np.abs(expected) > 1e-4  # a logit this close to 0 may fall either way
    assert set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal((mask == 255)[decided], (expected > 0)[decided])


def test_profile_choice_matches_select_profile(pure_check):
    """The ladder and wide presets together (overlapping profiles, so the narrowest must win),
    for the encoder (one input) and the decoder (five inputs, prompts and points)."""
    profiles = list(load_preset("ladder")) + list(load_preset("wide"))
    signatures = {
        ENCODER: {"image": ["batch", 3, "height", "width"]},
        DECODER: {
            "image_embeddings": [1, 64, "grid_h", "grid_w"],
            "point_coords": ["prompts", "points", 2],
            "point_labels": ["prompts", "points"],
            "mask_input": ["prompts", 1, "mask_h", "mask_w"],
            "has_mask_input": ["prompts"],
        },
    }
    queries = {
        ENCODER: [
            {"image": (1, 3, h, w)}
            for h, w in [(512, 512), (768, 768), (256, 2048), (1024, 1536), (2048, 2048), (1, 1)]
        ]
        + [
            {"image": (4, 3, 512, 512)},
            {"image": (2, 3, 1600, 1600)},
            {"image": (3, 3, 1024, 1024)},
        ],
        DECODER: [
            {
                "image_embeddings": (1, 64, gh, gw),
                "point_coords": (p, n, 2),
                "point_labels": (p, n),
                "mask_input": (p, 1, 4 * gh, 4 * gw),
                "has_mask_input": (p,),
            }
            for gh, gw, p, n in [
                (32, 32, 1, 2),
                (48, 48, 1, 2),
                (16, 128, 3, 5),
                (100, 100, 1, 1),
                (64, 64, 65, 2),
            ]
        ],
    }
    for kind, signature in signatures.items():
        ranges = [input_ranges(p, signature, kind) for p in profiles]
        lines = [
            f"profile {i} {name} {'x'.join(map(str, r.min))} {'x'.join(map(str, r.opt))} "
            f"{'x'.join(map(str, r.max))}"
            for i, profile in enumerate(ranges)
            for name, r in profile.items()
        ]
        expected = []
        for shapes in queries[kind]:
            try:
                expected.append(select_profile(ranges, shapes))
            except BasamError:
                expected.append(-1)
            lines.append(
                "query " + " ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items())
            )
        chosen = [
            int(v) for v in run(pure_check, "profiles", stdin="\n".join(lines) + "\n").split()
        ]
        assert chosen == expected
        assert -1 in chosen and len(set(chosen)) > 2  # the cases cover misses and several profiles


def tensorrt_include():
    """A TensorRT include folder: BASAM_TENSORRT_INCLUDE, or an installed TensorRT."""
    candidates = [os.environ.get("BASAM_TENSORRT_INCLUDE", "")]
    candidates += ["/usr/include/x86_64-linux-gnu", "/usr/include", "/usr/local/tensorrt/include"]
    return next((c for c in candidates if c and Path(c, "NvInferRuntime.h").is_file()), None)


def cuda_include():
    root = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    return Path(root, "include") if Path(root, "include", "cuda_runtime_api.h").is_file() else None


@pytest.mark.skipif(
    tensorrt_include() is None or cuda_include() is None or shutil.which("g++") is None,
    reason="no TensorRT headers (set BASAM_TENSORRT_INCLUDE to NVIDIA/TensorRT's include/), no CUDA "
    "headers or no g++",
)
def test_tensorrt_part_compiles_against_the_headers():
    result = subprocess.run(
        ["bash", str(SAMPLE / "check_syntax.sh"), tensorrt_include(), str(cuda_include())],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "ok  src/trt_engine.cpp" in result.stdout and "ok  src/main.cpp" in result.stdout


STUB = """
/* Link-time stand-in for libnvinfer: the only two functions of it the sample may call directly
   (everything else is reached through TensorRT's interface classes). */
void* createInferRuntime_INTERNAL(void* logger, int version) { (void)logger; (void)version; return 0; }
int getInferLibVersion(void) { return 110100; }
"""


@pytest.mark.skipif(
    tensorrt_include() is None
    or cuda_include() is None
    or not (shutil.which("cmake") and shutil.which("gcc") and shutil.which("nvcc")),
    reason="no TensorRT headers (set BASAM_TENSORRT_INCLUDE to NVIDIA/TensorRT's include/), no CUDA "
    "toolkit, cmake or gcc",
)
def test_cmake_builds_and_links_the_tensorrt_sample_against_a_stub(tmp_path):
    """CMakeLists.txt's TensorRT branch end to end: configure with -DTENSORRT_ROOT, compile, link
    against a stub libnvinfer that exports only the runtime factory and the version, and run the
    program up to the runtime creation (the stub returns none: one error line, exit code 2)."""
    root = tmp_path / "tensorrt"
    (root / "lib").mkdir(parents=True)
    (root / "include").symlink_to(tensorrt_include())
    (tmp_path / "stub.c").write_text(STUB)
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-o",
            str(root / "lib/libnvinfer.so"),
            str(tmp_path / "stub.c"),
        ],
        check=True,
    )
    build = tmp_path / "build"
    configure = subprocess.run(
        ["cmake", "-S", str(SAMPLE), "-B", str(build), f"-DTENSORRT_ROOT={root}"]
        + ["-DBASAM_REQUIRE_TENSORRT=ON", "-DBASAM_BUILD_CHECKS=OFF"],
        capture_output=True,
        text=True,
    )
    assert configure.returncode == 0, configure.stderr
    compiled = subprocess.run(
        ["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True
    )
    assert compiled.returncode == 0, compiled.stdout[-3000:]
    binary = build / "basam_segment"
    imported = subprocess.run(
        ["nm", "-D", "--undefined-only", str(binary)], capture_output=True, text=True
    )
    assert {"createInferRuntime_INTERNAL", "getInferLibVersion"} <= set(imported.stdout.split())

    image = tmp_path / "in.ppm"
    write_ppm(image, np.zeros((3, 4, 3), np.uint8))
    cuda_lib = Path(cuda_include()).parent / "lib64"
    env = {**os.environ, "LD_LIBRARY_PATH": f"{root / 'lib'}:{cuda_lib}"}
    argv = [str(binary), "--engines", str(tmp_path), "--image", str(image), "--point", "1,1"]
    result = subprocess.run(
        argv + ["--output", str(tmp_path / "mask.pgm")], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert (
        result.stderr
        == "basam_segment: error: TensorRT could not create a runtime (is libnvinfer installed?)\n"
    )
