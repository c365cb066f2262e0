// decoder.onnx in the browser: onnxruntime-web's WebAssembly backend, served by basam-web from
// node_modules (nothing is fetched from the internet). Inputs and outputs: export/graphs.py
// DecoderGraph (image_embeddings 1 C h w, point_coords P N 2, point_labels P N,
// mask_input P 1 4h 4w, has_mask_input P -> low_res_masks P 4 4h 4w, iou_predictions P 4).
import * as ort from "/ort/ort.wasm.min.mjs";

export class Decoder {
  static async load(url) {
    ort.env.wasm.wasmPaths = "/ort/";
    // Several threads need a cross-origin-isolated page (SharedArrayBuffer); one is enough for a
    // decoder of a few million weights, and gives the same numbers on every machine.
    ort.env.wasm.numThreads = 1;
    const session = await ort.InferenceSession.create(url, { executionProviders: ["wasm"] });
    return new Decoder(session);
  }

  constructor(session) {
    this.session = session;
    this.embedding = null;
    this.running = Promise.resolve();
  }

  // data: Float32Array of the embedding, shape [1, C, h, w].
  setEmbedding(data, shape) {
    this.embedding = new ort.Tensor("float32", data, shape);
  }

  // prompt: transform.js decoderPrompt(); grid: [Hp/4, Wp/4]. -> {lowRes: 4 Float32Arrays of
  // Hp/4 x Wp/4 logits, iou: Float32Array(4), ms}. Runs one at a time (an onnxruntime session
  // takes one run at once).
  run(prompt, grid) {
    const next = this.running.then(() => this._run(prompt, grid));
    this.running = next.catch(() => undefined);
    return next;
  }

  async _run(prompt, grid) {
    const [gh, gw] = grid;
    const feeds = {
      image_embeddings: this.embedding,
      point_coords: new ort.Tensor("float32", prompt.coords, [1, prompt.count, 2]),
      point_labels: new ort.Tensor("float32", prompt.labels, [1, prompt.count]),
      mask_input: new ort.Tensor("float32", new Float32Array(gh * gw), [1, 1, gh, gw]),
      has_mask_input: new ort.Tensor("float32", new Float32Array(1), [1]),
    };
    const start = performance.now();
    const out = await this.session.run(feeds);
    const ms = performance.now() - start;
    const masks = out.low_res_masks.data;
    const plane = gh * gw;
    const lowRes = [0, 1, 2, 3].map((k) => masks.subarray(k * plane, (k + 1) * plane));
    return { lowRes, iou: out.iou_predictions.data, ms };
  }
}
