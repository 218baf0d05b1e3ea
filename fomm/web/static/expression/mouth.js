// The mouth's interior where a warp opens a mouth wider than the frame shows it, and a whole
// mouth laid on a frame (fomm/expression/mouth.py).

import { chromaStats, tint as tinted } from './colour.js';
import { faceAxes, take } from './geometry.js';
import {
  copyImage,
  fillPolygon,
  fillPolygonSoft,
  gaussianBlur,
  resizeLinear,
  sampleLinear,
} from './imaging.js';
import { distinct, thinPlate } from './warp.js';

export const MIN_OPEN = 0.03;
export const FULL_OPEN = 0.06;
export const FEATHER = 0.02;
export const FILL_GRID = 16;
export const CAVITY = 0.3;
export const PASTE_MARGIN = 0.12;
export const PASTE_RINGS = [0.12, 0.3];

const clip = (x, lo, hi) => (x < lo ? lo : x > hi ? hi : x);

/** The closed inner-lip contour: the upper inner lip, then the lower one back (flat xy). */
export function innerContour(points, groups) {
  const upper = Array.from(groups.lips_inner_upper);
  const lower = Array.from(groups.lips_inner_lower).reverse().slice(1, -1);
  return take(points, upper.concat(lower));
}

export function fillStrength(targetGap, frameGap) {
  if (targetGap <= MIN_OPEN) return 0;
  const opened = Math.min(1, (targetGap - MIN_OPEN) / (FULL_OPEN - MIN_OPEN));
  const wider = clip(2 * (1 - Math.max(frameGap, 0) / targetGap), 0, 1);
  return opened * wider;
}

export function sourceShare(targetGap, sourceGap) {
  if (targetGap <= 0) return 1;
  return clip((2 * sourceGap) / targetGap - 0.5, 0, 1);
}

function bounds(pts) {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (let i = 0; i < pts.length; i += 2) {
    x0 = Math.min(x0, pts[i]);
    x1 = Math.max(x1, pts[i]);
    y0 = Math.min(y0, pts[i + 1]);
    y1 = Math.max(y1, pts[i + 1]);
  }
  return [x0, y0, x1, y1];
}

/** The area around the mouth ([x0, y0, x1, y1]): the outer lips' box, doubled. */
function mouthBox(image, points, groups) {
  const lips = take(points, [...groups.lips_outer_upper, ...groups.lips_outer_lower]);
  const [mx0, my0, mx1, my1] = bounds(lips);
  const cx = (mx0 + mx1) / 2;
  const cy = (my0 + my1) / 2;
  const hx = Math.max(mx1 - mx0, 4);
  const hy = Math.max(my1 - my0, 4);
  const { width: w, height: h } = image;
  const x0 = clip(Math.floor(cx - hx), 0, w - 1);
  const y0 = clip(Math.floor(cy - hy), 0, h - 1);
  const x1 = Math.max(clip(Math.ceil(cx + hx), 1, w), x0 + 1);
  const y1 = Math.max(clip(Math.ceil(cy + hy), 1, h), y0 + 1);
  return [x0, y0, x1, y1];
}

function meanColour(image, points, groups) {
  const [x0, y0, x1, y1] = mouthBox(image, points, groups);
  const { width: w, data } = image;
  const sum = [0, 0, 0];
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const i = (y * w + x) * 4;
      sum[0] += data[i];
      sum[1] += data[i + 1];
      sum[2] += data[i + 2];
    }
  }
  const n = (x1 - x0) * (y1 - y0);
  return sum.map((s) => s / n + 1);
}

/** Chroma statistics of the lips and the skin around them (mouthBox less the inner lips). */
function mouthChroma(image, points, groups, gain = null) {
  const box = mouthBox(image, points, groups);
  const [x0, y0, x1, y1] = box;
  const local = innerContour(points, groups).map((v, i) => Math.round(v - (i % 2 ? y0 : x0)));
  return chromaStats(image, box, fillPolygon(local, x1 - x0, y1 - y0), gain);
}

function lipColour(image, points, groups) {
  const outer = take(points, [
    ...groups.lips_outer_upper,
    ...Array.from(groups.lips_outer_lower).reverse(),
  ]);
  const [mx0, my0, mx1, my1] = bounds(outer);
  const { width: w, height: h, data } = image;
  const x0 = Math.max(Math.floor(mx0), 0);
  const y0 = Math.max(Math.floor(my0), 0);
  const x1 = Math.min(Math.ceil(mx1) + 1, w);
  const y1 = Math.min(Math.ceil(my1) + 1, h);
  if (x1 <= x0 || y1 <= y0) return [80, 80, 80];
  const pw = x1 - x0;
  const ph = y1 - y0;
  const shift = (poly) => poly.map((v, i) => Math.round(v - (i % 2 ? y0 : x0)));
  const mask = fillPolygon(shift(outer), pw, ph);
  const hole = fillPolygon(shift(innerContour(points, groups)), pw, ph);
  const sum = [0, 0, 0];
  const all = [0, 0, 0];
  let n = 0;
  for (let y = 0; y < ph; y++) {
    for (let x = 0; x < pw; x++) {
      const i = ((y + y0) * w + x + x0) * 4;
      for (let c = 0; c < 3; c++) all[c] += data[i + c];
      if (mask[y * pw + x] && !hole[y * pw + x]) {
        for (let c = 0; c < 3; c++) sum[c] += data[i + c];
        n++;
      }
    }
  }
  return n ? sum.map((s) => s / n) : all.map((s) => s / (pw * ph));
}

/** `source` mapped onto `box` by the spline taking target controls to source ones (RGB floats). */
export function mappedBox(source, controlsT, controlsS, box) {
  const [x0, y0, x1, y1] = box;
  if (x1 - x0 < 3 || y1 - y0 < 3) return null;
  const bw = x1 - x0;
  const bh = y1 - y0;
  const side = Math.max(bw, bh);
  const gw = Math.min(FILL_GRID, bw);
  const gh = Math.min(FILL_GRID, bh);
  const grid = new Float64Array(gw * gh * 2);
  for (let j = 0; j < gh; j++) {
    for (let i = 0; i < gw; i++) {
      grid[2 * (j * gw + i)] = ((i + 0.5) * bw / gw - 0.5) / side;
      grid[2 * (j * gw + i) + 1] = ((j + 0.5) * bh / gh - 0.5) / side;
    }
  }
  const k = controlsT.length / 2;
  const centres = new Float64Array(k * 2);
  for (let i = 0; i < k; i++) {
    centres[2 * i] = (controlsT[2 * i] - x0) / side;
    centres[2 * i + 1] = (controlsT[2 * i + 1] - y0) / side;
  }
  const keep = distinct(centres, 4096);
  const c = take(centres, keep);
  const v = take(controlsS, keep).map((x) => x / side);
  const mapped = thinPlate(c, v, grid, 1e-4);
  if (mapped === null) return null;
  for (let i = 0; i < mapped.length; i++) {
    if (!Number.isFinite(mapped[i])) return null;
    mapped[i] *= side;
  }
  const maps = resizeLinear(Float32Array.from(mapped), gw, gh, 2, bw, bh);
  return sampleLinear(source, maps, bw * bh);
}

function colourGain(frame, target, source, sourcePoints, groups) {
  const a = meanColour(frame, target, groups);
  const b = meanColour(source, sourcePoints, groups);
  return a.map((x, c) => clip(x / b[c], 0.6, 1.6));
}

export function blend(frame, box, mask, image) {
  const [x0, y0, x1, y1] = box;
  const out = copyImage(frame);
  const bw = x1 - x0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const q = (y - y0) * bw + (x - x0);
      const i = (y * frame.width + x) * 4;
      const m = mask[q];
      for (let c = 0; c < 3; c++) {
        const r = frame.data[i + c];
        out.data[i + c] = Math.floor(clip(r + m * (image[3 * q + c] - r) + 0.5, 0, 255));
      }
    }
  }
  return out;
}

export function polygonMask(poly, box) {
  const [x0, y0, x1, y1] = box;
  const local = poly.map((v, i) => Math.round((v - (i % 2 ? y0 : x0)) * 8) / 8);
  return fillPolygonSoft(local, x1 - x0, y1 - y0);
}

/**
 * `frame` with the area inside the target inner lips showing `source`'s mouth interior, its
 * chroma that of the lips of `tint` ([image, points]: the photo's; `frame` at `target` if null).
 */
export function fillMouth(frame, target, groups, source, sourcePoints, strength, eyeDistance,
  share = 1, tint = null) {
  if (strength <= 0) return frame;
  const polyT = innerContour(target, groups);
  const polyS = innerContour(sourcePoints, groups);
  const { width: w, height: h } = frame;
  const feather = Math.max(0.7, FEATHER * eyeDistance);
  const pad = Math.ceil(3 * feather) + 1;
  const [px0, py0, px1, py1] = bounds(polyT);
  const box = [
    Math.max(Math.floor(px0) - pad, 0),
    Math.max(Math.floor(py0) - pad, 0),
    Math.min(Math.ceil(px1) + pad + 1, w),
    Math.min(Math.ceil(py1) + pad + 1, h),
  ];
  const inner = mappedBox(source, polyT, polyS, box);
  if (inner === null) return frame;
  const gain = colourGain(frame, target, source, sourcePoints, groups);
  const bw = box[2] - box[0];
  const bh = box[3] - box[1];
  const n = bw * bh;
  for (let q = 0; q < n; q++) for (let c = 0; c < 3; c++) inner[3 * q + c] *= gain[c];
  const [photo, photoPoints] = tint === null ? [frame, target] : tint;
  tinted(inner, mouthChroma(photo, photoPoints, groups),
    mouthChroma(source, sourcePoints, groups, gain));
  const shape = polygonMask(polyT, box);
  if (share < 1) {
    const depth = gaussianBlur(shape, bw, bh, 4 * feather);
    const colour = lipColour(frame, target, groups);
    for (let q = 0; q < n; q++) {
      for (let c = 0; c < 3; c++) {
        const cavity = CAVITY * colour[c] * (1.4 - 0.8 * depth[q]);
        inner[3 * q + c] = share * inner[3 * q + c] + (1 - share) * cavity;
      }
    }
  }
  const mask = gaussianBlur(shape, bw, bh, feather);
  for (let q = 0; q < n; q++) mask[q] *= strength;
  return blend(frame, box, mask, inner);
}

function ring(points, centre, margin) {
  const out = new Float64Array(points.length);
  for (let i = 0; i < points.length; i += 2) {
    const ax = points[i] - centre[0];
    const ay = points[i + 1] - centre[1];
    const norm = Math.max(Math.hypot(ax, ay), 1e-6);
    out[i] = centre[0] + ax * (1 + margin / norm);
    out[i + 1] = centre[1] + ay * (1 + margin / norm);
  }
  return out;
}

function mean(points) {
  let x = 0;
  let y = 0;
  for (let i = 0; i < points.length; i += 2) {
    x += points[i];
    y += points[i + 1];
  }
  return [(2 * x) / points.length, (2 * y) / points.length];
}

function concat(parts) {
  const out = new Float64Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** `frame` with `source`'s lips and mouth (and a margin of skin) laid on the target lips. */
export function pasteMouth(frame, target, groups, source, sourcePoints, eyeDistance) {
  const names = ['lips_outer_upper', 'lips_outer_lower', 'lips_inner_upper', 'lips_inner_lower'];
  const lips = [...new Set(names.flatMap((n) => Array.from(groups[n])))].sort((a, b) => a - b);
  const outer = [
    ...groups.lips_outer_upper,
    ...Array.from(groups.lips_outer_lower).reverse().slice(1, -1),
  ];
  const lipsT = take(target, lips);
  const lipsS = take(sourcePoints, lips);
  const centreT = mean(lipsT);
  const centreS = mean(lipsS);
  const ratio = faceAxes(sourcePoints, groups).dist / Math.max(eyeDistance, 1e-6);
  const outerT = take(target, outer);
  const outerS = take(sourcePoints, outer);
  const controlsT = [lipsT];
  const controlsS = [lipsS];
  for (const margin of PASTE_RINGS) {
    const m = margin * eyeDistance;
    controlsT.push(ring(outerT, centreT, m));
    controlsS.push(ring(outerS, centreS, m * ratio));
  }
  const edge = ring(outerT, centreT, PASTE_MARGIN * eyeDistance);
  const feather = Math.max(0.7, FEATHER * eyeDistance);
  const { width: w, height: h } = frame;
  const [rx0, ry0, rx1, ry1] = bounds(concat([edge, controlsT[controlsT.length - 1]]));
  const box = [
    Math.max(Math.floor(rx0) - 1, 0),
    Math.max(Math.floor(ry0) - 1, 0),
    Math.min(Math.ceil(rx1) + 2, w),
    Math.min(Math.ceil(ry1) + 2, h),
  ];
  const pasted = mappedBox(source, concat(controlsT), concat(controlsS), box);
  if (pasted === null) return frame;
  const gain = colourGain(frame, target, source, sourcePoints, groups);
  const bw = box[2] - box[0];
  const bh = box[3] - box[1];
  for (let q = 0; q < bw * bh; q++) for (let c = 0; c < 3; c++) pasted[3 * q + c] *= gain[c];
  const shape = polygonMask(ring(outerT, centreT, 0.5 * PASTE_MARGIN * eyeDistance), box);
  const mask = gaussianBlur(shape, bw, bh, Math.max(feather, 0.25 * PASTE_MARGIN * eyeDistance));
  return blend(frame, box, mask, pasted);
}
