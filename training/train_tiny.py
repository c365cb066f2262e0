"""Train the embedded default model, ``build_sam("tiny", "basam")``, from scratch on synthetic scenes.

    python training/train_tiny.py --output basam_deploy/weights/tiny_basam.pth

(the shipped checkpoint, with the defaults: 6800 steps, about 40 minutes on a 2-core CPU, one
process training on two threads and one drawing scenes; ``--device cuda`` runs the same recipe on
a GPU, equal up to floating-point differences.)

Prompts as in SAM's training: per image up to 8 target instances, each prompted with 1-3 points
inside it (sometimes plus a background point) or with a jittered box. A single point is ambiguous,
so it gets the three multimask outputs and the best one is trained (SAM's min-over-outputs loss),
plus the mean loss of all three at weight 0.25 (``--spread-weight``; a single-mask prompt's one
output counts again at that weight): synthetic scenes have no part / whole ambiguity, and without
it the outputs the IoU head does not pick stay poor, and its pick often is one of them
(docs/default_model.md, the sweep). Every other prompt trains the single-mask output.
Loss: BCE + dice on the low-res logits upsampled to the image (as SAM upsamples them), plus MSE of
the IoU head against the real IoU of each output.

Reproducible for a given ``--seed`` and ``--steps``: the learning-rate schedule is defined by
``--steps``, the scene stream (scene i and its prompts) does not depend on ``--workers``, and
``--minutes`` is only a safety stop (a run that hits it says so and is not the same as a run that
finished its steps).
"""

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic import make_scene  # noqa: E402

from basam_deploy import build_sam  # noqa: E402

TRAIN_SIZE = 256  # tiny's pre-training size: the encoder's n0 and stored tables are for it
TRAIN_SEED_BASE = 0  # scene seeds seed*10^6 + i; evaluation uses a disjoint range


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output", default="basam_deploy/weights/tiny_basam.pth")
    p.add_argument("--minutes", type=float, default=60.0, help="wall-clock safety stop")
    p.add_argument("--steps", type=int, default=6800, help="optimizer steps (defines the schedule)")
    p.add_argument("--batch", type=int, default=8, help="images per step")
    p.add_argument("--targets", type=int, default=8, help="prompted instances per image")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--spread-weight",
        type=float,
        default=0.25,
        help="weight of the mean loss over all multimask outputs, added to the best output's",
    )
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    p.add_argument(
        "--workers", type=int, default=1, help="scene-drawing processes (0: in the main process)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (same recipe, same scene stream)")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--save-every", type=int, default=250)
    return p.parse_args()


class SceneStream(torch.utils.data.IterableDataset):
    """Scene i of the run, with its prompts, in order i = 0, 1, 2, ...: (i, image, prompts), or
    (i, None, None) for a scene with no instance.

    Worker w of n draws scenes w, w + n, ...; the DataLoader takes one item from each worker in
    turn, so the stream (and the run) is the same for any number of workers. Empty scenes are
    passed through rather than skipped for the same reason."""

    def __init__(self, seed: int, targets: int) -> None:
        self.seed = seed
        self.targets = targets

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        index, step = (0, 1) if info is None else (info.id, info.num_workers)
        while True:
            scene_seed = self.seed * 1_000_000 + TRAIN_SEED_BASE + index
            image, masks = make_scene(scene_seed, TRAIN_SIZE)
            if masks:
                rng = np.random.default_rng([self.seed, index])
                prompts = sample_prompts(rng, masks, self.targets)
                yield index, torch.from_numpy(image).permute(2, 0, 1).float(), prompts
            else:
                yield index, None, None
            index += step


def sample_prompts(rng: np.random.Generator, masks: list, targets: int):
    """Prompts for up to ``targets`` instances of one image, one prompt type for all of them
    (the decoder takes one tensor of points per image, so the point count must match).

    Returns (kind, coords K N 2 or None, labels K N or None, boxes K 4 or None, gt K H W)."""
    chosen = rng.choice(len(masks), size=min(targets, len(masks)), replace=False)
    gt = np.stack([masks[i] for i in chosen])
    size = gt.shape[-1]
    if rng.random() < 0.3:
        boxes = []
        for m in gt:
            ys, xs = np.nonzero(m)
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
            side = max(box[2] - box[0], box[3] - box[1])
            # SAM jitters boxes by ~10% of the side (max 20 px at 1024 px).
            box += rng.normal(0, 0.05 * side, 4).astype(np.float32)
            boxes.append(np.clip(box, 0, size))
        return "box", None, None, np.stack(boxes), gt
    n_fg = int(rng.choice([1, 1, 2, 3]))
    with_bg = n_fg > 1 and rng.random() < 0.3
    coords, labels = [], []
    for m in gt:
        ys, xs = np.nonzero(m)
        pick = rng.integers(0, len(xs), n_fg)
        pts = [np.stack([xs[pick], ys[pick]], 1)]
        lab = [np.ones(n_fg)]
        if with_bg:
            bys, bxs = np.nonzero(~m)
            b = rng.integers(0, len(bxs))
            pts.append(np.array([[bxs[b], bys[b]]]))
            lab.append(np.zeros(1))
        coords.append(np.concatenate(pts).astype(np.float32))
        labels.append(np.concatenate(lab).astype(np.float32))
    kind = "point1" if n_fg == 1 and not with_bg else "points"
    return kind, np.stack(coords), np.stack(labels), None, gt


def mask_losses(logits: torch.Tensor, gt: torch.Tensor):
    """logits, gt: K C H W. Returns per-output BCE + dice (K C) and the real IoU (K C)."""
    bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none").mean((-2, -1))
    prob = logits.sigmoid()
    inter = (prob * gt).sum((-2, -1))
    dice = 1 - (2 * inter + 1) / (prob.sum((-2, -1)) + gt.sum((-2, -1)) + 1)
    with torch.no_grad():
        hard = logits > 0
        real_inter = (hard & (gt > 0.5)).sum((-2, -1)).float()
        union = (hard | (gt > 0.5)).sum((-2, -1)).float()
        iou = real_inter / union.clamp(min=1)
    return bce + dice, iou


def train_step(sam, images: torch.Tensor, prompts: list, spread_weight: float = 0.0):
    """One forward over a batch: returns (loss, mean IoU of the trained outputs)."""
    device = images.device
    embeddings = sam.image_encoder(torch.stack([sam.preprocess(im) for im in images]))
    size = (images.shape[-2], images.shape[-1])
    image_pe = sam.prompt_encoder.get_dense_pe(size)
    losses, ious = [], []
    for embedding, (kind, coords, labels, boxes, gt) in zip(embeddings, prompts):
        points = None
        if coords is not None:
            points = (torch.from_numpy(coords).to(device), torch.from_numpy(labels).to(device))
        box_t = torch.from_numpy(boxes).to(device) if boxes is not None else None
        sparse, dense = sam.prompt_encoder(points=points, boxes=box_t, masks=None, image_size=size)
        multimask = kind == "point1"
        low_res, iou_pred = sam.mask_decoder(
            image_embeddings=embedding.unsqueeze(0),
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )
        logits = F.interpolate(low_res, size, mode="bilinear", align_corners=False)
        target = torch.from_numpy(gt).to(device).float().unsqueeze(1).expand_as(logits)
        per_output, real_iou = mask_losses(logits, target)
        best = per_output.argmin(1, keepdim=True)  # min over the multimask outputs (C = 1: itself)
        mask_loss = per_output.gather(1, best).mean() + spread_weight * per_output.mean()
        iou_loss = F.mse_loss(iou_pred, real_iou)
        losses.append(mask_loss + iou_loss)
        ious.append(real_iou.gather(1, best).mean())
    return torch.stack(losses).mean(), torch.stack(ious).mean()


def save_atomic(sam, path: Path) -> None:
    """float16 state dict written to a temp file and renamed: a killed run never leaves a
    truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if v.is_floating_point() else v).cpu() for k, v in sam.state_dict().items()
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    # From scratch: the default checkpoint is what this script makes.
    sam = build_sam("tiny", "basam", checkpoint=None).to(device)
    sam.train()
    params = [p for p in sam.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)

    def lr_at(step: int) -> float:
        # Linear warm-up, then cosine to 5% over the planned steps.
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    output = Path(args.output)
    start = time.time()
    # Mean loss and IoU over the steps since the last log line.
    window_loss = window_iou = torch.zeros((), device=device)
    window = 0
    stream = iter(
        torch.utils.data.DataLoader(
            SceneStream(args.seed, args.targets),
            batch_size=None,
            num_workers=args.workers,
            collate_fn=lambda item: item,  # prompts are ragged numpy tuples: keep them as they are
            prefetch_factor=4 if args.workers else None,
        )
    )
    scene = 0
    step = 0
    for step in range(args.steps):
        if time.time() - start > args.minutes * 60:
            print(f"time budget of {args.minutes} min reached at step {step}/{args.steps}")
            break
        images, prompts = [], []
        while len(images) < args.batch:
            scene, image, scene_prompts = next(stream)
            scene += 1
            if image is not None:
                images.append(image)
                prompts.append(scene_prompts)
        for group in optim.param_groups:
            group["lr"] = lr_at(step)
        loss, iou = train_step(sam, torch.stack(images).to(device), prompts, args.spread_weight)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optim.step()
        # Summed on the device: .item() would synchronize a GPU every step.
        window_loss = window_loss + loss.detach()
        window_iou = window_iou + iou
        window += 1
        if step % args.log_every == 0 or step == args.steps - 1:
            mean_loss, mean_iou = (window_loss / window).item(), (window_iou / window).item()
            window_loss = window_iou = torch.zeros((), device=device)
            window = 0
            print(
                f"step {step:5d}  loss {mean_loss:.4f}  iou {mean_iou:.3f}  "
                f"lr {lr_at(step):.2e}  elapsed {time.time() - start:6.0f}s",
                flush=True,
            )
        if (step + 1) % args.save_every == 0:
            save_atomic(sam, output)
    else:
        step = args.steps
    sam.eval()
    save_atomic(sam, output)
    print(
        f"done: {step} steps, {scene} scenes, {time.time() - start:.0f}s, "
        f"{output} ({output.stat().st_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
