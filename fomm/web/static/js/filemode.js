// File mode: a driving clip decoded frame by frame in a <video> element (seeking to each frame's
// middle), each frame through the same step as the camera, the results encoded with WebCodecs
// (VP9, else VP8) into a WebM file, all in this page.
import { WebMWriter } from "./webm.js";

const MAX_SIDE_ENCODE = 1920;

function waitFor(target, event) {
  return new Promise((resolve, reject) => {
    const ok = () => { cleanup(); resolve(); };
    const bad = () => { cleanup(); reject(new Error("this video cannot be decoded here")); };
    const cleanup = () => { target.removeEventListener(event, ok); target.removeEventListener("error", bad); };
    target.addEventListener(event, ok);
    target.addEventListener("error", bad);
  });
}

/** The clip's frame rate, from the media times of a few frames played. */
async function measureFps(video) {
  const times = [];
  await new Promise((resolve) => {
    const onFrame = (now, meta) => {
      times.push(meta.mediaTime);
      if (times.length >= 6 || video.ended) { video.pause(); resolve(); return; }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    video.play().catch(() => resolve());
    setTimeout(resolve, 3000);
  });
  video.pause();
  const steps = times.slice(1).map((t, i) => t - times[i]).filter((d) => d > 1e-4).sort();
  const step = steps.length ? steps[Math.floor(steps.length / 2)] : 1 / 25;
  return Math.min(120, Math.max(1, Math.round(100 / step) / 100));
}

async function seek(video, time) {
  const seeked = waitFor(video, "seeked");
  video.currentTime = time;
  await seeked;
}

async function pickCodec(width, height, fps) {
  for (const codec of ["vp09.00.10.08", "vp8"]) {
    const config = { codec, width, height, bitrate: 4_000_000, framerate: fps };
    try {
      if ((await VideoEncoder.isConfigSupported(config)).supported) return config;
    } catch (err) { /* the next one */ }
  }
  throw new Error("this browser cannot encode VP9 or VP8 video (WebCodecs)");
}

/** Animate `animator`'s photo with the clip `file`: {blob, frames, fps, codec}. */
export async function animateClip(file, animator, { onProgress = () => {}, onFrame = () => {} } = {}) {
  if (typeof VideoEncoder === "undefined") throw new Error("this browser has no WebCodecs VideoEncoder");
  const video = document.createElement("video");
  video.muted = true; video.playsInline = true; video.preload = "auto";
  const url = URL.createObjectURL(file);
  video.src = url;
  try {
    await waitFor(video, "loadeddata");
    const fps = await measureFps(video);
    const total = Math.max(1, Math.round(video.duration * fps));
    const { width, height } = animator.photo;
    const fit = Math.min(1, MAX_SIDE_ENCODE / Math.max(width, height));
    const w = Math.round(width * fit) & ~1, h = Math.round(height * fit) & ~1;
    const config = await pickCodec(w, h, fps);
    const writer = new WebMWriter({ width: w, height: h, codec: config.codec, fps });
    let failure = null;
    const encoder = new VideoEncoder({ output: (chunk) => writer.add(chunk), error: (e) => { failure = e; } });
    encoder.configure(config);
    const grab = new OffscreenCanvas(video.videoWidth, video.videoHeight);
    const ctx = grab.getContext("2d", { willReadFrequently: true });
    const out = new OffscreenCanvas(w, h);
    const octx = out.getContext("2d");
    const staging = new OffscreenCanvas(width, height), sctx = staging.getContext("2d");
    animator.reset();
    for (let i = 0; i < total; i += 1) {
      await seek(video, Math.min((i + 0.5) / fps, Math.max(0, video.duration - 1e-3)));
      ctx.drawImage(video, 0, 0);
      const d = ctx.getImageData(0, 0, grab.width, grab.height);
      const result = await animator.frame({ data: d.data, width: d.width, height: d.height }, i / fps);
      sctx.putImageData(new ImageData(result.image.data, width, height), 0, 0);
      octx.drawImage(staging, 0, 0, w, h);
      const frame = new VideoFrame(out, { timestamp: Math.round(i * 1e6 / fps), duration: Math.round(1e6 / fps) });
      encoder.encode(frame, { keyFrame: i % 60 === 0 });
      frame.close();
      if (failure) throw failure;
      onFrame(result.image);
      onProgress(i + 1, total);
      while (encoder.encodeQueueSize > 4) await new Promise((r) => setTimeout(r, 5));
    }
    await encoder.flush();
    encoder.close();
    if (failure) throw failure;
    return { blob: writer.finish(), frames: total, fps, codec: config.codec.startsWith("vp09") ? "VP9" : "VP8" };
  } finally {
    URL.revokeObjectURL(url);
    video.removeAttribute("src");
    video.load();
  }
}
