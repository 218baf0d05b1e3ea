// ExpressionLayer in the browser: the driver's facial expression on each rendered frame, by
// design (fomm/expression/layer.py, line for line). Per face: the photo's landmarks once, the
// driving reference once, then one call a frame:
//
//   const layer = await ExpressionLayer.create(ort, {face: 'face-mesh.onnx',
//                                                    iris: 'iris-landmark.onnx'},
//                                              photoImageData, {region: 'all'});
//   const out = await layer.apply(resultImageData, drivingImageData);
//
// Images are ImageData (RGBA, any size, square crops with the photo's framing). One layer
// serves one stream: await each call before the next (the face trackers and filters keep state).

import * as eyes from './eyes.js';
import * as geometry from './geometry.js';
import { FaceMesh, GROUPS, loadNetworks } from './mesh.js';
import * as mouth from './mouth.js';
import { copyImage, resizeArea, sameImage } from './imaging.js';
import { OneEuro } from './smoothing.js';
import { warp } from './warp.js';

export const REGIONS = ['all', 'pose', 'expression', 'eyes', 'lips'];
export const SCALE_RANGE = [0, 2];
export const OFFSET_RANGE = [-1, 1];
export const DETECT_SIZE = 256;
export const HOLD = 5;
export const OFFSETS_FILTER = { minCutoff: 3.0, beta: 30.0, dCutoff: 5.0 };
export const RESULT_FILTER = { minCutoff: 3.0, beta: 10.0, dCutoff: 5.0 };
export const LID_REFRESH = 4;
export const LID_CLOSING = 0.9;
export const LID_BLEND = 0.5; // the driver's lids: this share of the way to the face network's
export const FOCUS_MARGIN = 0.2;
export const HEAD_KEEP_FACE = [0.5, 0.8];
const SPARSE = ['face_oval', 'left_brow', 'right_brow', 'nose'];
const CONTROL_GROUPS = ['face_oval', 'left_brow', 'right_brow', 'nose', 'stable',
  ...geometry.LIDS, ...geometry.LIPS];
const now = () => (globalThis.performance ? performance.now() : Date.now());

/** Checked options {region, scale, eyes, mouth, smile} (defaults filled in). */
export function checkOptions(options = {}) {
  const out = { region: 'all', scale: 1, eyes: 0, mouth: 0, smile: 0, ...options };
  if (!REGIONS.includes(out.region)) {
    throw new RangeError(`expression region ${out.region} is not one of ${REGIONS.join(', ')}`);
  }
  const check = (name, [lo, hi]) => {
    out[name] = Number(out[name]);
    if (!(out[name] >= lo && out[name] <= hi)) {
      throw new RangeError(`expression ${name} ${out[name]} is outside ${lo}..${hi}`);
    }
  };
  check('scale', SCALE_RANGE);
  for (const name of ['eyes', 'mouth', 'smile']) check(name, OFFSET_RANGE);
  return out;
}

/** Whether `region` renders on the FOMM result (all, pose) rather than on the photo. */
export function usesNetworks(region) {
  return region === 'all' || region === 'pose';
}

function rgba(image) {
  return { width: image.width, height: image.height, data: image.data };
}

function toImageData(image) {
  if (typeof ImageData === 'undefined') return image;
  return new ImageData(image.data, image.width, image.height);
}

function shrink(image) {
  const factor = Math.min(1, DETECT_SIZE / Math.max(image.width, image.height));
  if (factor >= 1) return { small: image, factor: 1 };
  const w = Math.max(1, Math.round(image.width * factor));
  const h = Math.max(1, Math.round(image.height * factor));
  return { small: resizeArea(image, w, h), factor };
}

function scaled(points, factor) {
  return Float64Array.from(Float32Array.from(points, (v) => v * factor));
}

// Smoothed landmarks moved by the similarity that takes their stable points onto the frame's own
// (unsmoothed): the smoothing's steadiness of the shape without its lag behind a moving head
// (region pose pastes the photo's mouth where the head is in this frame).
function posedLike(points, frame, stable) {
  const m = geometry.similarity(geometry.take(points, stable), geometry.take(frame, stable));
  return geometry.transform(m, points);
}

function eyeFrames(groups) {
  return ['left', 'right'].map((side) => {
    const upper = groups[`${side}_eye_upper`];
    const lower = groups[`${side}_eye_lower`];
    const lids = [...new Set([...upper, ...lower])].sort((a, b) => a - b);
    return { lids, ends: [upper[0], upper[upper.length - 1]] };
  });
}

// complex arithmetic in an eye's corner frame: 0 and 1 at its corners
function inEye(points, frame, lids, ends) {
  const [a, b] = ends;
  const ax = frame[2 * a];
  const ay = frame[2 * a + 1];
  let sx = frame[2 * b] - ax;
  let sy = frame[2 * b + 1] - ay;
  if (!(Math.hypot(sx, sy) > 1e-9)) {
    sx = 1;
    sy = 0;
  }
  const n2 = sx * sx + sy * sy;
  const local = (p, i) => {
    const px = p[2 * i] - ax;
    const py = p[2 * i + 1] - ay;
    return [(px * sx + py * sy) / n2, (py * sx - px * sy) / n2];
  };
  const out = new Float64Array(lids.length * 2);
  lids.forEach((i, k) => {
    const [u, v] = local(points, i);
    const [u0, v0] = points === frame ? [0, 0] : local(frame, i);
    out[2 * k] = u - u0;
    out[2 * k + 1] = v - v0;
  });
  return out;
}

function lidGaps(points, groups) {
  const dist = Math.max(geometry.faceAxes(points, groups).dist, 1e-6);
  return ['left', 'right'].map((side) => {
    const upper = groups[`${side}_eye_upper`];
    const lower = groups[`${side}_eye_lower`];
    let sum = 0;
    for (let k = 1; k < upper.length - 1; k++) {
      sum += Math.hypot(points[2 * upper[k]] - points[2 * lower[k]],
        points[2 * upper[k] + 1] - points[2 * lower[k] + 1]);
    }
    return sum / (upper.length - 2) / dist;
  });
}

function padded(points, groups, region) {
  const names = region === 'eyes' ? geometry.LIDS : geometry.LIPS;
  const part = geometry.take(points, geometry.concatIndices(groups, names));
  const { dist, ax, ay } = geometry.faceAxes(points, groups);
  const shifts = [[0, 0], [0.15, 0], [-0.15, 0], [0, 0.25], [0, -0.25]];
  const out = new Float64Array(part.length * shifts.length);
  shifts.forEach(([u, v], s) => {
    const dx = dist * (u * ax[0] + v * ay[0]);
    const dy = dist * (u * ax[1] + v * ay[1]);
    for (let i = 0; i < part.length; i += 2) {
      out[s * part.length + i] = part[i] + dx;
      out[s * part.length + i + 1] = part[i + 1] + dy;
    }
  });
  return out;
}

function stack(...parts) {
  const out = new Float64Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The expression layer of fomm (fomm.expression.ExpressionLayer) on ImageData. */
export class ExpressionLayer {
  /**
   * @param ort the onnxruntime-web module.
   * @param meshModels {face, iris}: InferenceSessions, URLs or model bytes (the files of
   *     fomm/web/mesh_export.py).
   * @param photoImageData the photo's face crop (ImageData, the framing of later results).
   * @param options {region, scale, eyes, mouth, smile}.
   * @returns the layer; rejects when the photo shows no face.
   */
  static async create(ort, meshModels, photoImageData, options = {}) {
    const networks = meshModels.networks ?? (await loadNetworks(ort, meshModels));
    const layer = new ExpressionLayer(networks, photoImageData, options);
    await layer.init();
    return layer;
  }

  constructor(networks, photo, options = {}) {
    this.networks = networks;
    this.options = options;
    this.meshPhoto = new FaceMesh(networks);
    this.meshDriving = new FaceMesh(networks, { track: true, refineEyes: false }); // LID_BLEND
    this.meshResult = new FaceMesh(networks, { track: true, refineEyes: false });
    this.photo = copyImage(rgba(photo));
    this.groups = GROUPS;
    this.timings = { mesh: 0, layer: 0 };
  }

  async init() {
    const found = await this.detect(this.photo, this.meshPhoto);
    if (found === null) {
      throw new Error('no face landmarks found on the photo for the expression layer');
    }
    this.photoPoints = found;
    this.photoSmall = null;
    const idx = new Set();
    for (const g of CONTROL_GROUPS) {
      const all = this.groups[g];
      const step = SPARSE.includes(g) ? 2 : 1;
      for (let k = 0; k < all.length; k += step) idx.add(all[k]);
    }
    this.controls = Int32Array.from([...idx].sort((a, b) => a - b));
    this.eyes = eyeFrames(this.groups);
    this.reset();
  }

  get options() {
    return this._options;
  }

  set options(value) {
    this._options = checkOptions(value);
  }

  /** Forget the reference, the smoothing and the held landmarks (live: retake). */
  reset() {
    this.reference = null;
    this.offsetFilter = new OneEuro(OFFSETS_FILTER);
    this.resultFilter = new OneEuro(RESULT_FILTER);
    this.heldOffsets = null;
    this.heldDriving = null;
    this.heldImage = null;
    this.offsetMisses = 0;
    this.heldResult = null;
    this.resultMisses = 0;
    this.resultRaw = this.photoPoints; // the last result's landmarks, unsmoothed
    this.lastResult = this.photo;
    this.lastPoints = this.photoPoints;
    this.lidFix = null;
    this.openGaps = null;
    this.sinceRefined = 0;
  }

  async detect(image, mesh) {
    const { small, factor } = shrink(image);
    const t = now();
    const found = await mesh.detect(small);
    this.timings.mesh += now() - t;
    if (found === null) return null;
    return factor < 1 ? scaled(found.points, 1 / factor) : found.points;
  }

  /**
   * The landmarks of a driving frame, for apply and setReference (`observed`): the layer's work
   * on the driving frame alone. Observe the driving frames in their order (they are tracked).
   * @returns {points: Float64Array | null}
   */
  async observe(drivingImageData) {
    const { small, factor } = shrink(rgba(drivingImageData));
    const t = now();
    const found = await this.meshDriving.detect(small);
    if (found === null) {
      this.timings.mesh += now() - t;
      return { points: null };
    }
    const raw = found.points;
    const points = Float64Array.from(Float32Array.from(await this.meshDriving.refined(small, raw)));
    this.timings.mesh += now() - t;
    for (const { lids } of this.eyes) {
      for (const i of lids) {
        for (let c = 0; c < 2; c += 1) {
          points[2 * i + c] += LID_BLEND * (raw[2 * i + c] - points[2 * i + c]);
        }
      }
    }
    return { points: factor < 1 ? points.map((v) => v / factor) : points };
  }

  /** Take `driving`'s expression as the photo's own; false if it shows no face. */
  async setReference(drivingImageData, observed = null) {
    const { points } = observed ?? (await this.observe(drivingImageData));
    if (points === null) return false;
    this.reference = points;
    this.offsetFilter.reset();
    this.heldOffsets = null;
    return true;
  }

  async driver(driving, observed) {
    const { points } = observed ?? (await this.observe(driving));
    if (points !== null && this.reference === null) this.reference = points;
    if (points === null) {
      this.offsetMisses += 1;
      if (this.heldOffsets === null || this.offsetMisses > HOLD) return null;
      return [this.heldOffsets, this.heldDriving, this.heldImage];
    }
    this.offsetMisses = 0;
    const offsets = this.offsetFilter.filter(
      geometry.expressionOffsets(points, this.reference, this.groups));
    this.heldOffsets = offsets;
    this.heldDriving = points;
    this.heldImage = copyImage(driving);
    return [offsets, points, this.heldImage];
  }

  async resultPoints(result) {
    if (sameImage(this.lastResult, result)) return this.lastPoints;
    const points = await this.resultLandmarks(result);
    this.resultRaw = points;
    if (points === null) {
      this.resultMisses += 1;
      if (this.heldResult === null || this.resultMisses > HOLD) return null;
      return this.heldResult;
    }
    this.resultMisses = 0;
    const dist = Math.max(geometry.faceAxes(points, this.groups).dist, 1e-6);
    const filtered = this.resultFilter.filter(points.map((v) => v / dist)).map((v) => v * dist);
    this.heldResult = filtered;
    this.lastResult = copyImage(result);
    this.lastPoints = filtered;
    return filtered;
  }

  async resultLandmarks(result) {
    const { small, factor } = shrink(result);
    let t = now();
    const found = await this.meshResult.detect(small);
    this.timings.mesh += now() - t;
    if (found === null) return null;
    const raw = found.points;
    const gaps = lidGaps(raw, this.groups);
    this.sinceRefined += 1;
    const closing = this.openGaps !== null && gaps.some((g, k) => g < LID_CLOSING * this.openGaps[k]);
    let points;
    if (this.lidFix === null || closing || this.sinceRefined >= LID_REFRESH) {
      t = now();
      points = Float64Array.from(Float32Array.from(await this.meshResult.refined(small, raw)));
      this.timings.mesh += now() - t;
      this.lidFix = this.eyes.map(({ lids, ends }) => inEye(points, raw, lids, ends));
      this.sinceRefined = 0;
      if (!closing) this.openGaps = gaps;
    } else {
      points = Float64Array.from(raw);
      this.eyes.forEach(({ lids, ends }, e) => {
        const fix = this.lidFix[e];
        const local = inEye(raw, raw, lids, ends);
        const ax = raw[2 * ends[0]];
        const ay = raw[2 * ends[0] + 1];
        const sx = raw[2 * ends[1]] - ax;
        const sy = raw[2 * ends[1] + 1] - ay;
        lids.forEach((i, k) => {
          const u = local[2 * k] + fix[2 * k];
          const v = local[2 * k + 1] + fix[2 * k + 1];
          points[2 * i] = ax + sx * u - sy * v;
          points[2 * i + 1] = ay + sx * v + sy * u;
        });
      });
    }
    return factor < 1 ? points.map((v) => v / factor) : points;
  }

  /** fomm.expression.ExpressionLayer.head_keep: how much of its own small motion each FOMM
   * keypoint of the photo keeps under region pose's head motion (1 on the upper face, 0 on the
   * mouth and jaw). keypoints: flat [x0, y0, x1, ...] in [-1, 1] of the photo crop. */
  headKeep(keypoints) {
    const { width: w, height: h } = this.photo;
    const points = this.photoPoints;
    const { dist, ay } = geometry.faceAxes(points, this.groups);
    const [lx, ly, rx, ry] = geometry.eyeCentres(points, this.groups);
    const ox = (lx + rx) / 2, oy = (ly + ry) / 2;
    const down = (x, y) => (x - ox) * ay[0] + (y - oy) * ay[1];
    let lip = Infinity;
    for (const i of this.groups.lips_outer_upper) {
      lip = Math.min(lip, down(points[2 * i], points[2 * i + 1]));
    }
    lip = Math.max(lip, 1e-6 * Math.max(dist, 1));
    const [low, high] = HEAD_KEEP_FACE;
    const out = new Float32Array(keypoints.length / 2);
    for (let k = 0; k < out.length; k += 1) {
      const x = (keypoints[2 * k] + 1) / 2 * (w - 1), y = (keypoints[2 * k + 1] + 1) / 2 * (h - 1);
      const t = Math.min(Math.max((down(x, y) / lip - low) / (high - low), 0), 1);
      out[k] = 1 - t * t * (3 - 2 * t);
    }
    return out;
  }

  photoAt(width, height) {
    const { width: w, height: h } = this.photo;
    if (height * 1.5 >= h) return [this.photo, this.photoPoints];
    if (this.photoSmall === null || this.photoSmall[0].width !== width ||
      this.photoSmall[0].height !== height) {
      const small = resizeArea(this.photo, width, height);
      const fx = width / w;
      const fy = height / h;
      this.photoSmall = [small, this.photoPoints.map((v, i) => v * (i % 2 ? fy : fx))];
    }
    return this.photoSmall;
  }

  /**
   * The rendered crop: `result` with the expression the options ask for (a new ImageData
   * shaped like `result`; `result`'s pixels where no face is found).
   * @param resultImageData the frame to render on: the FOMM result for regions all/pose, the
   *     photo crop itself for expression/eyes/lips.
   * @param drivingImageData the driving frame (framed crop, any size).
   * @param observed observe(drivingImageData) when it was observed already.
   */
  async apply(resultImageData, drivingImageData, observed = null) {
    this.timings = { mesh: 0, layer: 0 };
    const start = now();
    const out = await this.render(rgba(resultImageData), rgba(drivingImageData), observed);
    this.timings.layer = now() - start - this.timings.mesh;
    return toImageData(out);
  }

  async render(result, driving, observed) {
    const opts = this.options;
    const groups = this.groups;
    const drive = opts.region !== 'pose' && opts.scale > 0;
    const driver = drive ? await this.driver(driving, observed) : null;
    let src = await this.resultPoints(result);
    if (src === null || (drive && driver === null)) return copyImage(result);
    if (opts.region === 'pose' && this.resultRaw !== null) {
      src = posedLike(src, this.resultRaw, groups.stable);
    }
    const photo = this.photoPoints;
    const n = photo.length / 2;
    const face = geometry.sliderOffsets(photo, groups, opts.eyes, opts.mouth, opts.smile);
    let offsets = null;
    if (driver !== null) {
      offsets = driver[0];
      if (!usesNetworks(opts.region)) offsets = geometry.withoutPose(offsets, photo, groups);
      // a photo's closing eyes open while the driver's are open
      const open = eyes.opening(photo, groups, driver[1], this.reference);
      offsets = offsets.map((v, i) => v + open[i]);
      for (let i = 0; i < face.length; i++) face[i] += opts.scale * offsets[i];
    }
    const moving = geometry.regionMask(groups, n, opts.region);
    const pixels = geometry.toPixels(face, photo, groups);
    let wanted = photo.map((v, i) => v + moving[i >> 1] * pixels[i]);
    const clamped = geometry.clamp(wanted, groups, photo);
    wanted = wanted.map((v, i) => (moving[i >> 1] > 0 ? clamped[i] : photo[i]));
    const pose = geometry.similarity(geometry.take(photo, groups.stable),
      geometry.take(src, groups.stable));
    let target;
    if (opts.region === 'eyes' || opts.region === 'lips') {
      target = new Float64Array(src.length);
      for (let i = 0; i < src.length; i += 2) {
        const dx = wanted[i] - photo[i];
        const dy = wanted[i + 1] - photo[i + 1];
        target[i] = src[i] + dx * pose[0] + dy * pose[1];
        target[i + 1] = src[i + 1] + dx * pose[3] + dy * pose[4];
      }
    } else {
      target = geometry.transform(pose, wanted);
    }
    const idx = this.controls;
    const oval = groups.face_oval;
    const warped = eyes.keptOpen(src, target, groups);
    const outline = opts.region === 'eyes' || opts.region === 'lips'
      ? stack(padded(src, groups, opts.region), padded(target, groups, opts.region))
      : stack(geometry.take(src, oval), geometry.take(target, oval));
    const axes = geometry.faceAxes(target, groups);
    const dist = axes.dist;
    let focus = null;
    if (opts.region !== 'eyes') {
      let x0 = Infinity;
      let y0 = Infinity;
      let x1 = -Infinity;
      let y1 = -Infinity;
      for (const p of [src, target]) {
        for (const g of geometry.LIPS) {
          for (const i of groups[g]) {
            x0 = Math.min(x0, p[2 * i]);
            x1 = Math.max(x1, p[2 * i]);
            y0 = Math.min(y0, p[2 * i + 1]);
            y1 = Math.max(y1, p[2 * i + 1]);
          }
        }
      }
      const m = FOCUS_MARGIN * dist;
      focus = [x0 - m, y0 - m, x1 + m, y1 + m];
    }
    let out = warp(result, geometry.take(src, idx), geometry.take(warped, idx), outline,
      undefined, focus);
    if (driver !== null && opts.region !== 'lips') { // lids lifted past the frame's own
      out = eyes.fillEye(out, warped, src, groups, driver[2], driver[1]);
    }
    const origin = geometry.eyeMid(target, groups);
    const shut = eyes.shut(target, groups);
    for (const side of ['left', 'right']) {
      const upper = groups[`${side}_eye_upper`];
      let brow = groups[`${side}_brow`];
      if (brow.length >= 10) brow = brow.subarray(brow.length >> 1);
      out = eyes.closeLid(out, geometry.take(warped, upper), geometry.take(shut, upper), origin,
        axes, dist, geometry.take(target, brow));
    }
    if (opts.region === 'eyes') return out;
    const [source, sourcePoints] = driver === null ? [this.photo, photo] : [driver[2], driver[1]];
    let shown = src;
    if (driver === null && usesNetworks(opts.region)) {
      const [small, smallPoints] = this.photoAt(result.width, result.height);
      out = mouth.pasteMouth(out, target, groups, small, smallPoints, dist);
      shown = photo;
    }
    const up = groups.lips_inner_upper;
    const low = groups.lips_inner_lower;
    const targetGap = geometry.gap(target, up, low, groups);
    // a frame shows at most the photo's own mouth interior: it is drawn from the photo's
    // pixels, and the networks part the lips without the teeth or the dark between them
    const shownGap = Math.min(geometry.gap(shown, up, low, groups),
      geometry.gap(photo, up, low, groups));
    const strength = mouth.fillStrength(targetGap, shownGap);
    const share = mouth.sourceShare(targetGap, geometry.gap(sourcePoints, up, low, groups));
    return mouth.fillMouth(out, target, groups, source, sourcePoints, strength, dist, share,
      this.photoAt(result.width, result.height));
  }
}
