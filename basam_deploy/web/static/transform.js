// The Predictor's pre- and post-processing around decoder.onnx, restated for the browser (it cannot
// run Python). Each function names the Python it mirrors; tests/test_web_page.py checks that a click
// here gives Predictor.predict's mask (IoU >= 0.98 on the same export and image).
//
// transform: the server's ImageTransform numbers (basam_deploy/web/model.py): sizes are [H, W]:
//   original (the image), resized (aspect kept), padded (the model input, multiples of 16);
//   coords, the prompt convention (basam_deploy/pipeline/transform.py).

// ImageTransform.to_model_coords with coords="sam" (SamPredictor's, the Predictor's default and what
// basam-web's Predictor uses): x, y original-image pixels -> pixels of the padded model input.
export function toModelCoords(transform, x, y) {
  if (transform.coords !== "sam") {
    throw new Error(`the server's coordinate convention ${transform.coords} is not one this page knows`);
  }
  const sx = transform.resized[1] / transform.original[1];
  const sy = transform.resized[0] / transform.original[0];
  return [x * sx, y * sy]; // ResizeLongestSide.apply_coords
}

// Predictor.predict's decoder inputs for one prompt: points [{x, y, label}] (label 1 foreground,
// 0 background) and an optional box {x0, y0, x1, y1}, all in original-image pixels.
// Box corners are two points labelled 2 and 3; without a box, segment-anything's padding point
// (0, 0) labelled -1 is appended. No mask input (has_mask_input 0), as SAM's demo.
export function decoderPrompt(transform, points, box) {
  const coords = [];
  const labels = [];
  for (const p of points) {
    coords.push(...toModelCoords(transform, p.x, p.y));
    labels.push(p.label);
  }
  if (box) {
    coords.push(...toModelCoords(transform, box.x0, box.y0), ...toModelCoords(transform, box.x1, box.y1));
    labels.push(2, 3);
  } else {
    coords.push(0, 0);
    labels.push(-1);
  }
  return { coords: Float32Array.from(coords), labels: Float32Array.from(labels), count: labels.length };
}

// Which of the decoder's 4 masks to show: segment-anything's ONNX demo rule (SamOnnxModel
// select_masks): a prompt of one point or one box alone is ambiguous, so the best-scored of the
// three multimask outputs (1-3); anything more, the single-mask output (0). In Predictor terms:
// predict(multimask_output=true) and argmax of iou_predictions, or multimask_output=false.
export function chooseMask(points, box, iou) {
  const alone = points.length + (box ? 1 : 0) === 1;
  if (!alone) return 0;
  let best = 1;
  for (let k = 2; k < 4; k++) if (iou[k] > iou[best]) best = k;
  return best;
}

// torch.nn.functional.interpolate(mode="bilinear", align_corners=False) (no antialias) of one
// in_h x in_w plane to out_h x out_w, keeping only rows < keep_h and columns < keep_w of the output
// (the crop that follows in masks_to_image, done here so that the padding is never computed).
// Source index: max((dst + 0.5) * in / out - 0.5, 0); neighbours clamped to the last row/column.
function bilinear(src, inH, inW, outH, outW, keepH, keepW) {
  const axis = (inSize, outSize, keep) => {
    const lo = new Int32Array(keep);
    const hi = new Int32Array(keep);
    const w = new Float32Array(keep);
    const scale = inSize / outSize;
    for (let i = 0; i < keep; i++) {
      const real = Math.max((i + 0.5) * scale - 0.5, 0);
      const i0 = Math.min(Math.floor(real), inSize - 1);
      lo[i] = i0;
      hi[i] = Math.min(i0 + 1, inSize - 1);
      w[i] = Math.min(Math.max(real - i0, 0), 1);
    }
    return { lo, hi, w };
  };
  const rows = axis(inH, outH, keepH);
  const cols = axis(inW, outW, keepW);
  const out = new Float32Array(keepH * keepW);
  for (let y = 0; y < keepH; y++) {
    const top = rows.lo[y] * inW;
    const bottom = rows.hi[y] * inW;
    const wy = rows.w[y];
    for (let x = 0; x < keepW; x++) {
      const l = cols.lo[x];
      const r = cols.hi[x];
      const wx = cols.w[x];
      const upper = src[top + l] * (1 - wx) + src[top + r] * wx;
      const lower = src[bottom + l] * (1 - wx) + src[bottom + r] * wx;
      out[y * keepW + x] = upper * (1 - wy) + lower * wy;
    }
  }
  return out;
}

// ImageTransform.masks_to_image for one mask: lowRes, Float32Array Hp/4 x Wp/4 logits ->
// Float32Array H x W logits at the original size. Upscale to the padded input, crop to the resized
// image, resize to the original.
export function maskLogits(lowRes, transform) {
  const [hp, wp] = transform.padded;
  const [h, w] = transform.resized;
  const [H, W] = transform.original;
  const logits = bilinear(lowRes, hp / 4, wp / 4, hp, wp, h, w);
  return h === H && w === W ? logits : bilinear(logits, h, w, H, W, H, W);
}

// maskLogits, then the Predictor's threshold (logits > 0): Uint8Array H x W of 0/1.
export function maskToImage(lowRes, transform) {
  const logits = maskLogits(lowRes, transform);
  const bits = new Uint8Array(logits.length);
  for (let i = 0; i < bits.length; i++) bits[i] = logits[i] > 0 ? 1 : 0;
  return bits;
}

// An uncompressed COCO RLE ({size: [H, W], counts}: column-major runs, background first) ->
// Uint8Array H x W (row-major) of 0/1: how the server sends the "everything" masks.
export function decodeRle(rle) {
  const [H, W] = rle.size;
  const bits = new Uint8Array(H * W);
  let index = 0;
  let value = 0;
  for (const run of rle.counts) {
    if (value) {
      for (let k = index; k < index + run; k++) {
        const x = Math.floor(k / H); // column-major: k = x * H + y
        bits[(k - x * H) * W + x] = 1;
      }
    }
    index += run;
    value ^= 1;
  }
  return bits;
}
