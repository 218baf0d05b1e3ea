// Closing eyelids (fomm/expression/eyes.py): the upper lid slides down over the eye, the lid
// skin above it following; the face warp only opens eyes (keptOpen), closeLid only closes them.

import {
  MIN_GAP,
  eyeMid,
  faceAxes,
  faceCoords,
  fromFace,
  gap,
  interp,
  similarity,
  sortedCurve,
  take,
  toFace,
  transform,
} from './geometry.js';
import { chromaStats as boxChroma, tint } from './colour.js';
import { gaussianBlur, sampleLinear } from './imaging.js';
import { blend, mappedBox, polygonMask } from './mouth.js';

export const SHUT_OVERLAP = 0.015;
export const BAND = 0.11;
export const LASH = 0.025;
export const BROW_SHARE = 0.5;
export const PLAIN_SHARE = 0.8;
export const LIT = 75;
export const INSET = 0.012;
export const OPEN_GAP = 0.075;
export const LASH_FULL = 0.04;
export const LASH_DARK = 0.85;
export const LASH_WIDTH = 0.04;
export const FILL_FROM = 0.01;
export const FILL_FULL = 0.025;
export const TINT_PAD = 0.4;

function curveOf(face) {
  return sortedCurve(face, Int32Array.from({ length: face.length / 2 }, (_, i) => i));
}

function percentile(values, q) {
  const sorted = Float64Array.from(values).sort();
  const pos = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * `image` (RGBA, changed in place and returned) with one upper lid slid down from `lid` to
 * `wanted` (flat xy, corner to corner); origin [x, y], axes from faceAxes, brow flat xy or null.
 */
export function closeLid(image, lid, wanted, origin, axes, eyeDistance, brow = null) {
  const lidF = toFace(lid, origin, axes, eyeDistance);
  const wantF = toFace(wanted, origin, axes, eyeDistance);
  const k = lidF.length / 2;
  let drop = -Infinity;
  let uMin = Infinity;
  let uMax = -Infinity;
  let lidTop = Infinity;
  let wantLow = -Infinity;
  for (let i = 0; i < k; i++) {
    drop = Math.max(drop, wantF[2 * i + 1] - lidF[2 * i + 1]);
    uMin = Math.min(uMin, lidF[2 * i]);
    uMax = Math.max(uMax, lidF[2 * i]);
    lidTop = Math.min(lidTop, lidF[2 * i + 1]);
    wantLow = Math.max(wantLow, wantF[2 * i + 1]);
  }
  if (drop * eyeDistance < 0.5) return image;
  const { width: w, height: h } = image;
  const tail = 3 * Math.max(LASH_WIDTH, 0.6 / eyeDistance); // the lashes' line fades out below
  const corners = fromFace(
    Float64Array.of(uMin, lidTop - BAND, uMax, wantLow + tail),
    origin,
    axes,
    eyeDistance,
  );
  let bx0 = Infinity;
  let by0 = Infinity;
  let bx1 = -Infinity;
  let by1 = -Infinity;
  for (const arr of [lid, wanted, corners]) {
    for (let i = 0; i < arr.length; i += 2) {
      bx0 = Math.min(bx0, arr[i]);
      bx1 = Math.max(bx1, arr[i]);
      by0 = Math.min(by0, arr[i + 1]);
      by1 = Math.max(by1, arr[i + 1]);
    }
  }
  const x0 = Math.max(Math.floor(bx0) - 2, 0);
  const y0 = Math.max(Math.floor(by0) - 2, 0);
  const x1 = Math.min(Math.ceil(bx1) + 3, w);
  const y1 = Math.min(Math.ceil(by1) + 3, h);
  if (x1 - x0 < 2 || y1 - y0 < 2) return image;
  const [lu, lv] = curveOf(lidF);
  const [wu, wv] = curveOf(wantF);
  let bu = null;
  let bv = null;
  if (brow) [bu, bv] = curveOf(toFace(brow, origin, axes, eyeDistance));
  const bw = x1 - x0;
  const n = bw * (y1 - y0);
  const map = new Float32Array(n * 2);
  const V = new Float64Array(n);
  const U = new Float64Array(n);
  const lidRaw = new Float64Array(n);
  const inside = new Uint8Array(n);
  const lidV = new Float64Array(n);
  const wantV = new Float64Array(n);
  const topV = new Float64Array(n);
  const bandV = new Float64Array(n);
  const plainV = new Float64Array(n);
  const [ax0, ax1] = axes.ax;
  const [ay0, ay1] = axes.ay;
  let anySkin = false;
  const skinMask = new Uint8Array(n);
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      const q = (y - y0) * bw + (x - x0);
      const dx = x - origin[0];
      const dy = y - origin[1];
      const u = (dx * ax0 + dy * ax1) / eyeDistance;
      const v = (dx * ay0 + dy * ay1) / eyeDistance;
      const ins = u > uMin && u < uMax;
      let lv0 = interp(u, lu, lv);
      lidRaw[q] = lv0;
      const want = Math.max(interp(u, wu, wv), lv0);
      lv0 -= Math.min(INSET, want - lv0);
      let top = lv0 - BAND;
      let band = BAND;
      let plain = lv0 - 1.5 * BAND;
      if (bu) {
        const browV = interp(u, bu, bv);
        top = Math.max(top, lv0 - BROW_SHARE * Math.max(lv0 - browV, 0));
        top = Math.min(top, lv0 - 2 * LASH);
        band = lv0 - top;
        plain = lv0 - PLAIN_SHARE * Math.max(lv0 - browV, 2 * LASH);
      }
      const edge = want - LASH;
      // to the power of the stretch (1 to 2): the identity where the lid stays
      const power = Math.min(Math.max((edge - top) / Math.max(band - LASH, 1e-6), 1), 2);
      const t = Math.min(Math.max((v - top) / Math.max(edge - top, 1e-6), 0), 1);
      const skin = top + t ** power * (band - LASH);
      const stretch = v > edge ? v - (want - lv0) : skin;
      const covered = ins && v > top && v <= want;
      const vSrc = covered ? stretch : v;
      map[2 * q] = origin[0] + eyeDistance * (u * ax0 + vSrc * ay0);
      map[2 * q + 1] = origin[1] + eyeDistance * (u * ax1 + vSrc * ay1);
      V[q] = v;
      U[q] = u;
      inside[q] = ins ? 1 : 0;
      lidV[q] = lv0;
      wantV[q] = want;
      topV[q] = top;
      bandV[q] = band;
      plainV[q] = plain;
      if (ins && v > plain && v < lv0 - 0.3 * (lv0 - plain)) {
        skinMask[q] = 1;
        anySkin = true;
      }
    }
  }
  if (!anySkin) return image;
  const moved = sampleLinear(image, map, n);
  const data = image.data;
  const light = [];
  const skinRgb = [];
  for (let q = 0; q < n; q++) {
    if (!skinMask[q]) continue;
    const i = ((Math.floor(q / bw) + y0) * w + (q % bw) + x0) * 4;
    light.push(data[i] + data[i + 1] + data[i + 2]);
    skinRgb.push(i);
  }
  const lit = percentile(light, LIT);
  const flat = [0, 0, 0];
  let count = 0;
  for (let s = 0; s < light.length; s++) {
    if (light[s] < lit) continue;
    for (let c = 0; c < 3; c++) flat[c] += data[skinRgb[s] + c];
    count++;
  }
  for (let c = 0; c < 3; c++) flat[c] /= count;
  // the lashes along the closing lid's edge: a dark line, darker the further the lid came
  const shade = [];
  for (let q = 0; q < n; q++) {
    if (!inside[q] || !(V[q] > lidV[q]) || !(V[q] < lidV[q] + 2 * LASH)) continue;
    const i = ((Math.floor(q / bw) + y0) * w + (q % bw) + x0) * 4;
    shade.push(i);
  }
  let dark = null;
  if (shade.length) {
    const sums = shade.map((i) => data[i] + data[i + 1] + data[i + 2]);
    const limit = percentile(sums, 20);
    dark = [0, 0, 0];
    let count = 0;
    shade.forEach((i, s) => {
      if (sums[s] > limit) return;
      for (let c = 0; c < 3; c++) dark[c] += data[i + c];
      count++;
    });
    for (let c = 0; c < 3; c++) dark[c] /= count;
  }
  const span = Math.max(uMax - uMin, 1e-6);
  const sigma = Math.max(0.6, LASH_WIDTH * eyeDistance) / eyeDistance;
  const out = new Uint8ClampedArray((y1 - y0) * bw * 3);
  for (let q = 0; q < n; q++) {
    const i = ((Math.floor(q / bw) + y0) * w + (q % bw) + x0) * 4;
    const v = V[q];
    const edge = wantV[q] - LASH;
    let texture = Math.min(
      Math.max((2.0 * (bandV[q] - LASH)) / Math.max(edge - topV[q], 1e-6), 0.5),
      1.0,
    );
    if (v > edge) texture = 1.0;
    let alpha = Math.min(Math.max((wantV[q] - v) * eyeDistance + 0.5, 0), 1) * inside[q];
    if (!(v > topV[q])) alpha = 0;
    let lash = 0;
    if (dark && inside[q]) {
      const along = Math.min(Math.max((U[q] - uMin) / span, 0), 1);
      const line = Math.exp(-0.5 * ((v - (wantV[q] - 0.3 * LASH)) / sigma) ** 2);
      lash = LASH_DARK * Math.min(Math.max((wantV[q] - lidRaw[q]) / LASH_FULL, 0), 1) *
        Math.sqrt(Math.sin(Math.PI * along)) * line;
    }
    for (let c = 0; c < 3; c++) {
      const m = texture * moved[3 * q + c] + (1 - texture) * flat[c];
      const b = data[i + c];
      let value = b + alpha * (m - b);
      if (lash) value += lash * (dark[c] - value);
      out[3 * q + c] = Math.floor(Math.min(Math.max(value + 0.5, 0), 255));
    }
  }
  for (let q = 0; q < n; q++) {
    const i = ((Math.floor(q / bw) + y0) * w + (q % bw) + x0) * 4;
    data[i] = out[3 * q];
    data[i + 1] = out[3 * q + 1];
    data[i + 2] = out[3 * q + 2];
  }
  return image;
}

function interior(groups, name) {
  const idx = groups[name];
  return idx.subarray(1, idx.length - 1);
}

/** `target` with each closing upper lid left where it is in `src` (unless it goes up). */
export function keptOpen(src, target, groups) {
  const stable = groups.stable;
  const axes = faceAxes(target, groups);
  const origin = eyeMid(target, groups);
  const tFace = toFace(target, origin, axes, axes.dist);
  const moved = transform(similarity(take(src, stable), take(target, stable)), src);
  const sFace = toFace(moved, origin, axes, axes.dist);
  const out = Float64Array.from(tFace);
  for (const side of ['left', 'right']) {
    const lower = groups[`${side}_eye_lower`];
    const [sx, sy] = sortedCurve(sFace, lower);
    const [tx, ty] = sortedCurve(tFace, lower);
    for (const i of interior(groups, `${side}_eye_upper`)) {
      const sGap = interp(sFace[2 * i], sx, sy) - sFace[2 * i + 1];
      const tGap = interp(tFace[2 * i], tx, ty) - tFace[2 * i + 1];
      if (tGap < sGap) out[2 * i + 1] = Math.min(sFace[2 * i + 1], tFace[2 * i + 1]);
    }
  }
  return fromFace(out, origin, axes, axes.dist);
}

/** `target` with each upper lid that (nearly) meets its lower lid slid just past it. */
export function shut(target, groups) {
  const axes = faceAxes(target, groups);
  const origin = eyeMid(target, groups);
  const face = toFace(target, origin, axes, axes.dist);
  for (const side of ['left', 'right']) {
    const [lx, ly] = sortedCurve(face, groups[`${side}_eye_lower`]);
    const upper = interior(groups, `${side}_eye_upper`);
    const lows = Array.from(upper, (i) => interp(face[2 * i], lx, ly));
    upper.forEach((i, k) => {
      if (lows[k] - face[2 * i + 1] < 2 * MIN_GAP) face[2 * i + 1] = lows[k] + SHUT_OVERLAP;
    });
  }
  return fromFace(face, origin, axes, axes.dist);
}

const clip = (x, lo, hi) => (x < lo ? lo : x > hi ? hi : x);

/** Offsets (face units, flat 2N) that open a photo's closing eyes while the driver's are open. */
export function opening(photo, groups, driving, reference) {
  const out = new Float64Array(photo.length);
  const face = faceCoords(photo, groups);
  for (const side of ['left', 'right']) {
    const upper = groups[`${side}_eye_upper`];
    const lower = groups[`${side}_eye_lower`];
    const deficit = OPEN_GAP - gap(photo, upper, lower, groups);
    if (deficit <= 0 || upper.length < 3) continue;
    const ratio = gap(driving, upper, lower, groups) /
      Math.max(gap(reference, upper, lower, groups), 1e-6);
    const n = upper.length;
    const x0 = face[2 * upper[0]];
    const span = face[2 * upper[n - 1]] - x0;
    const weight = [];
    for (let k = 1; k < n - 1; k++) {
      const t = Math.abs(span) > 1e-9 ? clip((face[2 * upper[k]] - x0) / span, 0, 1) : 0;
      weight.push(Math.sin(Math.PI * t));
    }
    const mean = Math.max(weight.reduce((a, b) => a + b, 0) / weight.length, 1e-6);
    const lift = deficit * clip(ratio, 0, 1) ** 2;
    weight.forEach((w, k) => (out[2 * upper[k + 1] + 1] -= (lift * w) / mean));
  }
  return out;
}

/** The closed contour of one eye (flat xy): its upper lid, then its lower lid back. */
export function eyeContour(points, groups, side) {
  const upper = Array.from(groups[`${side}_eye_upper`]);
  const lower = Array.from(groups[`${side}_eye_lower`]).reverse().slice(1, -1);
  return take(points, upper.concat(lower));
}

function skinColour(image, contour, dist) {
  const { width: w, height: h, data } = image;
  let cx0 = Infinity;
  let cx1 = -Infinity;
  let cy1 = -Infinity;
  for (let i = 0; i < contour.length; i += 2) {
    cx0 = Math.min(cx0, contour[i]);
    cx1 = Math.max(cx1, contour[i]);
    cy1 = Math.max(cy1, contour[i + 1]);
  }
  const top = Math.ceil(cy1) + 0.05 * dist;
  const x0 = Math.trunc(clip(Math.floor(cx0), 0, w - 1));
  const x1 = Math.trunc(clip(Math.ceil(cx1) + 1, 1, w));
  const y0 = Math.trunc(clip(top, 0, h - 1));
  const y1 = Math.trunc(clip(top + Math.max(0.15 * dist, 2), 1, h));
  const xe = Math.max(x1, x0 + 1);
  const ye = Math.max(y1, y0 + 1);
  const sum = [0, 0, 0];
  for (let y = y0; y < ye; y++) {
    for (let x = x0; x < xe; x++) {
      const i = (y * w + x) * 4;
      for (let c = 0; c < 3; c++) sum[c] += data[i + c];
    }
  }
  const n = (xe - x0) * (ye - y0);
  return sum.map((v) => v / n + 1);
}

/** Mean and spread ([[meanCb, meanCr], [stdCb, stdCr]]) of the chroma around an eye. */
function chromaStats(image, contour, dist) {
  const { width: w, height: h } = image;
  let cx0 = Infinity;
  let cy0 = Infinity;
  let cx1 = -Infinity;
  let cy1 = -Infinity;
  for (let i = 0; i < contour.length; i += 2) {
    cx0 = Math.min(cx0, contour[i]);
    cx1 = Math.max(cx1, contour[i]);
    cy0 = Math.min(cy0, contour[i + 1]);
    cy1 = Math.max(cy1, contour[i + 1]);
  }
  const pad = TINT_PAD * dist;
  const x0 = Math.trunc(clip(Math.floor(cx0 - pad), 0, w - 1));
  const y0 = Math.trunc(clip(Math.floor(cy0 - pad), 0, h - 1));
  const x1 = Math.trunc(clip(Math.ceil(cx1 + pad) + 1, x0 + 1, w));
  const y1 = Math.trunc(clip(Math.ceil(cy1 + pad) + 1, y0 + 1, h));
  return boxChroma(image, [x0, y0, x1, y1]);
}

/**
 * `frame` with each eye the warp opened wider than the frame showed it (`before`: its
 * landmarks before the warp) showing the driver's eye (`source`, landmarks `sourcePoints`)
 * inside its lids; `frame` itself when nothing opened.
 */
export function fillEye(frame, target, before, groups, source, sourcePoints) {
  const dist = faceAxes(target, groups).dist;
  let out = frame;
  for (const side of ['left', 'right']) {
    const upper = groups[`${side}_eye_upper`];
    const lower = groups[`${side}_eye_lower`];
    const targetGap = gap(target, upper, lower, groups);
    const wider = targetGap - gap(before, upper, lower, groups);
    const shown = gap(sourcePoints, upper, lower, groups);
    let strength = clip((wider - FILL_FROM) / (FILL_FULL - FILL_FROM), 0, 1);
    strength *= clip(shown / Math.max(targetGap, 1e-6), 0, 1);
    if (strength <= 0) continue;
    const polyT = eyeContour(target, groups, side);
    const polyS = eyeContour(sourcePoints, groups, side);
    const { width: w, height: h } = out;
    const pad = Math.max(2, Math.ceil(0.05 * dist));
    let bx0 = Infinity;
    let by0 = Infinity;
    let bx1 = -Infinity;
    let by1 = -Infinity;
    for (let i = 0; i < polyT.length; i += 2) {
      bx0 = Math.min(bx0, polyT[i]);
      bx1 = Math.max(bx1, polyT[i]);
      by0 = Math.min(by0, polyT[i + 1]);
      by1 = Math.max(by1, polyT[i + 1]);
    }
    const box = [
      Math.max(Math.floor(bx0) - pad, 0),
      Math.max(Math.floor(by0) - pad, 0),
      Math.min(Math.ceil(bx1) + pad + 1, w),
      Math.min(Math.ceil(by1) + pad + 1, h),
    ];
    const inside = mappedBox(source, polyT, polyS, box);
    if (inside === null) continue;
    const sDist = faceAxes(sourcePoints, groups).dist;
    const a = skinColour(out, polyT, dist);
    const b = skinColour(source, polyS, sDist);
    const gain = a.map((v, c) => clip(v / b[c], 0.7, 1.4));
    const bw = box[2] - box[0];
    const bh = box[3] - box[1];
    for (let q = 0; q < bw * bh; q++) for (let c = 0; c < 3; c++) inside[3 * q + c] *= gain[c];
    tint(inside, chromaStats(out, polyT, dist), chromaStats(source, polyS, sDist));
    const mask = gaussianBlur(polygonMask(polyT, box), bw, bh, Math.max(0.7, 0.015 * dist));
    for (let q = 0; q < mask.length; q++) mask[q] *= strength;
    out = blend(out, box, mask, inside);
  }
  return out;
}
