// Expression geometry (fomm/expression/geometry.py): the driver's facial motion with the head
// taken out, mapped into the photo. Landmarks are flat Float64Arrays [x0, y0, x1, y1, ...] in
// pixels; groups map a name to an Int32Array of indices (GROUPS of mesh.js). Offsets are in face
// units: x along the eye line, y down the face, in eye distances.

export const LIDS = ['left_eye_upper', 'left_eye_lower', 'right_eye_upper', 'right_eye_lower'];
export const LIPS = ['lips_outer_upper', 'lips_outer_lower', 'lips_inner_upper', 'lips_inner_lower'];
export const EYE_OPEN = 0.07;
export const EYE_CLOSE = 0.25;
export const MOUTH_OPEN = 0.22;
export const SMILE_OUT = 0.07;
export const SMILE_UP = 0.07;
export const LID_GAIN = 2.0;
// the driver's lower lids also move this share of their cheek's motion (left_cheek/right_cheek)
export const CHEEK_LID = 0.5;
export const MIN_GAP = 0.012;

const clip = (x, lo, hi) => (x < lo ? lo : x > hi ? hi : x);

/** np.interp: fp at x by linear interpolation over ascending xp, clamped at the ends. */
export function interp(x, xp, fp) {
  const n = xp.length;
  if (x <= xp[0]) return fp[0];
  if (x >= xp[n - 1]) return fp[n - 1];
  let lo = 0;
  let hi = n - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xp[mid] <= x) lo = mid;
    else hi = mid;
  }
  const span = xp[hi] - xp[lo];
  return span > 0 ? fp[lo] + ((x - xp[lo]) * (fp[hi] - fp[lo])) / span : fp[lo];
}

/** The polyline (face coordinates `face`, indices `idx`) sorted by x: [xs, ys]. */
export function sortedCurve(face, idx) {
  const order = Array.from(idx).sort((a, b) => face[2 * a] - face[2 * b]);
  const xs = new Float64Array(order.length);
  const ys = new Float64Array(order.length);
  order.forEach((i, k) => {
    xs[k] = face[2 * i];
    ys[k] = face[2 * i + 1];
  });
  return [xs, ys];
}

export function take(points, idx) {
  const out = new Float64Array(idx.length * 2);
  for (let k = 0; k < idx.length; k++) {
    out[2 * k] = points[2 * idx[k]];
    out[2 * k + 1] = points[2 * idx[k] + 1];
  }
  return out;
}

export function concatIndices(groups, names) {
  const parts = names.map((n) => Array.from(groups[n]));
  return Int32Array.from([].concat(...parts));
}

export function uniqueIndices(groups, names) {
  return Int32Array.from([...new Set(names.flatMap((n) => Array.from(groups[n])))].sort((a, b) => a - b));
}

/** Least-squares similarity dst ~ s R src + t (Umeyama) as [a, b, tx, c, d, ty] (2x3). */
export function similarity(src, dst) {
  const n = src.length / 2;
  let msx = 0;
  let msy = 0;
  let mdx = 0;
  let mdy = 0;
  for (let i = 0; i < n; i++) {
    msx += src[2 * i];
    msy += src[2 * i + 1];
    mdx += dst[2 * i];
    mdy += dst[2 * i + 1];
  }
  msx /= n;
  msy /= n;
  mdx /= n;
  mdy /= n;
  let c00 = 0;
  let c01 = 0;
  let c10 = 0;
  let c11 = 0;
  let v = 0;
  for (let i = 0; i < n; i++) {
    const ax = src[2 * i] - msx;
    const ay = src[2 * i + 1] - msy;
    const bx = dst[2 * i] - mdx;
    const by = dst[2 * i + 1] - mdy;
    c00 += bx * ax;
    c01 += bx * ay;
    c10 += by * ax;
    c11 += by * ay;
    v += ax * ax + ay * ay;
  }
  // the best rotation maximises tr(R^T C); its value is the singular values' signed sum
  const p = c00 + c11;
  const q = c10 - c01;
  const norm = Math.hypot(p, q);
  const cos = norm > 0 ? p / norm : 1;
  const sin = norm > 0 ? q / norm : 0;
  const s = v > 0 ? norm / v : 1;
  const a = s * cos;
  const b = -s * sin;
  const c = s * sin;
  const d = s * cos;
  return [a, b, mdx - (a * msx + b * msy), c, d, mdy - (c * msx + d * msy)];
}

export function transform(m, points) {
  const out = new Float64Array(points.length);
  for (let i = 0; i < points.length; i += 2) {
    const x = points[i];
    const y = points[i + 1];
    out[i] = m[0] * x + m[1] * y + m[2];
    out[i + 1] = m[3] * x + m[4] * y + m[5];
  }
  return out;
}

/** The image-left and image-right eye centres [lx, ly, rx, ry]. */
export function eyeCentres(points, groups) {
  const centre = (side) => {
    const upper = groups[`${side}_eye_upper`];
    const lower = groups[`${side}_eye_lower`];
    let x = 0;
    let y = 0;
    for (const i of upper) {
      x += points[2 * i];
      y += points[2 * i + 1];
    }
    for (const i of lower) {
      x += points[2 * i];
      y += points[2 * i + 1];
    }
    const n = upper.length + lower.length;
    return [x / n, y / n];
  };
  return [...centre('left'), ...centre('right')];
}

/** {dist, ax: [xx, xy] (eye line), ay: [yx, yy] (down the face)}. */
export function faceAxes(points, groups) {
  const [lx, ly, rx, ry] = eyeCentres(points, groups);
  const vx = rx - lx;
  const vy = ry - ly;
  const dist = Math.hypot(vx, vy);
  const x = dist > 0 ? [vx / dist, vy / dist] : [1, 0];
  return { dist, ax: x, ay: [-x[1], x[0]] };
}

/** Points in face coordinates about `origin` ([ox, oy]): (p - o) @ axes / scale. */
export function toFace(points, origin, axes, scale) {
  const out = new Float64Array(points.length);
  const [xx, xy] = axes.ax;
  const [yx, yy] = axes.ay;
  for (let i = 0; i < points.length; i += 2) {
    const dx = points[i] - origin[0];
    const dy = points[i + 1] - origin[1];
    out[i] = (dx * xx + dy * xy) / scale;
    out[i + 1] = (dx * yx + dy * yy) / scale;
  }
  return out;
}

/** Face coordinates back to pixels: f * scale @ axes.T + origin. */
export function fromFace(face, origin, axes, scale) {
  const out = new Float64Array(face.length);
  const [xx, xy] = axes.ax;
  const [yx, yy] = axes.ay;
  for (let i = 0; i < face.length; i += 2) {
    const u = face[i] * scale;
    const v = face[i + 1] * scale;
    out[i] = u * xx + v * yx + origin[0];
    out[i + 1] = u * xy + v * yy + origin[1];
  }
  return out;
}

export function eyeMid(points, groups) {
  const [lx, ly, rx, ry] = eyeCentres(points, groups);
  return [(lx + rx) / 2, (ly + ry) / 2];
}

/** Per eye: its lid points off the corners, their place t (0..1) between the corners. */
function lidSpans(face, groups) {
  return ['left', 'right'].map((side) => {
    const upper = groups[`${side}_eye_upper`];
    const lower = groups[`${side}_eye_lower`];
    const ends = [upper[0], upper[upper.length - 1]];
    const lids = [...new Set([...upper.subarray(1, -1), ...lower.subarray(1, -1)])]
      .sort((a, b) => a - b);
    const span = face[2 * ends[1]] - face[2 * ends[0]];
    const t = lids.map((i) => (Math.abs(span) > 1e-9
      ? Math.min(Math.max((face[2 * i] - face[2 * ends[0]]) / span, 0), 1) : 0.5));
    return { ends, lids, t };
  });
}

/**
 * The driver's expression since the reference frame, in face units (flat 2N): the head's motion
 * taken out by a similarity fit on the stable points, the lids' motion off their eye's corner
 * line times LID_GAIN, the lower lids' also CHEEK_LID times their cheek's motion (where groups
 * has the cheeks).
 */
export function expressionOffsets(driving, reference, groups) {
  const stable = groups.stable;
  const m = similarity(take(driving, stable), take(reference, stable));
  const moved = transform(m, driving);
  for (let i = 0; i < moved.length; i++) moved[i] -= reference[i];
  const axes = faceAxes(reference, groups);
  const offsets = toFace(moved, [0, 0], axes, Math.max(axes.dist, 1e-6));
  const face = faceCoords(reference, groups);
  lidSpans(face, groups).forEach(({ ends, lids, t }, e) => {
    lids.forEach((i, k) => {
      for (let c = 0; c < 2; c++) {
        const along = (1 - t[k]) * offsets[2 * ends[0] + c] + t[k] * offsets[2 * ends[1] + c];
        offsets[2 * i + c] = along + LID_GAIN * (offsets[2 * i + c] - along);
      }
    });
    const side = e === 0 ? 'left' : 'right';
    const cheek = groups[`${side}_cheek`];
    if (cheek && CHEEK_LID) {
      // the cheek's motion down the face off its eye's corners, most at the lid's middle
      let drop = 0;
      for (const i of cheek) drop += offsets[2 * i + 1] / cheek.length;
      drop -= (offsets[2 * ends[0] + 1] + offsets[2 * ends[1] + 1]) / 2;
      const lower = groups[`${side}_eye_lower`];
      const w = lidWeight(face, lower);
      for (let k = 1; k < lower.length - 1; k++) {
        offsets[2 * lower[k] + 1] += CHEEK_LID * drop * w[k];
      }
    }
  });
  return offsets;
}

/**
 * Expression offsets (face units) with what a head turn or nod leaves in them taken out, for a
 * head that must stay where it is (`points`: the face they land on): kept are the brows, the
 * lids' motion off their eye's corner line, the lips' motion about their mean sideways shift and
 * the jaw's drop below the mouth.
 */
export function withoutPose(offsets, points, groups) {
  const out = Float64Array.from(offsets);
  const face = faceCoords(points, groups);
  for (const { ends, lids, t } of lidSpans(face, groups)) {
    lids.forEach((i, k) => {
      for (let c = 0; c < 2; c++) {
        out[2 * i + c] -= (1 - t[k]) * out[2 * ends[0] + c] + t[k] * out[2 * ends[1] + c];
      }
    });
    for (const i of ends) out[2 * i] = out[2 * i + 1] = 0;
  }
  for (const i of groups.stable) out[2 * i] = out[2 * i + 1] = 0;
  for (const i of groups.nose) out[2 * i] = out[2 * i + 1] = 0;
  const lips = concatIndices(groups, LIPS);
  let mouthY = 0;
  for (const i of lips) mouthY += face[2 * i + 1];
  mouthY /= lips.length;
  for (const i of groups.face_oval) {
    out[2 * i] = 0;
    out[2 * i + 1] *= clip((face[2 * i + 1] - mouthY) / 0.3, 0, 1);
  }
  // a mouth's expressions move it about its middle
  const unique = uniqueIndices(groups, LIPS);
  let shift = 0;
  for (const i of unique) shift += out[2 * i];
  shift /= unique.length;
  for (const i of unique) out[2 * i] -= shift;
  return out;
}

/** Face-unit offsets as pixel offsets on the face of `points`. */
export function toPixels(offsets, points, groups) {
  const axes = faceAxes(points, groups);
  return fromFace(offsets, [0, 0], axes, axes.dist);
}

export function faceCoords(points, groups) {
  const axes = faceAxes(points, groups);
  return toFace(points, eyeMid(points, groups), axes, Math.max(axes.dist, 1e-6));
}

function lidWeight(face, idx) {
  const n = idx.length;
  const x0 = face[2 * idx[0]];
  const span = face[2 * idx[n - 1]] - x0;
  const out = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    const t = Math.abs(span) > 1e-9 ? (face[2 * idx[k]] - x0) / span : 0;
    out[k] = Math.sin(Math.PI * Math.min(Math.max(t, 0), 1));
  }
  return out;
}

/** The sliders' offsets (flat 2N) in face units on the face of `points`. */
export function sliderOffsets(points, groups, eyes = 0, mouth = 0, smile = 0) {
  const face = faceCoords(points, groups);
  const out = new Float64Array(face.length);
  if (eyes) {
    const gain = eyes > 0 ? EYE_OPEN : EYE_CLOSE;
    for (const name of ['left_eye_upper', 'right_eye_upper']) {
      const idx = groups[name];
      const w = lidWeight(face, idx);
      idx.forEach((i, k) => (out[2 * i + 1] -= eyes * gain * w[k]));
    }
    for (const name of ['left_eye_lower', 'right_eye_lower']) {
      const idx = groups[name];
      const w = lidWeight(face, idx);
      idx.forEach((i, k) => (out[2 * i + 1] += 0.2 * eyes * gain * w[k]));
    }
  }
  let centreX = 0;
  let half = 0;
  let mouthY = 0;
  if (mouth || smile) {
    const up = groups.lips_outer_upper;
    const c0 = face[2 * up[0]];
    const c1 = face[2 * up[up.length - 1]];
    centreX = (c0 + c1) / 2;
    half = Math.max(Math.abs(c1 - c0) / 2, 1e-3);
    const all = concatIndices(groups, LIPS);
    for (const i of all) mouthY += face[2 * i + 1];
    mouthY /= all.length;
  }
  if (mouth) {
    for (const name of ['lips_inner_lower', 'lips_outer_lower']) {
      const idx = groups[name];
      const w = lidWeight(face, idx);
      idx.forEach((i, k) => (out[2 * i + 1] += mouth * MOUTH_OPEN * w[k]));
    }
    const idx = groups.lips_inner_upper;
    const w = lidWeight(face, idx);
    idx.forEach((i, k) => (out[2 * i + 1] -= 0.1 * mouth * MOUTH_OPEN * w[k]));
    for (const i of groups.face_oval) {
      const below = clip((face[2 * i + 1] - mouthY) / 0.4, 0, 1);
      const across = clip(1.5 - Math.abs(face[2 * i] - centreX) / half, 0, 1);
      out[2 * i + 1] += mouth * MOUTH_OPEN * 0.9 * below * across;
    }
  }
  if (smile) {
    for (const i of uniqueIndices(groups, LIPS)) {
      const u = clip((face[2 * i] - centreX) / half, -1, 1);
      out[2 * i] += smile * SMILE_OUT * u;
      out[2 * i + 1] -= smile * SMILE_UP * u * u;
    }
  }
  return out;
}

/** Which of n points may move (1) or stay pinned (0) for `region`. */
export function regionMask(groups, n, region) {
  const mask = new Float64Array(n);
  if (region === 'all' || region === 'expression' || region === 'pose') return mask.fill(1);
  for (const name of region === 'eyes' ? LIDS : LIPS) for (const i of groups[name]) mask[i] = 1;
  return mask;
}

function signedGaps(face, refIdx, movIdx, move) {
  const [rx, ry] = sortedCurve(face, refIdx);
  const m = movIdx.length - 2;
  const ins = new Uint8Array(m);
  const yRef = new Float64Array(m);
  const gaps = new Float64Array(m);
  for (let k = 0; k < m; k++) {
    const i = movIdx[k + 1];
    const x = face[2 * i];
    const y = face[2 * i + 1];
    ins[k] = x > rx[0] && x < rx[rx.length - 1] ? 1 : 0;
    yRef[k] = interp(x, rx, ry);
    gaps[k] = move === 'upper' ? yRef[k] - y : y - yRef[k];
  }
  return [ins, yRef, gaps];
}

function clampPair(face, like, upper, lower, gap, move) {
  const [refIdx, movIdx] = move === 'upper' ? [lower, upper] : [upper, lower];
  const [ins, yRef, gaps] = signedGaps(face, refIdx, movIdx, move);
  const likeGaps = signedGaps(like, refIdx, movIdx, move)[2];
  for (let k = 0; k < ins.length; k++) {
    const need = Math.min(gap, Math.max(likeGaps[k], 0));
    if (ins[k] && gaps[k] < need) {
      face[2 * movIdx[k + 1] + 1] = move === 'upper' ? yRef[k] - need : yRef[k] + need;
    }
  }
}

/** `points` with the lids and lips kept from crossing (see geometry.py clamp). */
export function clamp(points, groups, like = null, gap = MIN_GAP) {
  like = like || points;
  const axes = faceAxes(like, groups);
  const origin = eyeMid(like, groups);
  const scale = Math.max(axes.dist, 1e-6);
  const face = toFace(points, origin, axes, scale);
  const ref = toFace(like, origin, axes, scale);
  for (const side of ['left', 'right']) {
    clampPair(face, ref, groups[`${side}_eye_upper`], groups[`${side}_eye_lower`], gap, 'upper');
  }
  clampPair(face, ref, groups.lips_inner_upper, groups.lips_inner_lower, gap, 'lower');
  clampPair(face, ref, groups.lips_outer_upper, groups.lips_inner_upper, 0, 'upper');
  clampPair(face, ref, groups.lips_inner_lower, groups.lips_outer_lower, 0, 'lower');
  return fromFace(face, origin, axes, axes.dist);
}

/** Mean gap between two polylines sharing their corners, in eye distances. */
export function gap(points, upper, lower, groups) {
  const face = faceCoords(points, groups);
  const [lx, ly] = sortedCurve(face, lower);
  if (upper.length <= 2) return 0;
  let sum = 0;
  for (let k = 1; k < upper.length - 1; k++) {
    const i = upper[k];
    sum += interp(face[2 * i], lx, ly) - face[2 * i + 1];
  }
  return sum / (upper.length - 2);
}
