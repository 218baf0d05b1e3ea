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

/** Whether the next frame is taken while the generator draws the previous one (overlap) or after
 * it is shown (serial): overlap gains where a core is free for each and loses where the two
 * compete for one (a busy device: the generator then draws slower beside the page's thread), so
 * the loop measures both — PROBE frames of each, then LONG frames of the better, then PROBE
 * frames of the other again. Overlap is the better when its frames come at least FASTER times as
 * often, its median latency is at most SLOWER times serial's and the generator's median time
 * beside the page's work at most SHARED times its time alone. */
export class Overlap {
  static PROBE = 16; static SKIP = 3; static LONG = 150;
  static FASTER = 1.15; static SLOWER = 1.2; static SHARED = 1.25;

  constructor(possible) {
    this.possible = possible;
    const none = () => ({ serial: null, overlap: null });
    this.interval = none();  // ms between frames shown, per mode
    this.latency = none();  // median ms from camera to shown, per mode
    this.draw = none();  // the generator's median ms, per mode
    this.mode = possible ? "serial" : "none"; this.left = Overlap.PROBE; this.times = [];
    this.latencies = []; this.draws = []; this.probing = true;
  }

  get on() { return this.mode === "overlap"; }

  /** A frame shown at `now` (ms), `latency` ms after the camera took it; `draw`: the
   * generator's ms for it (null when it did not run). */
  shown(now, latency, draw = null) {
    if (!this.possible) return;
    this.times.push(now);
    this.latencies.push(latency);
    if (draw !== null) this.draws.push(draw);
    this.left -= 1;
    if (this.left > 0) return;
    const median = (a) => { const b = a.slice(Overlap.SKIP).sort((x, y) => x - y);
      return b.length ? b[b.length >> 1] : null; };
    const t = this.times.slice(Overlap.SKIP);
    if (t.length > 1) {
      this.interval[this.mode] = (t[t.length - 1] - t[0]) / (t.length - 1);
      this.latency[this.mode] = median(this.latencies);
      this.draw[this.mode] = median(this.draws) ?? this.draw[this.mode];
    }
    const { serial, overlap } = this.interval;
    if (serial === null || overlap === null) {
      this.mode = serial === null ? "serial" : "overlap"; this.probing = true;
    } else {
      const shared = this.draw.serial === null || this.draw.overlap === null
        || this.draw.overlap <= Overlap.SHARED * this.draw.serial;
      const best = Overlap.FASTER * overlap <= serial && shared
        && this.latency.overlap <= Overlap.SLOWER * this.latency.serial ? "overlap" : "serial";
      // after a probe, the better for long; after a long run, a probe of the other
      this.probing = !this.probing;
      this.mode = this.probing ? (best === "overlap" ? "serial" : "overlap") : best;
    }
    this.left = this.probing ? Overlap.PROBE : Overlap.LONG;
    this.times = []; this.latencies = []; this.draws = [];
  }
}
