#!/usr/bin/env python
"""Segment an image with a running ``basam-serve`` (Triton Inference Server) over HTTP or gRPC.

    python samples/python/triton_client.py photo.png --point 320,240 --output mask.png
    python samples/python/triton_client.py photo.png --point 320,240 --background 10,10 \\
        --box 200,150,450,380 --protocol grpc --url localhost:8001

All points (and the box) form one prompt; coordinates are x,y pixels of IMAGE. The encoder returns
the image embeddings and ``image_sizes`` (the server's resize plan), which go back to the decoder
unchanged: the client never resizes anything. Prints timings and the masks' IoU predictions; with
--output writes IMAGE with the best mask overlaid, as PNG.

Needs numpy and tritonclient[http,grpc] (not basam_deploy nor torch). Images: any format Pillow
reads when Pillow is installed; without it, 8-bit PNG (a small built-in reader) or .npy (H W 3
uint8). The PNG written without Pillow uses a small zlib-based writer.
"""

import argparse
import re
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ENCODER, DECODER = "basam_encoder", "basam_decoder"
DTYPES = {np.dtype(np.uint8): "UINT8", np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}
DTYPES[np.dtype(np.bool_)] = "BOOL"
OVERLAY = np.array([30, 144, 255], np.float32)  # mask tint (RGB)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- images -----------------------------------------------------------------------------------------


def read_image(path: Path) -> np.ndarray:
    """-> H W 3 uint8 RGB."""
    if path.suffix.lower() == ".npy":
        image = np.load(path)
    else:
        try:
            from PIL import Image
        except ImportError:
            image = read_png(path)
        else:
            image = np.asarray(Image.open(path).convert("RGB"))
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise SystemExit(f"{path}: expected an RGB image H x W x 3 uint8, got {image.shape}")
    return np.ascontiguousarray(image[..., :3])


def read_png(path: Path) -> np.ndarray:
    """8-bit, non-interlaced grey / grey+alpha / RGB / RGBA PNG -> H W C uint8 (no Pillow)."""
    data = path.read_bytes()
    if data[:8] != PNG_SIGNATURE:
        raise SystemExit(f"{path}: not a PNG; install Pillow to read other formats, or pass .npy")
    pos, idat, header = 8, [], None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos : pos + 4]), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = header
    channels = {0: 1, 4: 2, 2: 3, 6: 4}.get(colour)
    if depth != 8 or interlace or channels is None:
        raise SystemExit(f"{path}: this PNG (depth {depth}, colour type {colour}) needs Pillow")
    stride = width * channels
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prior = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:].astype(np.int32)
        if kind == 0:  # None
            row = line
        elif kind == 1:  # Sub: running sum along x, per channel
            row = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) % 256
        elif kind == 2:  # Up
            row = (line + prior) % 256
        else:  # Average, Paeth: each byte needs its left neighbour's result
            row = np.zeros(stride, np.int32)
            for x in range(stride):
                left = row[x - channels] if x >= channels else 0
                up, corner = prior[x], prior[x - channels] if x >= channels else 0
                if kind == 3:
                    row[x] = (line[x] + (left + up) // 2) % 256
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                    row[x] = (line[x] + pred) % 256
        out[y], prior = row, row
    return out.reshape(height, width, channels)


def write_png(path: Path, image: np.ndarray) -> None:
    """H W 3 uint8 RGB -> PNG file (Pillow when installed)."""
    try:
        from PIL import Image
    except ImportError:
        pass
    else:
        Image.fromarray(image).save(path)
        return
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[y].tobytes() for y in range(height))  # filter 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    path.write_bytes(PNG_SIGNATURE + png)


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask (H W bool) tinted over the image, half and half."""
    out = image.astype(np.float32)
    out[mask] = 0.5 * out[mask] + 0.5 * OVERLAY
    return out.round().astype(np.uint8)


# -- Triton -----------------------------------------------------------------------------------------


def error_line(message: str) -> str:
    """basam-serve's one-line message inside a Triton error (see basam_deploy.serving.protocol)."""
    found = re.findall(r"(?:RequestError|BackendError): (.*)", message)
    return found[-1] if found else (message.strip().splitlines() or [""])[0].split(" NOTE: ")[0]


class Client:
    """``infer(model, {name: array}) -> {name: array}`` over tritonclient's HTTP or gRPC client."""

    def __init__(self, url: str, protocol: str) -> None:
        if protocol == "grpc":
            import tritonclient.grpc as triton
        else:
            import tritonclient.http as triton
        self.triton = triton
        self.client = triton.InferenceServerClient(url)

    def infer(self, model: str, inputs: dict, outputs: tuple) -> dict:
        tensors = []
        for name, value in inputs.items():
            tensor = self.triton.InferInput(name, list(value.shape), DTYPES[value.dtype])
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        wanted = [self.triton.InferRequestedOutput(name) for name in outputs]
        result = self.client.infer(model, tensors, outputs=wanted)
        return {name: result.as_numpy(name) for name in outputs}

    def close(self) -> None:
        self.client.close()


def parse_numbers(text: str, count: int, what: str) -> list:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise SystemExit(f"{what} {text!r} is not {count} comma-separated numbers")
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path, help="PNG (any format with Pillow) or .npy")
    parser.add_argument("--point", action="append", default=[], metavar="X,Y", help="foreground")
    parser.add_argument("--background", action="append", default=[], metavar="X,Y")
    parser.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1")
    parser.add_argument("--url", default=None, help="host:port (default localhost:8000 / 8001)")
    parser.add_argument("--protocol", default="http", choices=["http", "grpc"])
    parser.add_argument("--single-mask", action="store_true", help="1 mask instead of 3")
    parser.add_argument("--output", type=Path, default=None, help="PNG: IMAGE with the best mask")
    args = parser.parse_args(argv)
    if not (args.point or args.background or args.box):
        parser.error("give at least one --point, --background or --box")
    url = args.url or ("localhost:8001" if args.protocol == "grpc" else "localhost:8000")

    image = read_image(args.image)
    prompt = {}
    points = [parse_numbers(p, 2, "--point") for p in args.point]
    points += [parse_numbers(p, 2, "--background") for p in args.background]
    if points:
        labels = [1] * len(args.point) + [0] * len(args.background)
        prompt["point_coords"] = np.array([[points]], np.float32)  # B=1, P=1, N 2
        prompt["point_labels"] = np.array([[labels]], np.int32)  # B=1, P=1, N
    if args.box:
        prompt["boxes"] = np.array([[parse_numbers(args.box, 4, "--box")]], np.float32)  # 1 1 4
    prompt["multimask_output"] = np.array([[not args.single_mask]])

    try:
        client = Client(url, args.protocol)
        start = time.perf_counter()
        encoded = client.infer(ENCODER, {"image": image[None]}, ("image_embeddings", "image_sizes"))
        middle = time.perf_counter()
        decoded = client.infer(
            DECODER, {**encoded, **prompt}, ("masks", "iou_predictions", "low_res_logits")
        )
        end = time.perf_counter()
        client.close()
    except ConnectionError as exc:
        print(f"cannot reach Triton at {url} ({exc}): is basam-serve running?", file=sys.stderr)
        return 1
    except Exception as exc:  # tritonclient.utils.InferenceServerException and friends
        text = exc.message() if hasattr(exc, "message") else str(exc)
        print(f"{type(exc).__name__}: {error_line(text)}", file=sys.stderr)
        return 1

    masks, scores = decoded["masks"][0, 0], decoded["iou_predictions"][0, 0]  # K H W, K
    best = int(np.argmax(scores))
    sizes = encoded["image_sizes"][0]
    print(
        f"image {image.shape[0]}x{image.shape[1]} -> model input {sizes[2][0]}x{sizes[2][1]} "
        f"(resized {sizes[1][0]}x{sizes[1][1]}), embeddings {encoded['image_embeddings'].shape}"
    )
    print(f"encoder {1000 * (middle - start):.1f} ms, decoder {1000 * (end - middle):.1f} ms")
    for k, (mask, score) in enumerate(zip(masks, scores)):
        mark = " (best)" if k == best and len(scores) > 1 else ""
        print(f"mask {k}: predicted IoU {score:.3f}, {mask.mean():.1%} of the image{mark}")
    if args.output:
        write_png(args.output, overlay(image, masks[best]))
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
