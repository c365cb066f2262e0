"""The C++ sample (samples/cpp), when it has been built: segment one image with the engines.

The binary is looked for at the path given, ``$BASAM_SAMPLE``, then ``build/cpp/basam_segment``
under the working directory and under the repository (samples/cpp/README.md builds it there).
"""

import os
import subprocess
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import BasamError

SAMPLE_ENV = "BASAM_SAMPLE"
RELATIVE = Path("build") / "cpp" / "basam_segment"
REPOSITORY = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300


def find_sample(explicit: Optional[Path] = None) -> Optional[Path]:
    """The built sample binary, or None (an ``explicit`` path that is missing is an error)."""
    if explicit is not None:
        if not Path(explicit).is_file():
            raise BasamError(f"C++ sample {explicit} not found: build it (samples/cpp/README.md)")
        return Path(explicit)
    candidates = [os.environ.get(SAMPLE_ENV), Path.cwd() / RELATIVE, REPOSITORY / RELATIVE]
    for path in candidates:
        if path and Path(path).is_file() and os.access(path, os.X_OK):
            return Path(path)
    return None


def write_ppm(path: Path, height: int = 288, width: int = 320) -> None:
    """A binary PPM (P6) with a bright disc on a gradient: something to segment."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255 // width, y * 255 // height, np.full_like(x, 64)], axis=-1)
    disc = (y - height // 2) ** 2 + (x - width // 2) ** 2 < (min(height, width) // 4) ** 2
    image[disc] = 230
    path.write_bytes(f"P6\n{width} {height}\n255\n".encode() + image.astype(np.uint8).tobytes())


def run_sample(binary: Path, engines: Path, workdir: Path) -> str:
    """Run the sample on a synthetic image with one point on the disc; the detail line, or a
    BasamError naming the exit code and the sample's last stderr line."""
    image, mask = workdir / "selftest.ppm", workdir / "selftest_mask.pgm"
    write_ppm(image)
    argv = [str(binary), "--engines", str(engines), "--image", str(image)]
    argv += ["--point", "160,144", "--output", str(mask)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0 or not mask.is_file():
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise BasamError(f"{binary.name} exited with {done.returncode}: {last}")
    if not mask.read_bytes().startswith(b"P5"):
        raise BasamError(f"{binary.name} wrote {mask.name}, which is not a PGM mask")
    printed = done.stdout.strip().splitlines()
    return f"{binary.name}: {printed[-1] if printed else 'mask written'}"
