// Live face framing and jitter filters, as fomm.live.framing, fomm.live.smoothing,
// fomm.faces.crop (square_box, fit_square) and fomm.faces.track (iou, pick_face).
import { crop, cut } from "./imageops.js";

export const MARGIN = 0.25, SHIFT_Y = -0.07;
const DETECT_MAX_SIDE = 320, LOST_AFTER = 3, NEAR = 2.0, NEAR_MAX_SIDE = 160, NEAR_MIN_FACE = 0.5;
const MIN_FACE = 0.08;
export const KP_MIN_CUTOFF = 1.0;
const KP_BETA = 1.0, BOX_MIN_CUTOFF = 1.0, BOX_BETA = 0.02, D_CUTOFF = 1.0;

const alpha = (cutoff, dt) => 1 / (1 + 1 / (2 * Math.PI * cutoff * dt));

/** One-Euro filter of a numeric array (element-wise), timestamps in seconds. */
export class OneEuroFilter {
  constructor(minCutoff = KP_MIN_CUTOFF, beta = KP_BETA, dCutoff = D_CUTOFF) {
    Object.assign(this, { minCutoff, beta, dCutoff });
    this.reset();
  }

  reset() { this.x = null; this.dx = null; this.t = null; }

  filter(x, t) {
    if (this.x === null || this.t === null) {
      this.x = Float64Array.from(x); this.dx = new Float64Array(x.length); this.t = t;
      return Float64Array.from(x);
    }
    const dt = t - this.t;
    if (dt <= 0) return Float64Array.from(this.x);
    const ad = alpha(this.dCutoff, dt);
    for (let i = 0; i < x.length; i += 1) {
      const d = (x[i] - this.x[i]) / dt;
      this.dx[i] = ad * d + (1 - ad) * this.dx[i];
      const a = alpha(this.minCutoff + this.beta * Math.abs(this.dx[i]), dt);
      this.x[i] = a * x[i] + (1 - a) * this.x[i];
    }
    this.t = t;
    return Float64Array.from(this.x);
  }
}

/** One-Euro filters on keypoint values and jacobians ({value, jacobian} Float32Arrays). */
export class KeypointSmoother {
  constructor(minCutoff = KP_MIN_CUTOFF, beta = KP_BETA) {
    this.value = new OneEuroFilter(minCutoff, beta);
    this.jacobian = new OneEuroFilter(minCutoff, beta);
  }

  reset() { this.value.reset(); this.jacobian.reset(); }

  smooth(kp, t) {
    return { value: Float32Array.from(this.value.filter(kp.value, t)),
      jacobian: kp.jacobian && Float32Array.from(this.jacobian.filter(kp.jacobian, t)) };
  }
}

export const faceSize = (b) => Math.max(b[2] - b[0], b[3] - b[1]);

function clampCentre(centre, side, extent) {
  if (side >= extent) return extent / 2;
  return Math.min(Math.max(centre, side / 2), extent - side / 2);
}

export function fitSquare([cx, cy], side, width, height, minSide = 0) {
  side = Math.max(Math.min(side, Math.min(height, width)), Math.min(side, minSide));
  const x = clampCentre(cx, side, width), y = clampCentre(cy, side, height), half = side / 2;
  return [x - half, y - half, x + half, y + half];
}

/** fomm.faces.crop.square_box (fit to the image). */
export function squareBox(box, width, height, margin = MARGIN, shiftY = SHIFT_Y) {
  const size = faceSize(box);
  const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2 + shiftY * size;
  return fitSquare([cx, cy], (1 + 2 * margin) * size, width, height, (1 + margin) * size);
}

export function iou(a, b) {
  const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

export function pickFace(faces, previous, minIou = 0.3) {
  if (!faces.length) return null;
  if (previous) {
    let best = faces[0];
    for (const f of faces) if (iou(f.box, previous) > iou(best.box, previous)) best = f;
    if (iou(best.box, previous) >= minIou) return best;
  }
  return faces[0];
}

/** fomm.live.framing.LiveFramer: follow the face of a stream, cut its model-size crop.
 * `track`: find a followed face again from its last box (MTCNN.refine: two small networks on
 * one candidate) before looking around it and in the whole frame; fomm live looks around it. */
export class LiveFramer {
  constructor(detector, size, { detectEvery = 3, smoothing = true, margin = MARGIN,
    track = false } = {}) {
    Object.assign(this, { detector, size, detectEvery, margin, track });
    this.filter = smoothing ? new OneEuroFilter(BOX_MIN_CUTOFF, BOX_BETA) : null;
    this.face = null; this.misses = 0; this.count = 0; this.detections = 0;
    this.box = null;  // the last crop box
  }

  async detectNear(frame, box) {
    const cx = (box[0] + box[2]) / 2, cy = (box[1] + box[3]) / 2, size = box[2] - box[0];
    const half = NEAR * size / 2;
    const x0 = Math.max(0, Math.trunc(cx - half)), y0 = Math.max(0, Math.trunc(cy - half));
    const x1 = Math.min(frame.width, Math.trunc(cx + half));
    const y1 = Math.min(frame.height, Math.trunc(cy + half));
    if (x1 - x0 < 24 || y1 - y0 < 24) return [];
    const faces = await this.detector.detect(cut(frame, x0, y0, x1, y1),
      { minSize: Math.max(20, NEAR_MIN_FACE * size), maxSide: NEAR_MAX_SIDE });
    return faces.map((f) => ({ box: [f.box[0] + x0, f.box[1] + y0, f.box[2] + x0, f.box[3] + y0],
      score: f.score, landmarks: f.landmarks.map(([x, y]) => [x + x0, y + y0]) }));
  }

  async detect(frame, t) {
    this.detections += 1;
    let faces = [];
    if (this.track && this.face && !this.misses) {
      faces = await this.detector.refine(frame, this.face,
        { minSize: Math.max(20, NEAR_MIN_FACE * faceSize(this.face)) });
    }
    if (!faces.length && this.face && !this.misses) faces = await this.detectNear(frame, this.face);
    if (!faces.length) {
      const minSize = Math.max(20, MIN_FACE * Math.min(frame.width, frame.height));
      faces = await this.detector.detect(frame, { minSize, maxSide: DETECT_MAX_SIDE });
    }
    const face = pickFace(faces, this.face);
    if (!face) {
      this.misses += 1;
      if (this.misses >= LOST_AFTER) { this.face = null; if (this.filter) this.filter.reset(); }
      return;
    }
    this.misses = 0;
    const b = face.box;
    let p = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, faceSize(b)];
    if (this.filter) p = Array.from(this.filter.filter(p, t));
    const half = p[2] / 2;
    this.face = [p[0] - half, p[1] - half, p[0] + half, p[1] + half];
  }

  /** The model-size crop of the face in `frame` (taken at t s), or null. */
  async frame(frame, t) {
    if (!this.face || this.misses || this.count % this.detectEvery === 0) await this.detect(frame, t);
    this.count += 1;
    if (!this.face) { this.box = null; return null; }
    this.box = squareBox(this.face, frame.width, frame.height, this.margin);
    return crop(frame, this.box, this.size);
  }
}
