"""Train the embedded default model, ``build_sam("tiny", "basam")``, from scratch on synthetic scenes.

    python training/train_tiny.py --output basam_deploy/weights/tiny_basam.pth

(the shipped checkpoint, with the defaults: 9000 steps of 8 images, about 40 minutes on a 2-core
CPU: a pool of 12,000 scenes drawn up front by two processes, then one process training on two
threads; ``--device cuda`` runs the same recipe on a GPU, equal up to floating-point differences.)

Prompts as in SAM's training: per image up to 8 target instances, each prompted with 1-3 points
inside it (sometimes plus a background point) or with a jittered box. A single point is ambiguous,
so it gets the three multimask outputs and the best one is trained (SAM's min-over-outputs loss),
plus the mean loss of all three at weight 0.25 (``--spread-weight``; a single-mask prompt's one
output counts again at that weight): synthetic scenes have no part / whole ambiguity, and without
it the outputs the IoU head does not pick stay poor, and its pick often is one of them
(docs/default_model.md, the sweep). Every other prompt trains the single-mask output.
Loss: BCE + dice on the low-res logits upsampled to the image (as SAM upsamples them), plus MSE of
the IoU head against the real IoU of each output. Optimizer: Muon for the linear layers' weight
matrices, AdamW for the rest, one warm-up + cosine schedule (``make_optimizers``).

Reproducible for a given ``--seed`` and ``--steps``: the learning-rate schedule is defined by
``--steps``, the pool and what the run's j-th image is (scene, flip, prompts) do not depend on
``--workers``, and ``--minutes`` is only a safety stop (a run that hits it says so and is not the
same as a run that finished its steps).
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
    p.add_argument("--steps", type=int, default=9000, help="optimizer steps (defines the schedule)")
    p.add_argument("--batch", type=int, default=8, help="images per step")
    p.add_argument("--targets", type=int, default=8, help="prompted instances per image")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--spread-weight",
        type=float,
        default=0.25,
        help="weight of the mean loss over all multimask outputs, added to the best output's",
    )
    p.add_argument(
        "--iou-weight", type=float, default=1.0, help="weight of the IoU head's MSE loss"
    )
    p.add_argument(
        "--optimizer",
        choices=("muon", "adamw"),
        default="muon",
        help="muon: Muon for the linear layers' weight matrices, AdamW for the rest; adamw: AdamW "
        "for everything (the recipe before 2026-11-30)",
    )
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process")
    p.add_argument(
        "--workers", type=int, default=2, help="processes drawing the scene pool (0: this one)"
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda (same recipe, same scenes)")
    p.add_argument("--pool", type=int, default=12000, help="scenes drawn once and reused")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--save-every", type=int, default=250)
    args = p.parse_args()
    if args.pool < 1:
        p.error(f"--pool {args.pool}: the scene pool needs at least 1 scene")
    return args


class ScenePool:
    """A fixed set of scenes, drawn once, then served with fresh prompts and one of the 8 flips /
    quarter turns of the square per use: ``item(j)`` is (image 3 H W, prompts) for the j-th image
    of the run, a function of (seed, j) only.

    Drawn on the fly (the recipe before 2026-11-30), the scenes of a step took a core for about a
    third of the step, beside the two training threads; drawn up front (about 75 s for 12,000
    scenes on two processes) they leave the run's CPU to training: 0.24 instead of 0.33 s a step.
    Reuse does not limit this model: it does not even memorize a pool of 64 scenes, each seen ~190
    times in 1500 steps (training IoU 0.73; docs/default_model.md). Images and instance maps are
    kept as uint8 / int8 (about 260 KB a scene at 256 px)."""

    def __init__(self, seed: int, size: int, workers: int) -> None:
        self.seed = seed
        seeds = [seed * 1_000_000 + TRAIN_SEED_BASE + i for i in range(size)]
        if workers > 0:
            with torch.multiprocessing.get_context("fork").Pool(workers) as pool:
                drawn = pool.map(_draw_owned, seeds, chunksize=64)
        else:
            drawn = [_draw_owned(s) for s in seeds]
        drawn = [d for d in drawn if d is not None]  # scenes with no instance
        if not drawn:
            raise SystemExit(f"none of the {size} pool scenes has an instance: use a larger --pool")
        self.images = np.stack([image for image, _ in drawn])  # N H W 3
        self.owners = np.stack([owner for _, owner in drawn])  # N H W: instance index or -1

    def __len__(self) -> int:
        return len(self.images)

    def item(self, j: int, targets: int):
        epoch, position = divmod(j, len(self))
        order = np.random.default_rng([self.seed, 1, epoch]).permutation(len(self))
        rng = np.random.default_rng([self.seed, 2, j])
        index = order[position]
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        image, owner = self.images[index], self.owners[index]
        image, owner = np.rot90(image, turns), np.rot90(owner, turns)
        if flip:
            image, owner = image[:, ::-1], owner[:, ::-1]
        masks = [owner == i for i in range(int(owner.max()) + 1)]
        prompts = sample_prompts(rng, masks, targets)
        # H W 3 -> 3 H W
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float(), prompts


def _draw_owned(scene_seed: int):
    """(image H W 3 uint8, owner H W int8) of one scene, or None when it has no instance."""
    image, masks = make_scene(scene_seed, TRAIN_SIZE)
    if not masks:
        return None
    owner = np.full(image.shape[:2], -1, np.int8)
    for index, mask in enumerate(masks):
        owner[mask] = index
    return image, owner


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


def decode(sam, embeddings: torch.Tensor, image_pe: torch.Tensor, prompts: list):
    """The mask decoder over every prompt of every image of a step, in as few calls as the
    prompts' token counts allow (prompts with the same number of sparse tokens share a call).

    segment-anything's decoder takes one image per call (it repeats that image's embedding once
    per prompt, then adds the dense prompt embedding). Giving it a zero embedding and each
    prompt's own image embedding inside the dense term computes exactly the same sum for prompts
    of different images, so one call serves a whole group: a few large operations instead of a
    loop over images (on this project's 2-core CPU a step is ~10 % faster; on a GPU, where the
    per-image loop left the device idle, more: not measured).

    embeddings: B C h w; prompts: per image (kind, coords K N 2, labels K N, boxes K 4, gt K H W).
    Returns per prompt, in image order: low-res logits P 4 4h 4w, IoU predictions P 4, the
    image index P and whether the prompt is a lone point (multimask) P.
    """
    device = embeddings.device
    size = (embeddings.shape[-2] * sam.patch_size, embeddings.shape[-1] * sam.patch_size)
    groups: dict = {}
    for image_index, (kind, coords, labels, boxes, _) in enumerate(prompts):
        tokens = 2 if coords is None else coords.shape[1] + 1  # box corners; points + padding
        groups.setdefault((kind == "box", tokens), []).append((image_index, coords, labels, boxes))
    logits, iou_pred, order = [], [], []
    for (is_box, _), members in groups.items():
        image_index = torch.cat(
            [torch.full((len(c if c is not None else b),), i) for i, c, _, b in members]
        )
        points = box_t = None
        if is_box:
            box_t = torch.from_numpy(np.concatenate([b for _, _, _, b in members])).to(device)
        else:
            coords = torch.from_numpy(np.concatenate([c for _, c, _, _ in members])).to(device)
            labels = torch.from_numpy(np.concatenate([lab for _, _, lab, _ in members]))
            points = (coords, labels.to(device))
        sparse, dense = sam.prompt_encoder(points=points, boxes=box_t, masks=None, image_size=size)
        # P C h w: each prompt's image embedding plus its (no-mask) dense embedding
        dense = dense + embeddings.index_select(0, image_index.to(device))
        masks, iou = sam.mask_decoder.predict_masks(
            image_embeddings=embeddings.new_zeros((1, *embeddings.shape[1:])),
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        logits.append(masks)
        iou_pred.append(iou)
        order.append(image_index)
    image_index = torch.cat(order)
    # Back to image order (stable: each image's prompts keep their order).
    perm = torch.argsort(image_index, stable=True).to(device)
    multimask = torch.tensor([prompts[i][0] == "point1" for i in image_index[perm].tolist()])
    return (
        torch.cat(logits).index_select(0, perm),
        torch.cat(iou_pred).index_select(0, perm),
        image_index[perm],
        multimask.to(device),
    )


def train_step(
    sam, images: torch.Tensor, prompts: list, spread_weight: float = 0.0, iou_weight: float = 1.0
):
    """One forward over a batch: returns (loss, mean IoU of the trained outputs).

    images: B 3 H W (0-255); prompts: per image, as ``sample_prompts`` returns them.
    A lone point trains the best of the three multimask outputs (plus ``spread_weight`` times
    their mean); any other prompt the single-mask output (which the spread term scales by
    1 + spread_weight). The IoU head regresses the real IoU of each trained output (its MSE
    weighted by ``iou_weight``). Each image weighs the same, whatever its number of prompts.
    """
    device = images.device
    embeddings = sam.image_encoder(sam.preprocess(images))
    size = (images.shape[-2], images.shape[-1])
    image_pe = sam.prompt_encoder.get_dense_pe(size)
    low_res, iou_pred, image_index, multimask = decode(sam, embeddings, image_pe, prompts)
    gt = torch.from_numpy(np.concatenate([p[4] for p in prompts])).to(device)  # P H W
    # Per prompt: the weight of its image's mean, so that every image counts the same.
    counts = torch.bincount(image_index, minlength=len(prompts)).to(device)
    weight = 1.0 / (counts[image_index.to(device)] * len(prompts))
    loss = torch.zeros((), device=device)
    iou_sum = torch.zeros((), device=device)
    for chosen, outputs in ((multimask, slice(1, None)), (~multimask, slice(0, 1))):
        if not chosen.any():
            continue
        logits = F.interpolate(low_res[chosen, outputs], size, mode="bilinear", align_corners=False)
        target = gt[chosen].float().unsqueeze(1).expand_as(logits)
        per_output, real_iou = mask_losses(logits, target)  # K C each
        best = per_output.argmin(1, keepdim=True)  # min over the multimask outputs (C = 1: itself)
        mask_loss = per_output.gather(1, best).squeeze(1) + spread_weight * per_output.mean(1)
        iou_loss = (iou_pred[chosen, outputs] - real_iou).pow(2).mean(1)
        w = weight[chosen]
        loss = loss + (w * (mask_loss + iou_weight * iou_loss)).sum()
        iou_sum = iou_sum + (w * real_iou.gather(1, best).squeeze(1)).sum()
    return loss, iou_sum


def make_optimizers(sam, args) -> list:
    """AdamW for everything, or Muon for the weight matrices of linear layers (the transformer's
    projections and MLPs) and AdamW for the rest (convolutions, embeddings, tables, norms, biases),
    Muon's learning rate matched to AdamW's update size so that both follow one schedule."""
    if args.optimizer == "adamw":
        params = [p for p in sam.parameters() if p.requires_grad]
        return [torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)]
    matrices = {
        id(m.weight): m.weight
        for m in sam.modules()
        if isinstance(m, torch.nn.Linear) and m.weight.requires_grad
    }
    rest = [p for p in sam.parameters() if p.requires_grad and id(p) not in matrices]
    return [
        torch.optim.Muon(
            list(matrices.values()),
            lr=args.lr,
            weight_decay=args.weight_decay,
            adjust_lr_fn="match_rms_adamw",
        ),
        torch.optim.AdamW(rest, lr=args.lr, weight_decay=args.weight_decay),
    ]


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
    start = time.time()
    # Drawn before the model exists: the drawing processes are forked before CUDA is initialized.
    pool = ScenePool(args.seed, args.pool, args.workers)
    print(f"pool: {len(pool)} scenes drawn in {time.time() - start:.0f}s", flush=True)
    # From scratch: the default checkpoint is what this script makes.
    sam = build_sam("tiny", "basam", checkpoint=None).to(device)
    sam.train()
    params = [p for p in sam.parameters() if p.requires_grad]
    optims = make_optimizers(sam, args)

    def lr_at(step: int) -> float:
        # Linear warm-up, then cosine to 5% over the planned steps.
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    output = Path(args.output)
    # Mean loss and IoU over the steps since the last log line.
    window_loss = window_iou = torch.zeros((), device=device)
    window = 0
    scene = 0
    step = 0
    for step in range(args.steps):
        if time.time() - start > args.minutes * 60:
            print(f"time budget of {args.minutes} min reached at step {step}/{args.steps}")
            break
        items = [pool.item(scene + b, args.targets) for b in range(args.batch)]
        scene += args.batch
        images = torch.stack([image for image, _ in items])
        prompts = [scene_prompts for _, scene_prompts in items]
        for optim in optims:
            for group in optim.param_groups:
                group["lr"] = lr_at(step)
        loss, iou = train_step(sam, images.to(device), prompts, args.spread_weight, args.iou_weight)
        for optim in optims:
            optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        for optim in optims:
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
        f"done: {step} steps, {scene} images, {time.time() - start:.0f}s, "
        f"{output} ({output.stat().st_size / 1e6:.1f} MB)"
    )


if __name__ == "__main__":
    main()
