"""Downscale, native or tiles? Prompted masks on mosaics whose objects keep their pixel size.

    python training/evaluate_mosaic.py --sizes 512 1024 2048 --mosaics 4

Each mosaic (``mosaic.make_mosaic``) is cut from a grid of 256 px held-out scenes, so its objects
have the pixel size they had in training however large the image. The same mosaics and prompts go
through four modes, all on the shipped tiny weights:

  downscale     SAM's way: ``Predictor(sam, resolution=256)``, the image shrunk to the training size
  native-sam    ``Predictor(sam)`` at the image's own size, preset ``sam`` (stock attention)
  native-basam  the same weights under preset ``basam`` (log-n scale, distance bias)
  tiles         256 px tiles on a stride-128 grid (what crop layers do), preset ``sam``: each
                prompt is answered in the tile holding the most of its points, the most central
                one among those (``mosaic.tile_for``); points outside it are dropped. Each tile
                is encoded once per image, when a prompt first needs it.

Per prompted instance (``evaluate.scene_prompts``): one point (the multimask output with the highest
predicted IoU; "best3" is the best of the three) and three points (single mask), mean mask IoU
against the ground truth. Times: the encoder per image (for tiles, all the tiles its prompts
needed) and one ``predict`` call (including the masks' upscale to the canvas), wall clock.
Progress goes to stderr, the table to stdout, everything per instance to ``--output``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import EVAL_SEED_BASE, TRAIN_SIZE, iou, scene_prompts  # noqa: E402
from mosaic import SEEDS_PER_MOSAIC, TILE, make_mosaic, tile_for  # noqa: E402

from basam_deploy import Predictor, build_sam  # noqa: E402

# Mosaic seeds start here: held out from training (seeds < 12,000 and seed * 10^6 + i) and from
# evaluate.py's scenes (EVAL_SEED_BASE + k, k < 10^7).
MOSAIC_SEED_BASE = EVAL_SEED_BASE + 10_000_000
MODES = ("downscale", "native-sam", "native-basam", "tiles")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", nargs="+", type=int, default=[512, 1024, 2048])
    p.add_argument("--mosaics", type=int, default=4, help="mosaics per size")
    p.add_argument("--instances", type=int, default=16, help="prompted instances per mosaic")
    p.add_argument("--seed", type=int, default=MOSAIC_SEED_BASE, help="the first mosaic's seed")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--checkpoint", default="default", help="a .pth file, or default")
    p.add_argument("--output", default="training/out/mosaic.json")
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


class Whole:
    """A mode that encodes the whole image once (downscaled or native)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.encoded, self.encode_s = 0, 0.0

    def set_image(self, image: np.ndarray) -> None:
        start = time.perf_counter()
        self.predictor.set_image(image)
        self.encoded, self.encode_s = 1, time.perf_counter() - start

    def predict(self, points: np.ndarray, multimask: bool):
        """points N 2 canvas pixels (all foreground) -> (C S S bool masks, C predicted IoUs)."""
        out = self.predictor.predict(points, np.ones(len(points)), multimask_output=multimask)
        return out.masks, out.iou_predictions


class Tiles:
    """A mode that answers each prompt inside one 256 px tile (``mosaic.tile_for``), encoding each
    tile the first time a prompt of the image needs it."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.image = None
        self.cache: dict = {}
        self.dropped = 0  # prompt points outside their tile, over the image
        self.encode_s = 0.0  # the encoder's share of the image's predict calls

    @property
    def encoded(self) -> int:
        return len(self.cache)

    def set_image(self, image: np.ndarray) -> None:
        self.image, self.cache, self.dropped, self.encode_s = image, {}, 0, 0.0

    def predict(self, points: np.ndarray, multimask: bool):
        size = self.image.shape[0]
        (y0, x0), inside = tile_for(points, size)
        if (y0, x0) not in self.cache:
            start = time.perf_counter()
            self.predictor.set_image(self.image[y0 : y0 + TILE, x0 : x0 + TILE])
            self.cache[(y0, x0)] = (self.predictor.embeddings, self.predictor.transform)
            self.encode_s += time.perf_counter() - start
        self.predictor.set_embeddings(*self.cache[(y0, x0)])
        self.dropped += int((~inside).sum())
        kept = points[inside] - np.array([x0, y0])
        out = self.predictor.predict(kept, np.ones(len(kept)), multimask_output=multimask)
        masks = np.zeros((len(out.masks), size, size), bool)  # C S S, the tile pasted in
        masks[:, y0 : y0 + TILE, x0 : x0 + TILE] = out.masks
        return masks, out.iou_predictions


def build_modes(names, checkpoint: str) -> dict:
    sam = build_sam("tiny", "sam", checkpoint=checkpoint)
    makers = {
        "downscale": lambda: Whole(Predictor(sam, resolution=TRAIN_SIZE)),
        "native-sam": lambda: Whole(Predictor(sam)),
        "native-basam": lambda: Whole(Predictor(build_sam("tiny", "basam", checkpoint=checkpoint))),
        "tiles": lambda: Tiles(Predictor(sam)),
    }
    return {name: makers[name]() for name in names}


def prompted(mode, mosaic, prompts) -> dict:
    """One mode on one mosaic: per-instance IoUs and the times."""
    size = mosaic.image.shape[0]
    mode.set_image(mosaic.image)
    record = {"1pt": [], "best3": [], "3pt": [], "predict_s": 0.0, "calls": 0}
    for index, points in prompts:
        gt = mosaic.mask(index)
        # Normalized points back to the canvas pixel they were drawn at (evaluate.py's rounding).
        xy = np.round(np.clip(points * size - 0.5, 0, size - 1))
        tick = time.perf_counter()
        masks1, scores = mode.predict(xy[:1], multimask=True)
        masks3, _ = mode.predict(xy, multimask=False)
        record["predict_s"] += time.perf_counter() - tick
        record["calls"] += 2
        ious = [iou(m, gt) for m in masks1]
        record["1pt"].append(ious[int(np.argmax(scores))])
        record["best3"].append(max(ious))
        record["3pt"].append(iou(masks3[0], gt))
    # Tiles encode lazily, inside predict: that share moves to the encoder's column, so that
    # encode + predict is the image's total, counted once.
    record["encode_s"] = mode.encode_s
    record["predict_s"] -= mode.encode_s if isinstance(mode, Tiles) else 0.0
    record["tiles_encoded"] = mode.encoded
    record["points_dropped"] = getattr(mode, "dropped", 0)
    return record


def evaluate_size(modes: dict, size: int, args) -> dict:
    per_mode = {name: [] for name in modes}
    instances = {"area": [], "mosaic": []}
    for m in range(args.mosaics):
        seed = args.seed + m * SEEDS_PER_MOSAIC
        mosaic = make_mosaic(seed, size)
        prompts = scene_prompts(seed, mosaic.masks(), args.instances)
        areas = mosaic.areas()
        instances["area"] += [int(areas[i]) for i, _ in prompts]
        instances["mosaic"] += [seed] * len(prompts)
        for name, mode in modes.items():
            rec = prompted(mode, mosaic, prompts)
            per_mode[name].append(rec)
            print(
                f"{size} px mosaic {m + 1}/{args.mosaics} ({mosaic.count} instances): {name} "
                f"1pt {np.mean(rec['1pt']):.3f} 3pt {np.mean(rec['3pt']):.3f} "
                f"encode {rec['encode_s']:.1f}s predict {rec['predict_s']:.1f}s",
                file=sys.stderr,
                flush=True,
            )
    return {"instances": instances, "modes": {n: summarize(r) for n, r in per_mode.items()}}


def summarize(records: list) -> dict:
    """Means over the instances of all mosaics of one size; times per image and per call."""
    scores = {k: np.concatenate([r[k] for r in records]) for k in ("1pt", "best3", "3pt")}
    images = len(records)
    predict = sum(r["predict_s"] for r in records)
    calls = sum(r["calls"] for r in records)
    return {
        **{k: float(v.mean()) for k, v in scores.items()},
        **{f"{k}_stderr": _stderr(v) for k, v in scores.items()},
        "per_instance": {k: [round(float(x), 4) for x in v] for k, v in scores.items()},
        "n": len(scores["1pt"]),
        "encode_s_per_image": sum(r["encode_s"] for r in records) / images,
        "predict_s_per_call": predict / calls,
        "s_per_image": (sum(r["encode_s"] for r in records) + predict) / images,
        "tiles_encoded_per_image": sum(r["tiles_encoded"] for r in records) / images,
        "points_dropped": sum(r["points_dropped"] for r in records),
    }


def _stderr(values: np.ndarray):
    """Standard error of the mean; None for a single value."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def print_table(results: dict) -> None:
    print(
        f"{'size':>5} {'mode':>13} {'n':>4} {'1 pt':>6} {'best3':>6} {'3 pt':>6} "
        f"{'encode s':>9} {'s/call':>7} {'s/image':>8}"
    )
    for size, row in results["sizes"].items():
        for name, r in row["modes"].items():
            print(
                f"{size:>5} {name:>13} {r['n']:4d} {r['1pt']:6.3f} {r['best3']:6.3f} "
                f"{r['3pt']:6.3f} {r['encode_s_per_image']:9.2f} {r['predict_s_per_call']:7.3f} "
                f"{r['s_per_image']:8.1f}"
            )


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    modes = build_modes(args.modes, args.checkpoint)
    results = {"args": vars(args), "sizes": {}}
    for size in args.sizes:
        results["sizes"][str(size)] = evaluate_size(modes, size, args)
    print_table(results)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
