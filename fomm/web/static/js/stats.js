// The live figures: frames out, frames per second and the latency from a camera frame to its
// drawn result (p50, p95 over the session), exposed as window.fommStats and shown on the page.

function percentile(sorted, q) {
  if (!sorted.length) return 0;
  // numpy's default (linear between the closest ranks), as fomm live reports it
  const pos = (sorted.length - 1) * q / 100, lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export class LiveStats {
  constructor(show) {
    this.show = show;
    this.figures = { framesOut: 0, framesIn: 0, faceFrames: 0, fps: 0, latencyP50: 0,
      latencyP95: 0, backend: "", modelBytes: 0, loadMs: 0, firstFrameMs: null,
      frameTime: null, overlap: false, generatorWorker: false };
    this.latencies = [];
    this.stages = { pose: 0, draw: 0, finish: 0 };
    this.figures.stageMs = this.stages;
  }

  /** A live step's duration (ms): "pose" (framing, keypoints), "draw" (the generator),
   * "finish" (the expression layer, the paste-back, the drawing); kept as a running mean of the
   * recent frames in `figures.stageMs`. */
  stage(name, ms) {
    const old = this.stages[name];
    this.stages[name] = old ? 0.8 * old + 0.2 * ms : ms;
  }

  setBackend(name) { this.figures.backend = name; this.show(this.figures); }

  start() {
    this.started = performance.now();
    this.latencies = [];
    for (const name of Object.keys(this.stages)) this.stages[name] = 0;
    Object.assign(this.figures, { framesOut: 0, faceFrames: 0, fps: 0, latencyP50: 0,
      latencyP95: 0, firstFrameMs: null });
  }

  /** A frame shown `latency` ms after the camera took it at `frameTime` (ms). */
  frameOut(latency, face, frameTime = null) {
    const f = this.figures, now = performance.now();
    f.frameTime = frameTime;
    if (f.framesOut === 0) { this.first = now; f.firstFrameMs = Math.round(now - this.started); }
    f.framesOut += 1;
    if (face) f.faceFrames += 1;
    this.latencies.push(latency);
    const sorted = this.latencies.slice().sort((a, b) => a - b);
    f.fps = f.framesOut > 1 ? (f.framesOut - 1) / ((now - this.first) / 1000) : 0;
    f.latencyP50 = percentile(sorted, 50);
    f.latencyP95 = percentile(sorted, 95);
    this.show(f);
  }
}
