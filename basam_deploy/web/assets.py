"""The files the page needs besides its own (``static/``): onnxruntime-web's build and the sample
images, found on disk at start, so that a missing install is one line then, not a blank page.

onnxruntime-web comes from the npm registry at install time (``npm ci`` with the repository's
package.json and package-lock.json) into ``node_modules/``, which is not in git: it is looked for
in ``ort_dist`` when given, else beside the current folder and the repository this package lives
in. Only the files the page loads are served (``ORT_FILES``).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import BasamError

ORT_DIST = Path("node_modules") / "onnxruntime-web" / "dist"
# The WebAssembly-only ES module build, its wasm binary and the loader it imports (onnxruntime-web
# 1.19+ names). WebGPU / WebGL builds are not served: the page uses the WASM backend only.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.wasm", "ort-wasm-simd-threaded.mjs")
SAMPLES = Path("samples") / "images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MEDIA_TYPES = {".mjs": "text/javascript", ".wasm": "application/wasm"}
INSTALL_HINT = "run `npm ci` in the basam-deploy repository (package.json beside pyproject.toml)"


def _repository() -> Path:
    """The checkout this package was installed from (editable installs), or site-packages."""
    return Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Assets:
    """ort: {file name: path} of ``ORT_FILES``; samples: {file name: path} of the sample images."""

    ort: Dict[str, Path]
    samples: Dict[str, Path]

    @classmethod
    def locate(cls, ort_dist: Optional[Path] = None, samples: Optional[Path] = None) -> "Assets":
        return cls(_ort_files(ort_dist), _sample_images(samples))


def _ort_files(ort_dist: Optional[Path]) -> Dict[str, Path]:
    candidates: List[Path] = (
        [Path(ort_dist)] if ort_dist else [Path.cwd() / ORT_DIST, _repository() / ORT_DIST]
    )
    for folder in candidates:
        files = {name: folder / name for name in ORT_FILES}
        if all(path.is_file() for path in files.values()):
            return files
    looked = ", ".join(str(folder) for folder in candidates)
    raise BasamError(
        f"onnxruntime-web is not installed (no {ORT_FILES[0]} and its wasm in {looked}): "
        f"{INSTALL_HINT}, or give `ort_dist` (a copy of node_modules/onnxruntime-web/dist)"
    )


def _sample_images(samples: Optional[Path]) -> Dict[str, Path]:
    """Explicit folder: must exist. Default: the repository's samples/images/ when present (an
    installed wheel has none; the page then offers only the file picker)."""
    if samples is not None and not Path(samples).is_dir():
        raise BasamError(f"`samples` {samples} is not a folder of images")
    folder = Path(samples) if samples is not None else _repository() / SAMPLES
    if not folder.is_dir():
        return {}
    return {
        path.name: path
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
    }
