// A smooth landmark-driven warp of the face, confined to it (fomm/expression/warp.py): a
// thin-plate spline backward map through the control points, pinned to zero on the expanded
// face outline and faded to zero inside it, evaluated on a coarse grid over the face's box (and
// a finer one over a focus box), resized and sampled bicubically.

import {
  convexHull,
  copyImage,
  distanceTransform,
  fillPolygon,
  remapCubic,
  resizeLinear,
} from './imaging.js';

export const GRID = 28;
export const EXPAND = 1.3;
export const FOCUS_GRID = 16;
export const ANCHORS = 24;
export const SMOOTHING = 1e-5;

/** The convex hull of `outline` (flat xy) scaled by `factor` about its vertices' mean. */
export function expandedOutline(outline, factor = EXPAND) {
  const hull = convexHull(Float32Array.from(outline));
  const n = hull.length / 2;
  let cx = 0;
  let cy = 0;
  for (let i = 0; i < n; i++) {
    cx += hull[2 * i];
    cy += hull[2 * i + 1];
  }
  cx /= n;
  cy /= n;
  for (let i = 0; i < n; i++) {
    hull[2 * i] = cx + factor * (hull[2 * i] - cx);
    hull[2 * i + 1] = cy + factor * (hull[2 * i + 1] - cy);
  }
  return hull;
}

function kernel(d2) {
  return 0.5 * d2 * Math.log(Math.max(d2, 1e-20));
}

/** Solve A x = B in place (A n x n row-major, B n x m), partial pivoting; false if singular. */
function solve(a, b, n, m) {
  for (let col = 0; col < n; col++) {
    let piv = col;
    let best = Math.abs(a[col * n + col]);
    for (let r = col + 1; r < n; r++) {
      const v = Math.abs(a[r * n + col]);
      if (v > best) {
        best = v;
        piv = r;
      }
    }
    if (!(best > 1e-14)) return false;
    if (piv !== col) {
      for (let c = 0; c < n; c++) {
        const t = a[col * n + c];
        a[col * n + c] = a[piv * n + c];
        a[piv * n + c] = t;
      }
      for (let c = 0; c < m; c++) {
        const t = b[col * m + c];
        b[col * m + c] = b[piv * m + c];
        b[piv * m + c] = t;
      }
    }
    const d = a[col * n + col];
    for (let r = col + 1; r < n; r++) {
      const f = a[r * n + col] / d;
      if (f === 0) continue;
      const ro = r * n;
      const co = col * n;
      for (let c = col; c < n; c++) a[ro + c] -= f * a[co + c];
      for (let c = 0; c < m; c++) b[r * m + c] -= f * b[col * m + c];
    }
  }
  for (let r = n - 1; r >= 0; r--) {
    for (let c = 0; c < m; c++) {
      let s = b[r * m + c];
      for (let k = r + 1; k < n; k++) s -= a[r * n + k] * b[k * m + c];
      b[r * m + c] = s / a[r * n + r];
    }
  }
  return true;
}

/**
 * The spline's weights (k x 2, then the affine part 3 x 2) for kernel matrix `kmat` (k x k, the
 * smoothing on its diagonal), centres and values, by the null-space method: w = Z c with Z the
 * null space of P^T (P = [1 x y], three Householder reflectors), Z^T K Z c = Z^T y by Cholesky
 * (Z^T K Z is positive definite for the thin-plate kernel), then R a = Q1^T (y - K w). Null when
 * the factorisation fails (nearly coincident centres).
 */
function nullSpaceSolve(kmat, centres, values, k) {
  if (k < 4) return null;
  const vs = [];
  const taus = [];
  const p = new Float64Array(k * 3); // P, reduced to R in place
  for (let i = 0; i < k; i++) {
    p[3 * i] = 1;
    p[3 * i + 1] = centres[2 * i];
    p[3 * i + 2] = centres[2 * i + 1];
  }
  for (let j = 0; j < 3; j++) {
    let norm = 0;
    for (let i = j; i < k; i++) norm += p[3 * i + j] ** 2;
    norm = Math.sqrt(norm);
    if (!(norm > 1e-12)) return null;
    const alpha = p[3 * j + j] > 0 ? -norm : norm;
    const v = new Float64Array(k);
    for (let i = j; i < k; i++) v[i] = p[3 * i + j];
    v[j] -= alpha;
    let vv = 0;
    for (let i = j; i < k; i++) vv += v[i] * v[i];
    const tau = 2 / vv;
    for (let c = j; c < 3; c++) {
      let d = 0;
      for (let i = j; i < k; i++) d += v[i] * p[3 * i + c];
      d *= tau;
      for (let i = j; i < k; i++) p[3 * i + c] -= d * v[i];
    }
    vs.push(v);
    taus.push(tau);
  }
  // A = Q^T K Q, one reflector at a time from both sides: A <- H A H
  const m = Float64Array.from(kmat);
  const u = new Float64Array(k);
  for (let j = 0; j < 3; j++) {
    const v = vs[j];
    const tau = taus[j];
    for (let r = 0; r < k; r++) {
      let d = 0;
      const ro = r * k;
      for (let i = j; i < k; i++) d += m[ro + i] * v[i];
      u[r] = tau * d;
    }
    let vu = 0;
    for (let i = j; i < k; i++) vu += v[i] * u[i];
    const half = 0.5 * tau * vu;
    for (let r = 0; r < k; r++) u[r] -= half * v[r];
    for (let r = 0; r < k; r++) {
      const ro = r * k;
      const ur = u[r];
      const vr = v[r];
      for (let c = 0; c < k; c++) m[ro + c] -= ur * v[c] + vr * u[c];
    }
  }
  // Q^T y
  const qy = Float64Array.from(values);
  const applyT = (vec, j) => {
    const v = vs[j];
    for (let col = 0; col < 2; col++) {
      let d = 0;
      for (let i = j; i < k; i++) d += v[i] * vec[2 * i + col];
      d *= taus[j];
      for (let i = j; i < k; i++) vec[2 * i + col] -= d * v[i];
    }
  };
  for (let j = 0; j < 3; j++) applyT(qy, j);
  // Cholesky of the trailing block (rows, columns 3..k-1), in place (lower)
  const n = k - 3;
  const l = new Float64Array(n * n);
  for (let r = 0; r < n; r++) {
    const mr = (r + 3) * k + 3;
    const lr = r * n;
    for (let c = 0; c <= r; c++) {
      const lc = c * n;
      let sum = m[mr + c];
      for (let t = 0; t < c; t++) sum -= l[lr + t] * l[lc + t];
      if (c === r) {
        if (!(sum > 0)) return null;
        l[lr + r] = Math.sqrt(sum);
      } else {
        l[lr + c] = sum / l[lc + c];
      }
    }
  }
  // c = L^-T L^-1 (Q^T y)[3:]
  const cvec = new Float64Array(k * 2); // Q^T w: zeros in the first three rows
  for (let col = 0; col < 2; col++) {
    const z = new Float64Array(n);
    for (let r = 0; r < n; r++) {
      let sum = qy[2 * (r + 3) + col];
      for (let t = 0; t < r; t++) sum -= l[r * n + t] * z[t];
      z[r] = sum / l[r * n + r];
    }
    for (let r = n - 1; r >= 0; r--) {
      let sum = z[r];
      for (let t = r + 1; t < n; t++) sum -= l[t * n + r] * z[t];
      z[r] = sum / l[r * n + r];
    }
    for (let r = 0; r < n; r++) cvec[2 * (r + 3) + col] = z[r];
  }
  // w = Q (Q^T w)
  for (let j = 2; j >= 0; j--) applyT(cvec, j); // H_j is symmetric: H_j = H_j^T
  const w = cvec;
  // the affine part: R a = (Q^T (y - K w))[:3]
  const rest = Float64Array.from(values);
  for (let r = 0; r < k; r++) {
    const ro = r * k;
    let s0 = 0;
    let s1 = 0;
    for (let c = 0; c < k; c++) {
      s0 += kmat[ro + c] * w[2 * c];
      s1 += kmat[ro + c] * w[2 * c + 1];
    }
    rest[2 * r] -= s0;
    rest[2 * r + 1] -= s1;
  }
  for (let j = 0; j < 3; j++) applyT(rest, j);
  const out = new Float64Array((k + 3) * 2);
  out.set(w);
  for (let col = 0; col < 2; col++) {
    const a = [0, 0, 0];
    for (let r = 2; r >= 0; r--) {
      let sum = rest[2 * r + col];
      for (let c = r + 1; c < 3; c++) sum -= p[3 * r + c] * a[c];
      a[r] = sum / p[3 * r + r];
    }
    for (let r = 0; r < 3; r++) out[2 * (k + r) + col] = a[r];
  }
  return out;
}

/**
 * The thin-plate spline through `values` (k x 2) at `centres` (flat xy, k points), regularised,
 * evaluated at `points` (flat xy): flat xy values, or null when the system is singular.
 */
export function thinPlate(centres, values, points, smoothing = SMOOTHING) {
  const k = centres.length / 2;
  const kmat = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    const xi = centres[2 * i];
    const yi = centres[2 * i + 1];
    for (let j = 0; j < i; j++) {
      const dx = xi - centres[2 * j];
      const dy = yi - centres[2 * j + 1];
      const v = kernel(dx * dx + dy * dy);
      kmat[i * k + j] = v;
      kmat[j * k + i] = v;
    }
    kmat[i * k + i] = smoothing;
  }
  let b = nullSpaceSolve(kmat, centres, values, k);
  if (b === null) {
    // the general solver: LU with partial pivoting of the whole system
    const n = k + 3;
    const a = new Float64Array(n * n);
    b = new Float64Array(n * 2);
    for (let i = 0; i < k; i++) {
      a.set(kmat.subarray(i * k, i * k + k), i * n);
      a[i * n + k] = 1;
      a[i * n + k + 1] = centres[2 * i];
      a[i * n + k + 2] = centres[2 * i + 1];
      a[k * n + i] = 1;
      a[(k + 1) * n + i] = centres[2 * i];
      a[(k + 2) * n + i] = centres[2 * i + 1];
      b[2 * i] = values[2 * i];
      b[2 * i + 1] = values[2 * i + 1];
    }
    if (!solve(a, b, n, 2)) return null;
  }
  const cx = new Float64Array(k);
  const cy = new Float64Array(k);
  const wx = new Float64Array(k);
  const wy = new Float64Array(k);
  for (let i = 0; i < k; i++) {
    cx[i] = centres[2 * i];
    cy[i] = centres[2 * i + 1];
    wx[i] = 0.5 * b[2 * i];
    wy[i] = 0.5 * b[2 * i + 1];
  }
  const p = points.length / 2;
  const out = new Float64Array(p * 2);
  const [c0x, c0y, c1x, c1y, c2x, c2y] = b.subarray(2 * k, 2 * k + 6);
  for (let q = 0; q < p; q++) {
    const x = points[2 * q];
    const y = points[2 * q + 1];
    let sx = 0;
    let sy = 0;
    for (let i = 0; i < k; i++) {
      const dx = x - cx[i];
      const dy = y - cy[i];
      const d2 = dx * dx + dy * dy;
      const kv = d2 > 1e-20 ? d2 * Math.log(d2) : d2 * -46.051701859880914;
      sx += kv * wx[i];
      sy += kv * wy[i];
    }
    out[2 * q] = c0x + x * c1x + y * c2x + sx;
    out[2 * q + 1] = c0y + x * c1y + y * c2y + sy;
  }
  return out;
}

function resample(poly, n) {
  const m = poly.length / 2;
  const s = new Float64Array(m + 1);
  for (let i = 0; i < m; i++) {
    const j = (i + 1) % m;
    s[i + 1] = s[i] + Math.hypot(poly[2 * j] - poly[2 * i], poly[2 * j + 1] - poly[2 * i + 1]);
  }
  const out = new Float64Array(n * 2);
  let seg = 0;
  for (let q = 0; q < n; q++) {
    const t = (q * s[m]) / n;
    while (seg < m - 1 && s[seg + 1] <= t) seg++;
    const j = (seg + 1) % m;
    const span = s[seg + 1] - s[seg];
    const f = span > 0 ? (t - s[seg]) / span : 0;
    out[2 * q] = poly[2 * seg] + f * (poly[2 * j] - poly[2 * seg]);
    out[2 * q + 1] = poly[2 * seg + 1] + f * (poly[2 * j + 1] - poly[2 * seg + 1]);
  }
  return out;
}

function grid(box, size) {
  const [x0, y0, x1, y1] = box;
  const gw = Math.min(size, x1 - x0);
  const gh = Math.min(size, y1 - y0);
  const pts = new Float64Array(gw * gh * 2);
  for (let j = 0; j < gh; j++) {
    for (let i = 0; i < gw; i++) {
      pts[2 * (j * gw + i)] = x0 + ((i + 0.5) * (x1 - x0)) / gw - 0.5;
      pts[2 * (j * gw + i) + 1] = y0 + ((j + 0.5) * (y1 - y0)) / gh - 0.5;
    }
  }
  return { gw, gh, pts };
}

/** Points (flat xy) with later near-duplicates (same key at `side`/4096) dropped: indices. */
export function distinct(points, scale) {
  const seen = new Set();
  const keep = [];
  for (let i = 0; i < points.length / 2; i++) {
    const key = `${Math.round(points[2 * i] * scale)},${Math.round(points[2 * i + 1] * scale)}`;
    if (!seen.has(key)) {
      seen.add(key);
      keep.push(i);
    }
  }
  return keep;
}

/**
 * The backward displacement moving `src` onto `dst` (flat xy), zero outside `outline`
 * expanded; {box, coarse, gw, gh, focus, fine, fw, fh} or null when nothing moves.
 */
export function displacement(src, dst, outline, width, height, size = GRID, focus = null) {
  let moves = 0;
  for (let i = 0; i < src.length; i++) {
    if (!Number.isFinite(src[i]) || !Number.isFinite(dst[i])) return null;
    moves = Math.max(moves, Math.abs(dst[i] - src[i]));
  }
  const outer = expandedOutline(outline);
  let mx0 = Infinity;
  let my0 = Infinity;
  let mx1 = -Infinity;
  let my1 = -Infinity;
  for (let i = 0; i < outer.length; i += 2) {
    mx0 = Math.min(mx0, outer[i]);
    mx1 = Math.max(mx1, outer[i]);
    my0 = Math.min(my0, outer[i + 1]);
    my1 = Math.max(my1, outer[i + 1]);
  }
  const x0 = Math.max(Math.floor(mx0), 0);
  const y0 = Math.max(Math.floor(my0), 0);
  const x1 = Math.min(Math.ceil(mx1) + 1, width);
  const y1 = Math.min(Math.ceil(my1) + 1, height);
  if (x1 - x0 < 2 || y1 - y0 < 2 || moves < 1e-3) return null;
  const box = [x0, y0, x1, y1];
  const side = Math.max(x1 - x0, y1 - y0);
  const anchors = resample(outer, ANCHORS);
  const k = src.length / 2;
  const all = new Float64Array(src.length + anchors.length);
  all.set(dst);
  all.set(anchors, src.length);
  const keep = distinct(all, 4096 / side);
  const centres = new Float64Array(keep.length * 2);
  const values = new Float64Array(keep.length * 2);
  keep.forEach((i, q) => {
    centres[2 * q] = (all[2 * i] - x0) / side;
    centres[2 * q + 1] = (all[2 * i + 1] - y0) / side;
    if (i < k) {
      values[2 * q] = (src[2 * i] - dst[2 * i]) / side;
      values[2 * q + 1] = (src[2 * i + 1] - dst[2 * i + 1]) / side;
    }
  });
  const coarse = grid(box, size);
  let fine = null;
  let fineBox = null;
  if (focus) {
    const fx0 = Math.max(Math.floor(focus[0]), x0);
    const fy0 = Math.max(Math.floor(focus[1]), y0);
    const fx1 = Math.min(Math.ceil(focus[2]), x1);
    const fy1 = Math.min(Math.ceil(focus[3]), y1);
    if (fx1 - fx0 >= 4 && fy1 - fy0 >= 4) {
      fineBox = [fx0, fy0, fx1, fy1];
      fine = grid(fineBox, FOCUS_GRID);
    }
  }
  const { gw, gh } = coarse;
  // fade to exactly zero at the expanded outline (the spline is not evaluated where it is zero)
  const sx = gw / (x1 - x0);
  const sy = gh / (y1 - y0);
  const poly = new Float64Array(outer.length);
  for (let i = 0; i < outer.length; i += 2) {
    poly[i] = Math.round(((outer[i] - x0 + 0.5) * sx - 0.5) * 8) / 8;
    poly[i + 1] = Math.round(((outer[i + 1] - y0 + 0.5) * sy - 0.5) * 8) / 8;
  }
  const inside = distanceTransform(fillPolygon(poly, gw, gh), gw, gh);
  const ramp = Math.max(2.0, 0.08 * Math.min(gw, gh));
  const weight = new Float64Array(gw * gh);
  const cells = [];
  for (let i = 0; i < gw * gh; i++) {
    const w = Math.min(Math.max((inside[i] - 1.0) / ramp, 0), 1);
    weight[i] = w * w * (3 - 2 * w);
    if (weight[i] > 0) cells.push(i);
  }
  const nc = cells.length * 2;
  const pts = new Float64Array(nc + (fine ? fine.pts.length : 0));
  cells.forEach((i, q) => {
    pts[2 * q] = coarse.pts[2 * i];
    pts[2 * q + 1] = coarse.pts[2 * i + 1];
  });
  if (fine) pts.set(fine.pts, nc);
  for (let i = 0; i < pts.length; i += 2) {
    pts[i] = (pts[i] - x0) / side;
    pts[i + 1] = (pts[i + 1] - y0) / side;
  }
  const at = thinPlate(centres, values, pts);
  if (at === null) return null;
  for (let i = 0; i < at.length; i++) {
    if (!Number.isFinite(at[i])) return null;
    at[i] *= side;
  }
  const field = new Float32Array(gw * gh * 2);
  cells.forEach((i, q) => {
    field[2 * i] = at[2 * q] * weight[i];
    field[2 * i + 1] = at[2 * q + 1] * weight[i];
  });
  return {
    box,
    coarse: field,
    gw,
    gh,
    focus: fineBox,
    fine: fine ? Float32Array.from(at.subarray(nc)) : null,
    fw: fine ? fine.gw : 0,
    fh: fine ? fine.gh : 0,
  };
}

function windowRamp(n) {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const t = (i + 0.5) / n;
    out[i] = Math.min(Math.max(Math.min(t, 1 - t) * 4, 0), 1);
  }
  return out;
}

/** `image` with the field applied (bicubic), as a new image. */
export function remap(image, field) {
  const [x0, y0, x1, y1] = field.box;
  const bw = x1 - x0;
  const bh = y1 - y0;
  const full = resizeLinear(field.coarse, field.gw, field.gh, 2, bw, bh);
  if (field.focus && field.fine) {
    const [fx0, fy0, fx1, fy1] = field.focus;
    const w = fx1 - fx0;
    const h = fy1 - fy0;
    const fine = resizeLinear(field.fine, field.fw, field.fh, 2, w, h);
    const wy = windowRamp(h);
    const wx = windowRamp(w);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const blend = wy[y] * wx[x];
        const o = ((y + fy0 - y0) * bw + (x + fx0 - x0)) * 2;
        const f = (y * w + x) * 2;
        full[o] += blend * (fine[f] - full[o]);
        full[o + 1] += blend * (fine[f + 1] - full[o + 1]);
      }
    }
  }
  for (let y = 0; y < bh; y++) {
    for (let x = 0; x < bw; x++) {
      full[(y * bw + x) * 2] += x0 + x;
      full[(y * bw + x) * 2 + 1] += y0 + y;
    }
  }
  const out = copyImage(image);
  remapCubic(image, field.box, full, out);
  return out;
}

/** `image` warped so that `src` moves to `dst` (flat xy), confined to the face `outline`. */
export function warp(image, src, dst, outline, size = GRID, focus = null) {
  const found = displacement(src, dst, outline, image.width, image.height, size, focus);
  return found === null ? copyImage(image) : remap(image, found);
}
