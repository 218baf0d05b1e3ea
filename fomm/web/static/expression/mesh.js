// MediaPipe's 468-point face mesh with the iris network's eyelids, on onnxruntime-web
// (fomm/faces/mesh.py): the region of interest (ROI) from the last landmarks (tracking), from the
// whole image, or refined from the landmarks' own ROI until it settles; each eye cropped level
// (the second one mirrored) for the iris network, whose lids replace the mesh's.

import { affinePatch, cropImage, resizeArea } from './imaging.js';

export const INPUT = 192;
export const EYE_INPUT = 64;
export const EYE_ROI_SCALE = 2.3;
export const ROI_SCALE = 1.5;
export const MIN_SCORE = 0.5;
export const MAX_REFINE_PASSES = 2;
export const MAX_BILINEAR_SCALE = 1.5;
export const POINTS = 468;

const INDICES = {
  face_oval: [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
    377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109],
  left_brow: [70, 63, 105, 66, 107, 46, 53, 52, 65, 55],
  right_brow: [336, 296, 334, 293, 300, 285, 295, 282, 283, 276],
  left_eye_upper: [33, 246, 161, 160, 159, 158, 157, 173, 133],
  left_eye_lower: [33, 7, 163, 144, 145, 153, 154, 155, 133],
  right_eye_upper: [362, 398, 384, 385, 386, 387, 388, 466, 263],
  right_eye_lower: [362, 382, 381, 380, 374, 373, 390, 249, 263],
  nose: [168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327],
  lips_outer_upper: [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291],
  lips_outer_lower: [61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291],
  lips_inner_upper: [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308],
  lips_inner_lower: [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308],
  stable: [168, 6, 197, 195, 5, 4, 1, 133, 362, 10, 109, 338, 67, 297, 127, 356],
  // the upper cheek under each eye, image-left to image-right: the lower lid rides on it
  left_cheek: [111, 117, 118, 119, 120, 121],
  right_cheek: [350, 349, 348, 347, 346, 340],
};

/** Landmark groups: name -> Int32Array of mesh indices (fomm.faces.mesh GROUPS). */
export const GROUPS = Object.freeze(
  Object.fromEntries(Object.entries(INDICES).map(([k, v]) => [k, Int32Array.from(v)])),
);
const EYE_LINE = [33, 263];
const EYE_CORNERS = [[33, 133], [362, 263]];
// the mesh points the iris network's first 16 contour points replace, per eye
const EYE_REFINED = [
  [33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173],
  [263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398],
];

class Roi {
  constructor(cx, cy, side, angle) {
    this.cx = cx;
    this.cy = cy;
    this.side = side;
    this.angle = angle;
  }

  /** 2x3 affine (flat) from ROI pixels at `size` (mirrored where flip) to the image. */
  toImage(halfPixel, size, flip = false) {
    const k = this.side / size;
    const c = Math.cos(this.angle) * k;
    const s = Math.sin(this.angle) * k;
    const f = flip ? -1 : 1;
    const u0 = halfPixel - size / 2;
    return [f * c, -s, this.cx + f * c * u0 - s * u0, f * s, c, this.cy + f * s * u0 + c * u0];
  }

  closeTo(other) {
    const shift = Math.hypot(this.cx - other.cx, this.cy - other.cy) / this.side;
    const ratio = other.side / this.side;
    let turn = (other.angle - this.angle + Math.PI) % (2 * Math.PI);
    if (turn < 0) turn += 2 * Math.PI;
    turn = Math.abs(turn - Math.PI);
    return shift < 0.03 && ratio > 0.93 && ratio < 1.07 && turn < (4 * Math.PI) / 180;
  }
}

function roiFromPoints(points) {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < points.length; i += 2) {
    x0 = Math.min(x0, points[i]);
    x1 = Math.max(x1, points[i]);
    y0 = Math.min(y0, points[i + 1]);
    y1 = Math.max(y1, points[i + 1]);
  }
  const [a, b] = EYE_LINE;
  const angle = Math.atan2(points[2 * b + 1] - points[2 * a + 1], points[2 * b] - points[2 * a]);
  return new Roi((x0 + x1) / 2, (y0 + y1) / 2, ROI_SCALE * Math.max(x1 - x0, y1 - y0), angle);
}

function roiFull(width, height) {
  return new Roi((width - 1) / 2, (height - 1) / 2, Math.max(width, height), 0);
}

function eyeRoi(points, start, end) {
  const ax = points[2 * start];
  const ay = points[2 * start + 1];
  const bx = points[2 * end];
  const by = points[2 * end + 1];
  const side = EYE_ROI_SCALE * Math.max(Math.abs(bx - ax), Math.abs(by - ay));
  return new Roi((ax + bx) / 2, (ay + by) / 2, side, Math.atan2(by - ay, bx - ax));
}

/** Writes the ROI's patch (3 planes, [0, 1]) into `out` at `offset`. */
function patch(image, roi, size, flip, out, offset) {
  const scale = roi.side / size;
  if (scale > MAX_BILINEAR_SCALE) {
    const half = roi.side * 0.7072;
    const x0 = Math.max(Math.trunc(roi.cx - half), 0);
    const y0 = Math.max(Math.trunc(roi.cy - half), 0);
    const x1 = Math.min(Math.trunc(roi.cx + half) + 2, image.width);
    const y1 = Math.min(Math.trunc(roi.cy + half) + 2, image.height);
    if (x1 - x0 >= 2 && y1 - y0 >= 2) {
      const newW = Math.max(Math.round((x1 - x0) / scale), 1);
      const newH = Math.max(Math.round((y1 - y0) / scale), 1);
      const small = resizeArea(cropImage(image, x0, y0, x1, y1), newW, newH);
      const fx = (x1 - x0) / newW;
      const fy = (y1 - y0) / newH;
      roi = new Roi((roi.cx - x0 + 0.5) / fx - 0.5, (roi.cy - y0 + 0.5) / fy - 0.5,
        roi.side / Math.sqrt(fx * fy), roi.angle);
      image = small;
    }
  }
  affinePatch(image, roi.toImage(0.5, size, flip), size, out, offset, 1 / 255);
}

function project(coords, count, roi, size, flip = false) {
  const m = roi.toImage(0, size, flip);
  const out = new Float64Array(count * 2);
  for (let i = 0; i < count; i++) {
    const u = coords[3 * i];
    const v = coords[3 * i + 1];
    out[2 * i] = m[0] * u + m[1] * v + m[2];
    out[2 * i + 1] = m[3] * u + m[4] * v + m[5];
  }
  return out;
}

/** An onnxruntime-web session from a session, a URL, or model bytes. */
export async function session(ort, model, options = {}) {
  if (model && typeof model.run === 'function') return model;
  return ort.InferenceSession.create(model, { executionProviders: ['wasm'], ...options });
}

/** The two networks: {face, iris} sessions, from sessions, URLs or bytes ({face_mesh, iris}). */
export async function loadNetworks(ort, models) {
  const face = await session(ort, models.face ?? models.face_mesh ?? models.faceMesh);
  const iris = await session(ort, models.iris);
  return { ort, face, iris };
}

/**
 * 468-point face landmarks of RGBA images ({width, height, data}); `detect` gives
 * {points: Float64Array(936), score} or null.
 */
export class FaceMesh {
  constructor(networks, { track = false, refineEyes = true } = {}) {
    this.networks = networks;
    this.track = track;
    this.refineEyes = refineEyes;
    this.roi = null;
    this.passes = 0; // network passes so far (face and eye passes)
  }

  reset() {
    this.roi = null;
  }

  async run(image, roi) {
    const { ort, face } = this.networks;
    const input = new Float32Array(3 * INPUT * INPUT);
    patch(image, roi, INPUT, false, input, 0);
    const feeds = { [face.inputNames[0]]: new ort.Tensor('float32', input, [1, 3, INPUT, INPUT]) };
    const out = await face.run(feeds);
    this.passes++;
    const coords = out[face.outputNames[0]].data;
    const flag = out[face.outputNames[1]].data[0];
    return { points: project(coords, POINTS, roi, INPUT), score: 1 / (1 + Math.exp(-flag)) };
  }

  /** `points` with the eyelids (2 x 16 points) of the iris network. */
  async refined(image, points) {
    const { ort, iris } = this.networks;
    const rois = [eyeRoi(points, ...EYE_CORNERS[0]), eyeRoi(points, ...EYE_CORNERS[1])];
    const flips = [false, true];
    const plane = 3 * EYE_INPUT * EYE_INPUT;
    const input = new Float32Array(2 * plane);
    for (let k = 0; k < 2; k++) patch(image, rois[k], EYE_INPUT, flips[k], input, k * plane);
    const feeds = {
      [iris.inputNames[0]]: new ort.Tensor('float32', input, [2, 3, EYE_INPUT, EYE_INPUT]),
    };
    const out = await iris.run(feeds);
    this.passes++;
    const contours = out[iris.outputNames[0]].data;
    const per = contours.length / 2;
    const result = Float64Array.from(points);
    for (let k = 0; k < 2; k++) {
      const lids = project(contours.subarray(k * per), 16, rois[k], EYE_INPUT, flips[k]);
      EYE_REFINED[k].forEach((i, q) => {
        result[2 * i] = lids[2 * q];
        result[2 * i + 1] = lids[2 * q + 1];
      });
    }
    return result;
  }

  /** The landmarks of the face in `image`, or null (see fomm.faces.mesh.FaceMesh.detect). */
  async detect(image) {
    let tracked = this.track && this.roi !== null;
    let roi = tracked ? this.roi : roiFull(image.width, image.height);
    let { points, score } = await this.run(image, roi);
    if (score < MIN_SCORE && tracked) {
      roi = roiFull(image.width, image.height);
      ({ points, score } = await this.run(image, roi));
      tracked = false;
    }
    if (score < MIN_SCORE) {
      this.roi = null;
      return null;
    }
    let next = roiFromPoints(points);
    for (let pass = 0; pass < (tracked ? 0 : MAX_REFINE_PASSES); pass++) {
      if (roi.closeTo(next)) break;
      const again = await this.run(image, next);
      if (again.score < MIN_SCORE) break;
      roi = next;
      points = again.points;
      score = again.score;
      next = roiFromPoints(points);
    }
    this.roi = this.track ? next : null;
    if (this.refineEyes) points = await this.refined(image, points);
    // FaceLandmarks holds float32 points
    return { points: Float64Array.from(Float32Array.from(points)), score };
  }
}
