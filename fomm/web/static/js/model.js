// The networks on onnxruntime-web: the runtime chosen (WebGPU where the browser has an adapter,
// else WASM with SIMD and threads; one thread without cross-origin isolation), fomm's three graphs
// (fomm export: source encoder, keypoint detector, generator) and the motion arithmetic of
// fomm.models.motion.normalize_kp.
import { fromTensorData, toTensorData } from "./imageops.js";

/** Load onnxruntime-web: {ort, backend: "webgpu" | "wasm", threads, vendor (its folder's URL)}.
 * `wanted`: "auto", "wasm" or "webgpu"; `base`: the site's root URL; `threads`: WASM threads
 * (0: half the device's cores, at most 4; always 1 without cross-origin isolation). */
export async function loadRuntime(base, wanted = "auto", manifest = {}, threads = 0) {
  let backend = "wasm";
  if (wanted !== "wasm" && manifest.webgpu && navigator.gpu) {
    try {
      // a fallback adapter (a GPU emulated on the CPU, as Chromium's SwiftShader) is slower
      // than WASM: used only when asked for (?backend=webgpu)
      const adapter = await navigator.gpu.requestAdapter();
      const fallback = adapter && (adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter);
      if (adapter && (!fallback || wanted === "webgpu")) backend = "webgpu";
    } catch (err) { /* no adapter: WASM */ }
  }
  const vendor = new URL("vendor/onnxruntime-web/", base).href;
  const ort = await import(vendor + (backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs"));
  ort.env.wasm.wasmPaths = vendor;
  // half the cores, at most 4: the page's own work (camera, framing, paste) and the browser need
  // the rest, and WASM threads cost CPU to keep in step (on a 2-core machine one thread took
  // 100 CPU ms a frame at 128 px, two threads 163: benchmarks/web_live.py)
  threads = !self.crossOriginIsolated ? 1
    : threads || Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency || 1) / 2)));
  ort.env.wasm.numThreads = threads;
  ort.env.logLevel = "error";
  return { ort, backend, threads, vendor };
}

function det2(m, o) { return m[o] * m[o + 3] - m[o + 1] * m[o + 2]; }

function mul2(a, ao, b, bo, out, oo) {
  const a0 = a[ao], a1 = a[ao + 1], a2 = a[ao + 2], a3 = a[ao + 3];
  const b0 = b[bo], b1 = b[bo + 1], b2 = b[bo + 2], b3 = b[bo + 3];
  out[oo] = a0 * b0 + a1 * b2; out[oo + 1] = a0 * b1 + a1 * b3;
  out[oo + 2] = a2 * b0 + a3 * b2; out[oo + 3] = a2 * b1 + a3 * b3;
}

function hullArea(points) {
  // monotone chain convex hull of (K, 2) points, its area
  const p = [];
  for (let i = 0; i < points.length; i += 2) p.push([points[i], points[i + 1]]);
  p.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const half = (pts) => {
    const h = [];
    for (const q of pts) {
      while (h.length >= 2 && cross(h[h.length - 2], h[h.length - 1], q) <= 0) h.pop();
      h.push(q);
    }
    return h.slice(0, -1);
  };
  const hull = half(p).concat(half(p.slice().reverse()));
  let area = 0;
  for (let i = 0; i < hull.length; i += 1) {
    const a = hull[i], b = hull[(i + 1) % hull.length];
    area += a[0] * b[1] - b[0] * a[1];
  }
  return Math.abs(area) / 2;
}

// fomm.models.motion.HEAD_FIT_FLOOR, HEAD_FIT_TUKEY, HEAD_FIT_STEPS
const HEAD_FIT_FLOOR = 0.005, HEAD_FIT_TUKEY = 4.685, HEAD_FIT_STEPS = 3, HEAD_KEEP = 0.10;

/** Weighted least-squares similarity q ≈ a p + b of (K, 2) points (complex a, b as [re, im]). */
function similarityFit(p, q, w) {
  let total = 0, cpx = 0, cpy = 0, cqx = 0, cqy = 0;
  for (let k = 0; k < w.length; k += 1) {
    total += w[k]; cpx += w[k] * p[2 * k]; cpy += w[k] * p[2 * k + 1];
    cqx += w[k] * q[2 * k]; cqy += w[k] * q[2 * k + 1];
  }
  total = Math.max(total, 1e-12);
  cpx /= total; cpy /= total; cqx /= total; cqy /= total;
  let re = 0, im = 0, norm = 0;
  for (let k = 0; k < w.length; k += 1) {
    const px = p[2 * k] - cpx, py = p[2 * k + 1] - cpy, qx = q[2 * k] - cqx, qy = q[2 * k + 1] - cqy;
    re += w[k] * (px * qx + py * qy); im += w[k] * (px * qy - py * qx); norm += w[k] * (px * px + py * py);
  }
  norm = Math.max(norm, 1e-12);
  const ar = re / norm, ai = im / norm;
  return [ar, ai, cqx - (ar * cpx - ai * cpy), cqy - (ai * cpx + ar * cpy)];
}

function residuals([ar, ai, bx, by], p, q, out) {
  for (let k = 0; k < out.length; k += 1) {
    const x = p[2 * k], y = p[2 * k + 1];
    out[k] = Math.hypot(ar * x - ai * y + bx - q[2 * k], ai * x + ar * y + by - q[2 * k + 1]);
  }
  return out;
}

/** fomm.models.motion.head_transform for one frame: [a, b, tx, ty] of to ≈ [[a, -b], [b, a]] from
 * + t, fitted robustly (least-median start over the pairs, Tukey-weighted refits). */
export function headTransform(from, to) {
  const num = from.length / 2, w = new Float64Array(num).fill(1);
  if (num < 3) return similarityFit(from, to, w);
  const h = Math.floor(num / 2), r = new Float64Array(num), sorted = new Float64Array(num);
  let median = Infinity, best = null;
  for (let i = 0; i < num; i += 1) {
    for (let j = i + 1; j < num; j += 1) {
      let sx = from[2 * j] - from[2 * i], sy = from[2 * j + 1] - from[2 * i + 1];
      if (Math.hypot(sx, sy) <= 1e-12) { sx = 1e-12; sy = 0; }
      const dx = to[2 * j] - to[2 * i], dy = to[2 * j + 1] - to[2 * i + 1], n = sx * sx + sy * sy;
      const ar = (dx * sx + dy * sy) / n, ai = (dy * sx - dx * sy) / n;
      const fit = [ar, ai, to[2 * i] - (ar * from[2 * i] - ai * from[2 * i + 1]),
        to[2 * i + 1] - (ai * from[2 * i] + ar * from[2 * i + 1])];
      sorted.set(residuals(fit, from, to, r)); sorted.sort();
      if (sorted[h] < median) { median = sorted[h]; best = fit; }
    }
  }
  const cut = HEAD_FIT_TUKEY * Math.max(1.4826 * (1 + 5 / Math.max(num - 4, 1)) * median, HEAD_FIT_FLOOR);
  let fit = best;
  for (let step = 0; step < HEAD_FIT_STEPS; step += 1) {
    residuals(fit, from, to, r);
    for (let k = 0; k < num; k += 1) { const u = Math.min(r[k] / cut, 1); w[k] = (1 - u * u) ** 2; }
    fit = similarityFit(from, to, w);
  }
  return fit;
}

/** fomm.models.motion.head_motion for one driving frame: the source moved by the driver's head
 * motion alone (turned about its centroid, moved as the initial keypoints' centroid is); `own`:
 * the keypoints' own relative motion, kept in part within HEAD_KEEP of that; `kept`: per
 * keypoint, a factor 0..1 on that part (null: 1; ExpressionLayer.headKeep). */
export function headMotion(source, driving, initial, scale = 1, own = null, kept = null) {
  const [ar, ai, tx, ty] = headTransform(initial.value, driving.value);
  const num = source.value.length / 2;
  let cx = 0, cy = 0, ix = 0, iy = 0;
  for (let k = 0; k < num; k += 1) {
    cx += source.value[2 * k] / num; cy += source.value[2 * k + 1] / num;
    ix += initial.value[2 * k] / num; iy += initial.value[2 * k + 1] / num;
  }
  const mx = ar * ix - ai * iy + tx - ix, my = ai * ix + ar * iy + ty - iy;
  const value = new Float32Array(source.value.length);
  for (let k = 0; k < num; k += 1) {
    const x = source.value[2 * k] - cx, y = source.value[2 * k + 1] - cy;
    value[2 * k] = cx + ar * x - ai * y + scale * mx;
    value[2 * k + 1] = cy + ai * x + ar * y + scale * my;
  }
  let jacobian = source.jacobian;
  if (source.jacobian) {
    jacobian = new Float32Array(source.jacobian.length);
    for (let k = 0; k < jacobian.length; k += 4) {
      mul2(Float32Array.of(ar, -ai, ai, ar), 0, source.jacobian, k, jacobian, k);
    }
  }
  if (own && HEAD_KEEP > 0) {
    for (let k = 0; k < num; k += 1) {
      const dx = own.value[2 * k] - value[2 * k], dy = own.value[2 * k + 1] - value[2 * k + 1];
      const u = Math.min(Math.hypot(dx, dy) / HEAD_KEEP, 1);
      const w = (1 - u * u) ** 2 * (kept ? kept[k] : 1);
      value[2 * k] += w * dx; value[2 * k + 1] += w * dy;
      if (jacobian && own.jacobian) {
        for (let i = 4 * k; i < 4 * k + 4; i += 1) jacobian[i] += w * (own.jacobian[i] - jacobian[i]);
      }
    }
  }
  return { value, jacobian };
}

/** fomm.models.motion.normalize_kp for one driving frame ({value, jacobian} Float32Arrays);
 * `headOnly`: the driver's head motion alone (--animation-region pose), `headKeep` its `kept`. */
export function normalizeKp(source, driving, initial, relative = true, adaptScale = false,
  headOnly = false, headKeep = null) {
  if (headOnly && !relative) return headMotion(source, driving, source, 1, driving, headKeep);
  if (!relative) return driving;
  let scale = 1;
  if (adaptScale) {
    const d = hullArea(initial.value);
    if (d > 0) scale = Math.sqrt(hullArea(source.value)) / Math.sqrt(d);
  }
  const value = new Float32Array(driving.value.length);
  for (let i = 0; i < value.length; i += 1) {
    value[i] = Math.fround(Math.fround(driving.value[i] - initial.value[i]) * scale) + source.value[i];
  }
  let jacobian = driving.jacobian;
  if (driving.jacobian && initial.jacobian && source.jacobian) {
    jacobian = new Float32Array(driving.jacobian.length);
    const inv = new Float32Array(4), tmp = new Float32Array(4);
    for (let k = 0; k < jacobian.length; k += 4) {
      const m = initial.jacobian, d = det2(m, k);
      inv[0] = m[k + 3] / d; inv[1] = -m[k + 1] / d; inv[2] = -m[k + 2] / d; inv[3] = m[k] / d;
      mul2(driving.jacobian, k, inv, 0, tmp, 0);
      mul2(tmp, 0, source.jacobian, k, jacobian, k);
    }
  }
  if (headOnly) return headMotion(source, driving, initial, scale, { value, jacobian }, headKeep);
  return { value, jacobian };
}

/** The generator in its own Web Worker (js/generator_worker.js): it draws while the page works
 * on the next frame. Use GeneratorWorker.create. */
export class GeneratorWorker {
  constructor(worker) {
    this.worker = worker; this.next = 0; this.waiting = new Map(); this.inputNames = [];
    worker.onmessage = (event) => {
      const { id, error, ...answer } = event.data;
      const promise = this.waiting.get(id);
      this.waiting.delete(id);
      if (promise) { if (error) promise.reject(new Error(error)); else promise.resolve(answer); }
    };
    worker.onerror = (event) => {
      for (const promise of this.waiting.values()) promise.reject(new Error(event.message));
      this.waiting.clear();
    };
  }

  /** vendor: onnxruntime-web's folder URL; graph: the generator's ONNX bytes. */
  static async create(vendor, threads, options, graph) {
    const worker = new Worker(new URL("./generator_worker.js", import.meta.url), { type: "module" });
    const self = new GeneratorWorker(worker);
    try {
      const { inputNames } = await self.call({ type: "init", vendor, threads, options, graph });
      self.inputNames = inputNames;
    } catch (err) {
      worker.terminate();
      throw err;
    }
    return self;
  }

  call(message, transfer = []) {
    const id = this.next += 1;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, ...message }, transfer);
    });
  }

  /** The feeds that the generator takes, as {name: {data, dims}}. */
  feeds(all) {
    const out = {};
    for (const [name, t] of Object.entries(all)) {
      if (this.inputNames.includes(name)) out[name] = { data: t.data, dims: t.dims };
    }
    return out;
  }

  terminate() { this.worker.terminate(); }
}

/** fomm's graphs on onnxruntime-web; `size` is the model's image side. The generator runs in a
 * GeneratorWorker when `generator` is one, else on this thread. */
export class Networks {
  constructor(ort, sessions, size, generator = null) {
    this.ort = ort; this.sessions = sessions; this.size = size; this.worker = generator;
  }

  /** urls: the graphs (URLs or bytes); worker: {vendor, threads} to run the generator in a Web
   * Worker (on this thread where one cannot start), or null. */
  static async create(ort, urls, options, size, worker = null) {
    const sessions = {};
    let generator = null;
    if (worker) {
      try {
        generator = await GeneratorWorker.create(worker.vendor, worker.threads, options,
          urls.generator);
      } catch (err) {
        console.warn(`the generator runs on the page's thread: ${err.message}`);
      }
    }
    for (const name of ["source_encoder", "kp_detector", "generator"]) {
      if (name === "generator" && generator) continue;
      sessions[name] = await ort.InferenceSession.create(urls[name], options);
    }
    return new Networks(ort, sessions, size, generator);
  }

  /** Stop the generator's worker (if any). */
  release() { if (this.worker) this.worker.terminate(); }

  imageTensor(img) {
    return new this.ort.Tensor("float32", toTensorData(img), [1, 3, img.height, img.width]);
  }

  /** Keypoints of a model-size RGBA crop: {value, jacobian}. */
  async keypoints(img) {
    const out = await this.sessions.kp_detector.run({ image: this.imageTensor(img) });
    return { value: Float32Array.from(out.value.data),
      jacobian: out.jacobian ? Float32Array.from(out.jacobian.data) : null };
  }

  /** The source encoded once: the tensors the generator takes for it. */
  async prepareSource(img) {
    const source = this.imageTensor(img);
    const enc = await this.sessions.source_encoder.run({ source });
    const src = { source, features: enc.features, small: enc.small, kp: await this.keypoints(img) };
    if (this.worker) {
      const k = src.kp.value.length / 2, T = this.ort.Tensor;
      const all = { source, features: enc.features, small: enc.small,
        kp_source_value: new T("float32", src.kp.value, [1, k, 2]) };
      if (src.kp.jacobian) all.kp_source_jacobian = new T("float32", src.kp.jacobian, [1, k, 2, 2]);
      await this.worker.call({ type: "source", feeds: this.worker.feeds(all) });
      src.worker = this.worker;
    }
    // a session's first run is slow (it sets up its buffers): done here, not on a live frame
    await this.generate(src, src.kp);
    return src;
  }

  /** The generator's frame for driving keypoints `kp` (already normalised): an RGBA crop. */
  async generate(src, kp) {
    const T = this.ort.Tensor, k = kp.value.length / 2;
    if (this.worker) {
      const feeds = { kp_driving_value: { data: kp.value, dims: [1, k, 2] } };
      if (kp.jacobian && src.kp.jacobian) {
        feeds.kp_driving_jacobian = { data: kp.jacobian, dims: [1, k, 2, 2] };
      }
      return this.worker.call({ type: "generate", feeds: this.worker.feeds(feeds) });
    }
    const session = this.sessions.generator;
    const feeds = { source: src.source, features: src.features, small: src.small,
      kp_source_value: new T("float32", src.kp.value, [1, k, 2]),
      kp_driving_value: new T("float32", kp.value, [1, k, 2]) };
    if (src.kp.jacobian && session.inputNames.includes("kp_source_jacobian")) {
      feeds.kp_source_jacobian = new T("float32", src.kp.jacobian, [1, k, 2, 2]);
      feeds.kp_driving_jacobian = new T("float32", kp.jacobian, [1, k, 2, 2]);
    }
    for (const name of Object.keys(feeds)) if (!session.inputNames.includes(name)) delete feeds[name];
    const out = await session.run(feeds, ["prediction"]);
    const p = out.prediction;
    return fromTensorData(p.data, p.dims[3], p.dims[2]);
  }
}
