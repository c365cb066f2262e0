// The page: open an image (picker, drop, sample) -> the server encodes it once (api.embed) -> each
// click, box or undo runs decoder.onnx here (decoder.js) and draws the mask (transform.js, view.js).
// "Everything" asks the server's MaskGenerator. Errors become one line in #message; the page keeps
// its last good state. window.basam exposes the state to tests (tests/test_web_page.py).
import * as api from "./api.js";
import { chooseMask, decodeRle, decoderPrompt, maskToImage } from "./transform.js";
import { View, download, everythingLayers, maskLayer, maskPng } from "./view.js";

const $ = (id) => document.getElementById(id);
const DRAG_PIXELS = 5; // a press that moves less than this (screen pixels) is a click, not a box

const state = {
  info: null,
  decoder: null,
  image: null, // {name, file, bitmap, transform, encodeMs}
  points: [], // [{x, y, label}] original-image pixels
  box: null, // {x0, y0, x1, y1}
  history: [], // "point" | {box: previous box}: what undo takes back
  mask: null, // Uint8Array H x W of the current prompt
  everything: null, // {masks: [{bits, area}], coco}
  decodes: 0, // finished decoder runs (tests wait on it)
  busy: 0,
};
const view = new View($("image"), $("overlay"));

function say(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = !text;
}

async function busy(label, work) {
  state.busy += 1;
  $("status").textContent = label;
  try {
    return await work();
  } catch (error) {
    say(error.message || String(error));
    return undefined;
  } finally {
    state.busy -= 1;
    if (!state.busy) $("status").textContent = "";
    refreshButtons();
  }
}

function refreshButtons() {
  const prompts = state.points.length > 0 || state.box !== null;
  $("undo").disabled = state.history.length === 0;
  $("clear").disabled = !prompts && !state.everything;
  $("save-mask").disabled = !state.mask;
  $("save-coco").disabled = !state.everything;
  $("everything").disabled = !state.image || !state.info;
  $("everything").title = state.info
    ? `segment everything on the server (${state.info.everything.options.points_per_side} points per side)`
    : "";
}

function latency(decodeMs) {
  const parts = [];
  if (state.image) parts.push(`encode ${state.image.encodeMs.toFixed(0)} ms (server, once per image)`);
  if (decodeMs !== undefined) parts.push(`decode ${decodeMs.toFixed(1)} ms (browser, WASM)`);
  $("latency").textContent = parts.join(" · ");
}

function redraw(dragging = null) {
  if (!state.image) return;
  const layers = state.everything && !state.mask
    ? everythingLayers(state.everything.masks)
    : state.mask ? [maskLayer(state.mask)] : [];
  view.draw(layers, state.points, state.box, dragging);
}

// -- image -------------------------------------------------------------------------------------

async function openImage(file, name) {
  say("");
  await busy(`encoding ${name}…`, async () => {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      throw new Error(`${name} is not an image this browser can open: choose a PNG, JPEG or WebP file`);
    }
    const pixels = bitmap.width * bitmap.height;
    if (pixels > state.info.max_image_pixels) {
      throw new Error(
        `the image is ${bitmap.width} x ${bitmap.height} = ${pixels} pixels, over this server's limit ` +
          `of ${state.info.max_image_pixels} pixels: open a smaller image, or ` +
          state.info.raise_pixel_limit,
      );
    }
    const embedding = await api.embed(file, name);
    const [height, width] = embedding.transform.original;
    if (height !== bitmap.height || width !== bitmap.width) {
      throw new Error(
        `the server read ${name} as ${width} x ${height} but this browser as ${bitmap.width} x ` +
          `${bitmap.height}: masks would not line up; convert the image to PNG and retry`,
      );
    }
    state.decoder.setEmbedding(embedding.data, embedding.shape);
    state.image = { name, file, bitmap, transform: embedding.transform, encodeMs: embedding.encode_ms };
    Object.assign(state, { points: [], box: null, history: [], mask: null, everything: null });
    $("hint").hidden = true;
    $("canvases").hidden = false;
    view.showImage(bitmap);
    latency();
  });
}

// -- prompts -----------------------------------------------------------------------------------

async function decode() {
  if (!state.points.length && !state.box) {
    state.mask = null;
    redraw();
    refreshButtons();
    return;
  }
  const { transform } = state.image;
  const points = state.points.slice();
  const box = state.box;
  await busy("decoding…", async () => {
    const prompt = decoderPrompt(transform, points, box);
    const grid = [transform.padded[0] / 4, transform.padded[1] / 4];
    const result = await state.decoder.run(prompt, grid);
    if (points.length !== state.points.length || box !== state.box) return; // superseded
    const index = chooseMask(points, box, result.iou);
    state.mask = maskToImage(result.lowRes[index], transform);
    state.decodes += 1;
    latency(result.ms);
    redraw();
  });
}

function addPoint(p, label) {
  state.points.push({ x: p.x, y: p.y, label });
  state.history.push("point");
  decode();
}

function setBox(box) {
  state.history.push({ box: state.box });
  state.box = box;
  decode();
}

function undo() {
  const last = state.history.pop();
  if (last === undefined) return;
  if (last === "point") state.points.pop();
  else state.box = last.box;
  decode();
}

function clear() {
  Object.assign(state, { points: [], box: null, history: [], mask: null, everything: null });
  say("");
  redraw();
  refreshButtons();
}

function listenToPointer() {
  const overlay = $("overlay");
  let press = null;
  overlay.addEventListener("contextmenu", (event) => event.preventDefault());
  overlay.addEventListener("pointerdown", (event) => {
    if (!state.image || (event.button !== 0 && event.button !== 2)) return;
    overlay.setPointerCapture(event.pointerId);
    press = { start: view.imagePoint(event), x: event.clientX, y: event.clientY, event };
  });
  overlay.addEventListener("pointermove", (event) => {
    if (!press || Math.hypot(event.clientX - press.x, event.clientY - press.y) < DRAG_PIXELS) return;
    redraw(corners(press.start, view.imagePoint(event)));
  });
  overlay.addEventListener("pointerup", (event) => {
    if (!press) return;
    const { start, x, y } = press;
    press = null;
    if (Math.hypot(event.clientX - x, event.clientY - y) < DRAG_PIXELS) {
      const background = event.button === 2 || event.shiftKey;
      addPoint(start, background ? 0 : 1);
    } else {
      setBox(corners(start, view.imagePoint(event)));
    }
  });
}

function corners(a, b) {
  return { x0: Math.min(a.x, b.x), y0: Math.min(a.y, b.y), x1: Math.max(a.x, b.x), y1: Math.max(a.y, b.y) };
}

// -- everything and downloads ------------------------------------------------------------------

async function everything() {
  const { file, name } = state.image;
  say("");
  await busy("segmenting everything on the server…", async () => {
    const result = await api.everything(file, name);
    if (state.image.file !== file) return; // another image was opened meanwhile
    const masks = result.masks.map((m) => ({ bits: decodeRle(m), area: m.area }));
    Object.assign(state, { points: [], box: null, history: [], mask: null });
    state.everything = { masks, coco: result.coco };
    say(`${masks.length} masks in ${(result.generate_ms / 1000).toFixed(1)} s (server)`, "info");
    redraw();
  });
}

function baseName() {
  return state.image.name.replace(/\.[^.]*$/, "");
}

async function saveMask() {
  const [height, width] = state.image.transform.original;
  download(await maskPng(state.mask, width, height), `${baseName()}_mask.png`);
}

function saveCoco() {
  const blob = new Blob([JSON.stringify(state.everything.coco)], { type: "application/json" });
  download(blob, `${baseName()}_masks.json`);
}

// -- start -------------------------------------------------------------------------------------

function listenToFiles() {
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = ""; // the same file again still fires "change"
    if (file) openImage(file, file.name);
  });
  $("samples").addEventListener("change", async (event) => {
    const name = event.target.value;
    event.target.value = "";
    if (!name) return;
    const blob = await busy(`loading ${name}…`, () => api.sample(name));
    if (blob) openImage(blob, name);
  });
  const stage = $("stage");
  stage.addEventListener("dragover", (event) => {
    event.preventDefault();
    stage.classList.add("drop");
  });
  stage.addEventListener("dragleave", () => stage.classList.remove("drop"));
  stage.addEventListener("drop", (event) => {
    event.preventDefault();
    stage.classList.remove("drop");
    const file = event.dataTransfer.files[0];
    if (file) openImage(file, file.name);
  });
}

function exposeForTests() {
  const base64 = (bits) => {
    let text = "";
    for (let i = 0; i < bits.length; i += 0x8000) {
      text += String.fromCharCode.apply(null, bits.subarray(i, i + 0x8000));
    }
    return btoa(text);
  };
  window.basam = {
    ready: false,
    state: () => ({
      busy: state.busy,
      decodes: state.decodes,
      image: state.image && { name: state.image.name, transform: state.image.transform },
      points: state.points,
      box: state.box,
      message: $("message").hidden ? "" : $("message").textContent,
    }),
    // The current mask: H x W bytes 0/1, row-major, base64.
    mask: () => (state.mask ? base64(state.mask) : null),
    everything: () =>
      state.everything && state.everything.masks.map((m) => ({ area: m.area, bits: base64(m.bits) })),
  };
}

async function start() {
  exposeForTests();
  if (typeof WebAssembly !== "object") {
    say(
      "this browser has no WebAssembly, which the decoder needs: use a current Chrome, Edge, " +
        "Firefox or Safari with WebAssembly enabled",
    );
    $("open").hidden = true;
    return;
  }
  await busy("loading the model…", async () => {
    state.info = await api.info();
    const { Decoder } = await import("./decoder.js");
    state.decoder = await Decoder.load("/api/decoder.onnx");
    const i = state.info;
    $("model").textContent =
      `${i.model} (${i.preset}, ${i.precision}) · encoder: ${i.backend} · decoder: this browser ` +
      `(onnxruntime-web, WASM) · sizes ${i.size_range[0]}-${i.size_range[1]}` +
      (i.resolution ? ` · long side ${i.resolution}` : " · native size");
    for (const name of i.samples) $("samples").add(new Option(name, name));
    $("samples").hidden = i.samples.length === 0;
    listenToFiles();
    listenToPointer();
    window.addEventListener("resize", () => view.fit());
    $("undo").addEventListener("click", undo);
    $("clear").addEventListener("click", clear);
    $("everything").addEventListener("click", everything);
    $("save-mask").addEventListener("click", saveMask);
    $("save-coco").addEventListener("click", saveCoco);
    window.basam.ready = true;
  });
}

start();
