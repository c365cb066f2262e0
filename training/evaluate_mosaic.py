"""Downscale, native or tiles? Prompted and automatic masks on mosaics whose objects keep their
pixel size (docs/mosaic.md holds the tables and the commands that made them).

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
  native-window a diagnostic, prompted only: the native-sam embedding of the whole image, but the
                decoder sees only the 16 x 16 tokens of the prompt's tile (the tiles rule). Against
                tiles it isolates the encoder's context, against native-sam the decoder's.

Automatic (``--parts automatic``): ``MaskGenerator`` with one grid point every ``--point-spacing``
px in every mode, recall and precision against the instances by one-to-one matching at mask IoU 0.5
and 0.75 (``matches``).

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
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate import EVAL_SEED_BASE, TRAIN_SIZE, iou, scene_prompts  # noqa: E402
from mosaic import SEEDS_PER_MOSAIC, TILE, make_mosaic, tile_for, tiles  # noqa: E402

from basam_deploy import MaskGenerator, Predictor, build_sam  # noqa: E402
from basam_deploy.amg import box_nms  # noqa: E402
from basam_deploy.sam_modules import amg  # noqa: E402

# Mosaic seeds start here: held out from training (seeds < 12,000 and seed * 10^6 + i) and from
# evaluate.py's scenes (EVAL_SEED_BASE + k, k < 10^7).
MOSAIC_SEED_BASE = EVAL_SEED_BASE + 10_000_000
MODES = ("downscale", "native-sam", "native-basam", "tiles", "native-window")
PROMPTED_ONLY = ("native-window",)  # a diagnostic of the prompted masks, no generator of its own
MATCH_IOUS = (0.5, 0.75)
# A tile's mask whose box comes this close to an edge of the tile inside the canvas is taken as cut
# by the tile and dropped (SAM's rule for crops, is_box_near_crop_edge; SAM's 20 px would drop most
# objects over 88 px of a 256 px tile, 4 px catches masks cut at the edge).
TILE_EDGE_PX = 4.0
# Merging the tiles' masks: box NMS at SAM's crop_nms_thresh, ranked by predicted IoU (SAM ranks
# crops by 1 / crop area, a tie between equal tiles).
TILE_NMS = 0.7


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
    p.add_argument(
        "--parts", nargs="+", default=["prompted", "automatic"], choices=["prompted", "automatic"]
    )
    p.add_argument(
        "--automatic-mosaics", type=int, default=None, help="mosaics per size (default --mosaics)"
    )
    p.add_argument(
        "--point-spacing",
        type=int,
        default=32,
        help="automatic masks: canvas pixels between grid points, in every mode (a 256 px tile\n"
        "gets 256 / spacing points a side, a whole S px image S / spacing)",
    )
    # SAM's defaults (0.88, 0.95) keep almost nothing of the tiny model's masks on mosaics; these
    # were chosen on single 256 px held-out scenes (seeds 905,000,000+), where 91 % of the masks
    # with a predicted IoU >= 0.7 and 89 % of those with stability >= 0.8 match an instance at 0.5.
    p.add_argument("--pred-iou-thresh", type=float, default=0.7)
    p.add_argument("--stability-score-thresh", type=float, default=0.8)
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


class Window(Whole):
    """Native encoding of the whole image; each prompt decoded on its tile's window of the
    embedding (``mosaic.tile_for``), as if that window were a 256 px image."""

    def set_image(self, image: np.ndarray) -> None:
        super().set_image(image)
        self.size = image.shape[0]
        self.whole = self.predictor.embeddings  # 1 C S/16 S/16
        self.window = self.predictor.plan((TILE, TILE))
        self.dropped = 0  # prompt points outside their tile, over the image

    def predict(self, points: np.ndarray, multimask: bool):
        (y0, x0), inside = tile_for(points, self.size)
        patch = self.predictor.multiple_of  # tile origins are multiples of 128 or S - 256: of 16
        rows = slice(y0 // patch, (y0 + TILE) // patch)
        cols = slice(x0 // patch, (x0 + TILE) // patch)
        self.predictor.set_embeddings(self.whole[:, :, rows, cols], self.window)
        self.dropped += int((~inside).sum())
        kept = points[inside] - np.array([x0, y0])
        out = self.predictor.predict(kept, np.ones(len(kept)), multimask_output=multimask)
        masks = np.zeros((len(out.masks), self.size, self.size), bool)  # C S S, pasted
        masks[:, y0 : y0 + TILE, x0 : x0 + TILE] = out.masks
        return masks, out.iou_predictions


def build_modes(names, checkpoint: str) -> dict:
    sam = build_sam("tiny", "sam", checkpoint=checkpoint)
    makers = {
        "downscale": lambda: Whole(Predictor(sam, resolution=TRAIN_SIZE)),
        "native-sam": lambda: Whole(Predictor(sam)),
        "native-basam": lambda: Whole(Predictor(build_sam("tiny", "basam", checkpoint=checkpoint))),
        "tiles": lambda: Tiles(Predictor(sam)),
        "native-window": lambda: Window(Predictor(sam)),
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


def prompted_size(modes: dict, size: int, args) -> dict:
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


def generator(predictor: Predictor, side: int, args, output_mode: str) -> MaskGenerator:
    """SAM's generator with one grid point every ``args.point_spacing`` px of a ``side`` px image."""
    return MaskGenerator(
        predictor,
        points_per_side=max(1, side // args.point_spacing),
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        output_mode=output_mode,
    )


def tiled_masks(predictor: Predictor, image: np.ndarray, args):
    """Per-tile generation merged: the generator on every 256 px tile (``mosaic.tiles``, stride
    128), masks cut by an inner tile edge dropped, the rest merged by box NMS. -> (canvas RLEs,
    predicted IoUs)."""
    size = image.shape[0]
    gen = generator(predictor, TILE, args, "binary_mask")
    kept = []  # (tile mask, y0, x0, box x0 y0 x1 y1 in the canvas, predicted IoU)
    for y0, x0 in tiles(size):
        records = gen.generate(image[y0 : y0 + TILE, x0 : x0 + TILE])
        if not records:
            continue
        xywh = np.array([r["bbox"] for r in records], np.float64)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)  # in the tile
        cut = amg.is_box_near_crop_edge(
            torch.as_tensor(boxes), [x0, y0, x0 + TILE, y0 + TILE], [0, 0, size, size], TILE_EDGE_PX
        ).numpy()
        for r, box, dropped in zip(records, boxes, cut):
            if not dropped:
                kept.append((r["segmentation"], y0, x0, box + [x0, y0, x0, y0], r["predicted_iou"]))
    if not kept:
        return [], np.zeros(0)
    scores = np.array([k[4] for k in kept])
    keep = box_nms(np.stack([k[3] for k in kept]), scores, TILE_NMS)
    rles = []
    for index in keep:
        mask, y0, x0 = kept[index][:3]
        canvas = np.zeros((size, size), np.uint8, order="F")
        canvas[y0 : y0 + TILE, x0 : x0 + TILE] = mask
        rles.append(mask_utils.encode(canvas))
    return rles, scores[keep]


def automatic_masks(name: str, mode, image: np.ndarray, args):
    """-> (canvas RLEs, predicted IoUs, seconds) of one mode on one image."""
    start = time.perf_counter()
    if name == "tiles":
        rles, scores = tiled_masks(mode.predictor, image, args)
    else:
        records = generator(mode.predictor, image.shape[0], args, "coco_rle").generate(image)
        rles = [r["segmentation"] for r in records]
        scores = np.array([r["predicted_iou"] for r in records])
    return rles, scores, time.perf_counter() - start


def matches(rles: list, scores: np.ndarray, gt: list, threshold: float) -> int:
    """Greedy one-to-one matching, most confident mask first (COCO's order): how many masks find
    an unmatched instance with mask IoU >= threshold."""
    if not rles or not gt:
        return 0
    ious = np.asarray(mask_utils.iou(rles, gt, [0] * len(gt))).reshape(len(rles), len(gt))
    taken = np.zeros(len(gt), bool)
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, ious[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= threshold:
            taken[j] = True
    return int(taken.sum())


def automatic_size(modes: dict, size: int, args) -> dict:
    """Recall and precision of each mode's automatic masks against the instances, pooled over
    the mosaics of one size, and the seconds per image."""
    modes = {name: mode for name, mode in modes.items() if name not in PROMPTED_ONLY}
    totals = {
        name: {"masks": 0, "seconds": 0.0, **{str(t): 0 for t in MATCH_IOUS}} for name in modes
    }
    instances = 0
    count = args.mosaics if args.automatic_mosaics is None else args.automatic_mosaics
    for m in range(count):
        mosaic = make_mosaic(args.seed + m * SEEDS_PER_MOSAIC, size)
        gt = [
            mask_utils.encode(np.asfortranarray(mosaic.mask(i), np.uint8))
            for i in range(mosaic.count)
        ]
        instances += len(gt)
        for name, mode in modes.items():
            rles, scores, seconds = automatic_masks(name, mode, mosaic.image, args)
            row = totals[name]
            row["masks"] += len(rles)
            row["seconds"] += seconds
            for t in MATCH_IOUS:
                row[str(t)] += matches(rles, scores, gt, t)
            print(
                f"{size} px mosaic {m + 1}/{count} automatic: {name} {len(rles)} masks, "
                f"{row[str(MATCH_IOUS[0])]} matched so far at {MATCH_IOUS[0]}, {seconds:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    out = {"instances": instances, "mosaics": count, "modes": {}}
    for name, row in totals.items():
        out["modes"][name] = {
            "masks": row["masks"],
            "s_per_image": row["seconds"] / count,
            **{f"recall@{t}": row[str(t)] / max(instances, 1) for t in MATCH_IOUS},
            **{f"precision@{t}": row[str(t)] / max(row["masks"], 1) for t in MATCH_IOUS},
        }
    return out


def _stderr(values: np.ndarray):
    """Standard error of the mean; None for a single value."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def print_table(results: dict) -> None:
    if any("prompted" in row for row in results["sizes"].values()):
        print_prompted(results)
    if any("automatic" in row for row in results["sizes"].values()):
        print_automatic(results)


def print_automatic(results: dict) -> None:
    print(
        f"{'size':>5} {'mode':>13} {'GT':>5} {'masks':>6} {'R@0.5':>6} {'P@0.5':>6} "
        f"{'R@0.75':>6} {'P@0.75':>6} {'s/image':>8}"
    )
    for size, row in results["sizes"].items():
        if "automatic" not in row:
            continue
        auto = row["automatic"]
        for name, r in auto["modes"].items():
            print(
                f"{size:>5} {name:>13} {auto['instances']:5d} {r['masks']:6d} "
                f"{r['recall@0.5']:6.3f} {r['precision@0.5']:6.3f} {r['recall@0.75']:6.3f} "
                f"{r['precision@0.75']:6.3f} {r['s_per_image']:8.1f}"
            )


def print_prompted(results: dict) -> None:
    print(
        f"{'size':>5} {'mode':>13} {'n':>4} {'1 pt':>6} {'best3':>6} {'3 pt':>6} "
        f"{'encode s':>9} {'s/call':>7} {'s/image':>8}"
    )
    for size, row in results["sizes"].items():
        if "prompted" not in row:
            continue
        for name, r in row["prompted"]["modes"].items():
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
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    for size in args.sizes:
        row = results["sizes"][str(size)] = {}
        if "prompted" in args.parts:
            row["prompted"] = prompted_size(modes, size, args)
        if "automatic" in args.parts:
            row["automatic"] = automatic_size(modes, size, args)
        # After every size: a long run stopped early keeps what it measured.
        out.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
