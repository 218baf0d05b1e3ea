// The generator in a Web Worker of its own (an onnxruntime-web instance beside the page's), so
// that it draws one frame while the page frames the next camera frame, finds its keypoints and
// pastes the previous result back (as fomm live's overlap). Messages, each answered with the
// same `id`:
//   {id, type: "init", vendor, threads, options, graph}  → {id, inputNames}
//   {id, type: "source", feeds: {name: {data, dims}}}     → {id}
//   {id, type: "generate", feeds: {name: {data, dims}}}   → {id, data, width, height} (RGBA bytes)
// and {id, error} when a step fails.
import { fromTensorData } from "./imageops.js";

let ort = null, session = null, source = {};

function tensors(feeds) {
  const out = {};
  for (const [name, { data, dims }] of Object.entries(feeds)) {
    out[name] = new ort.Tensor("float32", data, dims);
  }
  return out;
}

async function handle(msg) {
  if (msg.type === "init") {
    ort = await import(`${msg.vendor}ort.wasm.min.mjs`);
    ort.env.wasm.wasmPaths = msg.vendor;
    ort.env.wasm.numThreads = msg.threads;
    ort.env.logLevel = "error";
    session = await ort.InferenceSession.create(msg.graph, msg.options);
    return { inputNames: session.inputNames };
  }
  if (msg.type === "source") {
    source = tensors(msg.feeds);
    return {};
  }
  if (msg.type === "generate") {
    const out = await session.run({ ...source, ...tensors(msg.feeds) }, ["prediction"]);
    const p = out.prediction;
    const img = fromTensorData(p.data, p.dims[3], p.dims[2]);
    return { data: img.data, width: img.width, height: img.height, transfer: [img.data.buffer] };
  }
  throw new Error(`unknown message ${msg.type}`);
}

let queue = Promise.resolve();  // one message at a time, in order
self.onmessage = (event) => {
  const { id } = event.data;
  queue = queue.then(async () => {
    try {
      const { transfer = [], ...answer } = await handle(event.data);
      self.postMessage({ id, ...answer }, transfer);
    } catch (err) {
      self.postMessage({ id, error: String(err && err.message ? err.message : err) });
    }
  });
};
