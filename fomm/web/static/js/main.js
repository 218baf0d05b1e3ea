// The page: models loaded once from this site, then a photo animated by the camera (live) or by a
// driving clip (file mode, a WebM download). Everything runs here; nothing is sent anywhere.
import { makeImage } from "./imageops.js";
import { MTCNN } from "./mtcnn.js";
import { loadRuntime, Networks } from "./model.js";
import { FaceAnimator, NoFaceError } from "./pipeline.js";
import { animateClip } from "./filemode.js";
import { LiveStats, Overlap } from "./stats.js";
import { ExpressionControls } from "./expression_ui.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const video = $("camera"), canvas = $("result"), statusLine = $("status");
const say = (text) => { statusLine.textContent = text; };
const stats = new LiveStats((s) => {
  $("stat-backend").textContent = s.backend;
  $("stat-frames").textContent = String(s.framesOut);
  $("stat-fps").textContent = s.fps.toFixed(1);
  $("stat-latency").textContent = `${s.latencyP50.toFixed(0)} / ${s.latencyP95.toFixed(0)} ms`;
});
window.fommStats = stats.figures;

const state = { runtime: null, networks: null, detector: null, animator: null, photo: null,
  stream: null, running: false, busy: false, expression: null };

// one canvas for reading pixels back (a camera frame each time: made once, not per frame)
let reader = null;
function imageFromBitmap(source, width, height) {
  if (source.data && !(source instanceof ImageData) && source.width === width) return source;
  if (!reader || reader.canvas.width !== width || reader.canvas.height !== height) {
    reader = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
  }
  const ctx = reader;
  ctx.clearRect(0, 0, width, height);
  ctx.drawImage(source, 0, 0, width, height);
  const d = ctx.getImageData(0, 0, width, height);
  return { data: d.data, width, height };
}

function draw(img) {
  if (canvas.width !== img.width || canvas.height !== img.height) {
    canvas.width = img.width; canvas.height = img.height;
  }
  canvas.getContext("2d").putImageData(new ImageData(img.data, img.width, img.height), 0, 0);
}

async function fetchBytes(url, counter) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  counter.bytes += bytes.length;
  return bytes;
}

async function load() {
  const started = performance.now();
  const manifest = await (await fetch("site.json")).json();
  const runtime = await loadRuntime(new URL(".", location.href).href, params.get("backend") || "auto",
    manifest, Number(params.get("threads")) || 0);
  state.runtime = runtime;
  const { ort } = runtime;
  const counter = { bytes: 0 };
  // threads that wait instead of spinning: on a busy device a spinning pool burns the CPU the
  // other steps need (?spin=1 spins, onnxruntime's default)
  const spin = params.get("spin") === "1" ? "1" : "0";
  const options = { executionProviders: runtime.backend === "webgpu" ? ["webgpu", "wasm"] : ["wasm"],
    graphOptimizationLevel: "all", extra: { session: { intra_op: { allow_spinning: spin } } } };
  const sizes = Object.keys(manifest.model.networks).map(Number).sort((a, b) => b - a);
  let size = Number(params.get("size")) ||
    (runtime.backend === "webgpu" ? manifest.model.size : manifest.model.wasm_size);
  if (!sizes.includes(size)) size = manifest.model.size;
  const select = $("network-size");
  for (const s of sizes) {
    select.add(new Option(`${s} px${s === manifest.model.size ? " (sharper)" : " (faster)"}`, String(s)));
  }
  select.value = String(size);
  state.options = options; state.manifest = manifest;
  await useNetworks(size, counter);
  const mtcnn = {};
  for (const [name, path] of Object.entries(manifest.mtcnn)) mtcnn[name] = await fetchBytes(path, counter);
  state.detector = await MTCNN.create(ort, mtcnn, { ...options, executionProviders: ["wasm"] });
  state.expression = new ExpressionControls(state, manifest, say);
  await state.expression.preload(counter);
  const backend = `${runtime.backend === "webgpu" ? "WebGPU" : "WASM SIMD"} · ` +
    `${runtime.threads} thread${runtime.threads > 1 ? "s" : ""}` +
    (self.crossOriginIsolated ? "" : " (no cross-origin isolation)");
  stats.setBackend(backend);
  stats.figures.modelBytes = counter.bytes;
  stats.figures.loadMs = Math.round(performance.now() - started);
  $("model-size").textContent = `${(counter.bytes / 1e6).toFixed(1)} MB`;
  $("load-time").textContent = `${(stats.figures.loadMs / 1000).toFixed(1)} s`;
  $("snapshot").disabled = false;
  say("Pick a photo (or take a camera snapshot), then start the camera or drop a driving clip.");
  document.body.dataset.ready = "1";
}

async function useNetworks(size, counter = { bytes: 0 }) {
  const graphs = {};
  for (const [name, path] of Object.entries(state.manifest.model.networks[String(size)])) {
    graphs[name] = await fetchBytes(path, counter);
  }
  // with ?overlap=1 or auto on WASM, the generator runs in a worker of its own, beside the
  // framing, the keypoints and the paste-back on this thread (?worker=1 without the overlap);
  // else on this thread (on the shared 2-core machine the worker drew 5-10 % slower)
  const { runtime } = state;
  const inWorker = params.get("worker") ?? ((params.get("overlap") || "0") !== "0" ? "1" : "0");
  const worker = runtime.backend === "wasm" && inWorker === "1"
    ? { vendor: runtime.vendor, threads: runtime.threads } : null;
  if (state.networks) state.networks.release();
  state.networks = await Networks.create(runtime.ort, graphs, state.options, size, worker);
  stats.figures.networkSize = size;
  stats.figures.generatorWorker = Boolean(state.networks.worker);
}

$("network-size").addEventListener("change", async (e) => {
  const running = state.running;
  if (running) stop();
  say("Loading the networks…");
  await useNetworks(Number(e.target.value));
  if (state.photo) await setPhoto(state.photo, state.photo.width, state.photo.height);
  else say("Networks ready: pick a photo.");
});

async function setPhoto(source, width, height) {
  const photo = imageFromBitmap(source, width, height);
  say("Finding the face in the photo…");
  try {
    state.animator = await FaceAnimator.create(state.networks, state.detector, photo);
  } catch (err) {
    state.animator = null;
    say(err instanceof NoFaceError ? err.message : `The photo could not be used: ${err.message}`);
    $("start").disabled = true;
    return;
  }
  state.photo = photo;
  draw(state.animator.still);
  await state.expression.attach(state.animator);
  $("start").disabled = false;
  say("Photo ready: start the camera, or choose a driving clip.");
  document.body.dataset.photo = "1";
}

async function camera() {
  if (!state.stream) {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 } });
    video.srcObject = state.stream;
    await video.play();
  }
}

// the newest camera frame's capture time; a grab takes whatever frame is shown now
let newest = null, taken = null;
function watchFrames() {
  const onFrame = (now, meta) => {
    newest = { t: meta.captureTime ?? meta.expectedDisplayTime ?? now, n: meta.presentedFrames };
    stats.figures.framesIn = meta.presentedFrames;
    if (state.stream) video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

function nextFrame() {
  return new Promise((resolve) => {
    const check = () => {
      if (!state.running) { resolve(null); return; }
      if (newest && newest !== taken) {
        taken = newest;
        resolve({ image: imageFromBitmap(video, video.videoWidth, video.videoHeight), t: newest.t });
        return;
      }
      video.requestVideoFrameCallback(() => check());
    };
    check();
  });
}

// a macrotask turn: lets the loop hand the generator its next frame before a paste-back runs
const channel = new MessageChannel();
const turns = [];
channel.port1.onmessage = () => turns.shift()();
const nextTurn = () => new Promise((resolve) => { turns.push(resolve); channel.port2.postMessage(0); });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// One frame after the other by default. With ?overlap=1, as fomm live's overlap: this thread takes
// a frame's pose (framing, keypoints) while the generator draws the previous one; one frame is
// drawn at a time and each is finished (the expression layer, the paste-back) and shown in
// order, the next camera frame taken as late as lets its pose be ready when the generator is
// free (from the steps' recent durations). ?overlap=auto measures both and keeps the better
// (Overlap). On the shared 2-core machine overlap lost: the two threads competed for one core.
async function liveLoop() {
  stats.start();
  const animator = state.animator;
  // live, a followed face is found again from its last box (?track=0: as fomm live, around it)
  animator.reset({ track: params.get("track") !== "0" });
  const wanted = params.get("overlap") || "0";  // "1", "0" or "auto"
  const overlap = new Overlap(Boolean(state.networks.worker) && wanted !== "0");
  if (overlap.possible && wanted === "1") { overlap.mode = "overlap"; overlap.left = Infinity; }
  const inFlight = [];  // {drawn, shown, done} of the frames not shown yet, oldest first
  let drawStart = 0;
  try {
    while (state.running) {
      const last = inFlight[inFlight.length - 1];
      if (last && !overlap.on) await last.shown;
      else if (last && !last.done && stats.stages.draw) {
        const wait = drawStart + stats.stages.draw - stats.stages.pose - performance.now();
        if (wait > 1) await sleep(wait);
      }
      stats.figures.overlap = overlap.on;
      const frame = await nextFrame();
      if (!frame) break;
      const started = performance.now();
      const pose = await animator.pose(frame.image, frame.t / 1000);
      stats.stage("pose", performance.now() - started);
      while (inFlight.length >= 2) await inFlight.shift().shown;
      if (inFlight.length) await inFlight[inFlight.length - 1].drawn;
      if (!state.running || animator !== state.animator) break;
      const networks = pose ? animator.usesNetworks() : false;
      const item = { done: false, drawMs: null };
      const begun = drawStart = performance.now();
      item.drawn = pose ? animator.draw(pose) : Promise.resolve(null);
      if (networks) {
        item.drawn.then(() => {
          item.done = true; item.drawMs = performance.now() - begun;
          stats.stage("draw", item.drawMs);
        }, () => { item.done = true; });
      } else item.done = true;
      const previous = last ? last.shown : Promise.resolve();
      item.shown = (async () => {
        const crop = await item.drawn;
        await previous;
        await nextTurn();
        const finishing = performance.now();
        const out = pose ? await animator.finish(pose, crop, networks) : animator.stillFrame();
        if (!state.running || animator !== state.animator) return;
        draw(out.image);
        const now = performance.now();
        stats.stage("finish", now - finishing);
        stats.frameOut(now - frame.t, out.face, frame.t);
        overlap.shown(now, now - frame.t, item.drawMs);
      })();
      inFlight.push(item);
    }
  } finally {
    await Promise.allSettled(inFlight.map((f) => f.shown));
  }
  for (const f of inFlight) await f.shown;  // a failure is the loop's
}

$("photo").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  const bitmap = await createImageBitmap(file);
  await setPhoto(bitmap, bitmap.width, bitmap.height);
});

$("snapshot").addEventListener("click", async () => {
  try { await camera(); } catch (err) { say(`No camera: ${err.message}`); return; }
  await setPhoto(video, video.videoWidth, video.videoHeight);
});

$("start").addEventListener("click", async () => {
  if (!state.animator) { say("Pick a photo first."); return; }
  try { await camera(); } catch (err) { say(`No camera: ${err.message}`); return; }
  state.running = true;
  watchFrames();
  $("start").disabled = true; $("stop").disabled = false; $("reference").disabled = false;
  say("Live: look at the camera the way the photo does, or re-take the reference pose.");
  try {
    await liveLoop();
  } catch (err) {
    say(`The animation stopped: ${err.message}`);
    console.error(err);
    stop();
  }
});

function stop() {
  state.running = false;
  if (state.stream) { for (const t of state.stream.getTracks()) t.stop(); }
  state.stream = null;
  $("start").disabled = !state.animator; $("stop").disabled = true; $("reference").disabled = true;
  say("Stopped.");
}
$("stop").addEventListener("click", stop);
$("reference").addEventListener("click", () => state.animator && state.animator.retake());
document.addEventListener("keydown", (e) => {
  if (e.key === "r" && state.animator && e.target.tagName !== "INPUT") state.animator.retake();
});

$("clip").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  if (!state.animator) { say("Pick a photo first, then the driving clip."); return; }
  if (state.running) stop();
  const progress = $("progress"), link = $("download");
  progress.hidden = false; progress.value = 0; link.hidden = true;
  document.body.dataset.fileDone = "";
  try {
    const result = await animateClip(file, state.animator, {
      onProgress: (done, total) => { progress.value = total ? done / total : 0;
        say(`Animating the clip: frame ${done} of ${total}`); },
      onFrame: (img) => draw(img),
    });
    link.href = URL.createObjectURL(result.blob);
    link.hidden = false;
    say(`Done: ${result.frames} frames at ${result.fps.toFixed(2)} fps (${result.codec}), ` +
      `${(result.blob.size / 1e6).toFixed(2)} MB.`);
    document.body.dataset.fileDone = String(result.frames);
  } catch (err) {
    say(`The clip could not be animated: ${err.message}`);
    document.body.dataset.fileDone = "error";
  }
});

// for tests and scripts: the frame step on raw frames, without a camera or a clip
window.fomm = {
  state,
  async animateFrames(frames, fps = 25) {
    state.animator.reset();
    const out = [];
    for (let i = 0; i < frames.length; i += 1) {
      const { width, height, rgba } = frames[i];
      const img = makeImage(width, height);
      img.data.set(rgba);
      const result = await state.animator.frame(img, i / fps);
      out.push(result);
    }
    return out;
  },
};

if (location.protocol !== "file:" && location.pathname.startsWith("/device")) $("server-live").hidden = false;
load().catch((err) => { say(`The models could not be loaded: ${err.message}`); console.error(err); });
