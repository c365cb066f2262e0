"""Mask IoU of one checkpoint under presets ``sam`` and ``basam`` at 1x, 2x and 4x the training size.

    python training/evaluate.py --checkpoint basam_deploy/weights/tiny_basam.pth

Held-out synthetic scenes (seeds disjoint from training), the same scenes at every size, through
``basam_deploy.Predictor`` as a user would run it. Per instance: one foreground point (the
three multimask outputs, the one with the highest predicted IoU kept) and three foreground points
(single-mask output). Points are drawn once per scene in normalized coordinates and mapped to each
size, so every size sees the same prompts on the same scene. Both presets load the SAME weights,
so the difference between them is only the attention formula.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import make_scene  # noqa: E402

from basam_deploy import Predictor, build_sam  # noqa: E402

EVAL_SEED_BASE = 900_000_000  # far from the training seeds (seed * 10^6 + i for small seeds)
TRAIN_SIZE = 256


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--checkpoint", default="default", help="a .pth file, or default: the embedded model"
    )
    p.add_argument("--presets", nargs="+", default=["sam", "basam"])
    p.add_argument(
        "--images",
        nargs="+",
        default=["256:100", "512:50", "1024:25"],
        help="size:count pairs (the first `count` held-out scenes at that size)",
    )
    p.add_argument("--instances", type=int, default=4, help="prompted instances per scene (max)")
    p.add_argument("--output", default="training/out/eval.json")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--by-area",
        action="store_true",
        help="also print each row by the instances' visible area, with the best-of-3 score",
    )
    return p.parse_args()


def scene_prompts(seed: int, masks_ref: list, instances: int):
    """Per instance, three foreground points as normalized (x, y) in [0, 1], drawn inside the
    mask at the reference size; point 0 alone is the one-point prompt."""
    rng = np.random.default_rng(seed)
    size = masks_ref[0].shape[0]
    chosen = rng.choice(len(masks_ref), size=min(instances, len(masks_ref)), replace=False)
    prompts = []
    for i in chosen:
        ys, xs = np.nonzero(masks_ref[i])
        pick = rng.integers(0, len(xs), 3)
        prompts.append((int(i), (np.stack([xs[pick], ys[pick]], 1) + 0.5) / size))
    return prompts


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


AREA_BINS = (0.0, 0.005, 0.01, 0.03, 0.10, 1.01)  # visible area / image area


def evaluate(predictors: dict, size: int, count: int, instances: int) -> dict:
    """{preset: {"1pt": mean IoU, "3pt": mean IoU, "best3": mean IoU, "n": instances,
    "by_area": [per AREA_BINS bin: {"area": [lo, hi), "n", "1pt", "best3", "3pt"}]}} at one size.

    "best3" is the best of the three one-point outputs: what "1pt" would be if the IoU head
    always picked the right one."""
    scores = {name: {"1pt": [], "3pt": [], "best3": [], "area": []} for name in predictors}
    for k in range(count):
        seed = EVAL_SEED_BASE + k
        _, masks_ref = make_scene(seed, TRAIN_SIZE)
        if not masks_ref:
            continue
        image, masks = make_scene(seed, size)
        if len(masks) != len(masks_ref):
            # A visible remnant near the size threshold can flip with rasterization; skip the
            # scene rather than compare different instances.
            continue
        prompts = scene_prompts(seed, masks_ref, instances)
        for name, predictor in predictors.items():
            predictor.set_image(image)
            for index, points in prompts:
                gt = masks[index]
                # The reference pixel's centre at this size, rounded to a pixel: the same
                # scene point at every size (a pixel centre of the 256 px mask, so inside it).
                xy = np.round(np.clip(points * size - 0.5, 0, size - 1))
                # One prompt (points N x 2): SamPredictor's shapes, masks C H W, scores C.
                out1 = predictor.predict(xy[:1], np.ones(1), multimask_output=True)
                outputs = [iou(mask, gt) for mask in out1.masks]
                scores[name]["1pt"].append(outputs[int(np.argmax(out1.iou_predictions))])
                scores[name]["best3"].append(max(outputs))
                out3 = predictor.predict(xy, np.ones(3), multimask_output=False)
                scores[name]["3pt"].append(iou(out3.masks[0], gt))
                scores[name]["area"].append(float(gt.mean()))
    row = {name: _summary(s) for name, s in scores.items()}
    if "sam" in scores and "basam" in scores:
        # Same instances and prompts under both presets: the paired difference and its standard
        # error say whether a gap is larger than the scene-to-scene noise.
        for key in ("1pt", "3pt"):
            diff = np.array(scores["basam"][key]) - np.array(scores["sam"][key])
            row[f"basam_minus_sam_{key}"] = {
                "mean": float(diff.mean()),
                "stderr": float(diff.std(ddof=1) / np.sqrt(len(diff))),
            }
    return row


def _summary(scores: dict) -> dict:
    """Means over all instances, and per visible-area bin."""
    keys = ("1pt", "best3", "3pt")
    values = {key: np.array(scores[key]) for key in keys}
    area = np.array(scores["area"])
    bins = []
    for lo, hi in zip(AREA_BINS[:-1], AREA_BINS[1:]):
        chosen = (area >= lo) & (area < hi)
        cell = {key: float(values[key][chosen].mean()) if chosen.any() else None for key in keys}
        bins.append({"area": [lo, hi], "n": int(chosen.sum()), **cell})
    return {**{key: float(values[key].mean()) for key in keys}, "n": len(area), "by_area": bins}


def print_by_area(preset: str, size: int, row: dict) -> None:
    print(f"  {preset} at {size} px, by visible area:   n    1pt  best3    3pt")
    for b in row["by_area"]:
        lo, hi = b["area"]
        label = f"{100 * lo:g}-{100 * hi:g} %" if hi <= 1 else f">= {100 * lo:g} %"
        cells = " ".join(
            "     -" if b[k] is None else f"{b[k]:6.3f}" for k in ("1pt", "best3", "3pt")
        )
        print(f"  {label:>32} {b['n']:4d} {cells}")
    cells = " ".join(f"{row[k]:6.3f}" for k in ("1pt", "best3", "3pt"))
    print(f"  {'all':>32} {row['n']:4d} {cells}")


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    predictors = {
        name: Predictor(build_sam("tiny", name, checkpoint=args.checkpoint))
        for name in args.presets
    }
    results = {"checkpoint": args.checkpoint, "sizes": {}}
    print(
        f"{'size':>6} {'scale':>5} "
        + " ".join(f"{p + ' 1pt':>10} {p + ' 3pt':>10}" for p in args.presets)
        + "  instances  time"
    )
    for spec in args.images:
        size, count = (int(v) for v in spec.split(":"))
        start = time.time()
        row = evaluate(predictors, size, count, args.instances)
        results["sizes"][str(size)] = {"scenes": count, **row}
        cells = " ".join(f"{row[p]['1pt']:10.3f} {row[p]['3pt']:10.3f}" for p in args.presets)
        n = row[args.presets[0]]["n"]
        gaps = [
            f"{key} {row[f'basam_minus_sam_{key}']['mean']:+.3f}"
            f"+-{row[f'basam_minus_sam_{key}']['stderr']:.3f}"
            for key in ("1pt", "3pt")
            if f"basam_minus_sam_{key}" in row
        ]
        print(
            f"{size:6d} {size / TRAIN_SIZE:4.0f}x {cells}  {n:9d}  {time.time() - start:4.0f}s"
            + (f"  basam-sam: {', '.join(gaps)}" if gaps else ""),
            flush=True,
        )
        if args.by_area:
            for preset in args.presets:
                print_by_area(preset, size, row[preset])
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
