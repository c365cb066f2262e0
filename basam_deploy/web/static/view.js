// Drawing: the image on one canvas, the masks and prompts on a canvas above it, both at the image's
// own pixel size (CSS scales them together to fit the window).

const MASK_RGBA = [30, 144, 255, 140]; // segment-anything's notebooks' blue, half transparent
const GOLDEN_RATIO_CONJUGATE = 0.618033988749895;

// The index-th "everything" mask's colour: hues spread by the golden ratio, as basam-amg's overlay.
function colour(index) {
  const hue = (index * GOLDEN_RATIO_CONJUGATE) % 1;
  const f = (n) => {
    const k = (n + hue * 6) % 6;
    return Math.round(255 * 0.95 * (1 - 0.85 * Math.max(0, Math.min(k, 4 - k, 1))));
  };
  return [f(5), f(3), f(1), 150];
}

export class View {
  constructor(imageCanvas, overlayCanvas) {
    this.image = imageCanvas;
    this.overlay = overlayCanvas;
  }

  showImage(bitmap) {
    for (const canvas of [this.image, this.overlay]) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    this.image.getContext("2d").drawImage(bitmap, 0, 0);
    this.overlay.getContext("2d").clearRect(0, 0, bitmap.width, bitmap.height);
    this.fit();
  }

  // Display size: the image scaled (up or down, aspect kept) to the space the window leaves.
  fit() {
    const { width, height } = this.image;
    if (!width) return;
    const room = this.image.parentElement.parentElement.getBoundingClientRect();
    const scale = Math.min((room.width - 8) / width, (window.innerHeight - room.top - 48) / height);
    this.image.style.width = `${Math.max(Math.floor(width * scale), 1)}px`;
  }

  // A pointer event -> x, y in original-image pixels (continuous, inside [0, W] x [0, H]).
  imagePoint(event) {
    const rect = this.overlay.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * this.overlay.width) / rect.width;
    const y = ((event.clientY - rect.top) * this.overlay.height) / rect.height;
    return {
      x: Math.min(Math.max(x, 0), this.overlay.width),
      y: Math.min(Math.max(y, 0), this.overlay.height),
    };
  }

  // masks: [{bits: Uint8Array H x W, rgba}] drawn in order; then prompts: points [{x, y, label}],
  // box {x0, y0, x1, y1} or null, dragging: the box being drawn or null.
  draw(masks, points, box, dragging) {
    const { width, height } = this.overlay;
    const context = this.overlay.getContext("2d");
    const pixels = context.createImageData(width, height);
    const out = pixels.data;
    for (const { bits, rgba } of masks) {
      for (let i = 0; i < bits.length; i++) {
        if (bits[i]) out.set(rgba, 4 * i);
      }
    }
    context.putImageData(pixels, 0, 0);
    const scale = width / Math.max(this.overlay.getBoundingClientRect().width, 1);
    for (const p of points) {
      context.beginPath();
      context.arc(p.x, p.y, 6 * scale, 0, 2 * Math.PI);
      context.fillStyle = p.label === 1 ? "#2ecc40" : "#ff4136";
      context.fill();
      context.lineWidth = 1.5 * scale;
      context.strokeStyle = "#ffffff";
      context.stroke();
    }
    for (const b of [box, dragging]) {
      if (!b) continue;
      context.lineWidth = 2 * scale;
      context.strokeStyle = b === dragging ? "#ffdc00" : "#2ecc40";
      context.strokeRect(b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0);
    }
  }
}

export function maskLayer(bits) {
  return { bits, rgba: MASK_RGBA };
}

// The "everything" masks, largest first so that smaller ones stay visible on top.
export function everythingLayers(masks) {
  return masks
    .map((m, index) => ({ bits: m.bits, area: m.area, rgba: colour(index) }))
    .sort((a, b) => b.area - a.area);
}

// bits: Uint8Array H x W -> a PNG Blob, white mask on black.
export async function maskPng(bits, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let i = 0; i < bits.length; i++) {
    const v = bits[i] ? 255 : 0;
    pixels.data.set([v, v, v, 255], 4 * i);
  }
  context.putImageData(pixels, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

export function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}
