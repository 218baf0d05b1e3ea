// Image operations of the expression layer, on RGBA images {width, height, data} (the layout of
// ImageData; alpha is carried along) and on float planes. Each mirrors the OpenCV call the Python
// layer makes (fomm/expression/*.py, fomm/faces/mesh.py): same pixel-centre conventions, border
// modes and kernels, so that the browser's frames match the Python ones to a level or two.

/** A new RGBA image of the size given (opaque black), or a copy of `like`. */
export function newImage(width, height) {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 3; i < data.length; i += 4) data[i] = 255;
  return { width, height, data };
}

export function copyImage(image) {
  return { width: image.width, height: image.height, data: new Uint8ClampedArray(image.data) };
}

export function sameImage(a, b) {
  if (!a || !b || a.width !== b.width || a.height !== b.height) return false;
  const x = a.data;
  const y = b.data;
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Area-overlap weights of a 1-D shrink from n to m samples (cv2.INTER_AREA). */
function areaWeights(n, m) {
  const scale = n / m;
  const taps = [];
  for (let d = 0; d < m; d++) {
    const s0 = d * scale;
    const s1 = s0 + scale;
    const list = [];
    for (let s = Math.floor(s0); s < Math.min(Math.ceil(s1), n); s++) {
      const w = Math.min(s1, s + 1) - Math.max(s0, s);
      if (w > 1e-9) list.push(s, w / scale);
    }
    taps.push(list);
  }
  return taps;
}

/** `image` (RGBA) resized to width x height by area averaging (cv2.INTER_AREA, shrinking). */
export function resizeArea(image, width, height) {
  const { width: w, height: h, data } = image;
  const wx = areaWeights(w, width);
  const wy = areaWeights(h, height);
  const rows = new Float32Array(h * width * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < width; x++) {
      const taps = wx[x];
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < taps.length; k += 2) {
        const i = (y * w + taps[k]) * 4;
        const t = taps[k + 1];
        r += data[i] * t;
        g += data[i + 1] * t;
        b += data[i + 2] * t;
      }
      const o = (y * width + x) * 3;
      rows[o] = r;
      rows[o + 1] = g;
      rows[o + 2] = b;
    }
  }
  const out = newImage(width, height);
  for (let y = 0; y < height; y++) {
    const taps = wy[y];
    for (let x = 0; x < width; x++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < taps.length; k += 2) {
        const i = (taps[k] * width + x) * 3;
        const t = taps[k + 1];
        r += rows[i] * t;
        g += rows[i + 1] * t;
        b += rows[i + 2] * t;
      }
      const o = (y * width + x) * 4;
      out.data[o] = Math.round(r);
      out.data[o + 1] = Math.round(g);
      out.data[o + 2] = Math.round(b);
    }
  }
  return out;
}

/** A sub-image (x0..x1, y0..y1), as a new RGBA image. */
export function cropImage(image, x0, y0, x1, y1) {
  const out = newImage(x1 - x0, y1 - y0);
  for (let y = y0; y < y1; y++) {
    const src = (y * image.width + x0) * 4;
    out.data.set(image.data.subarray(src, src + (x1 - x0) * 4), (y - y0) * (x1 - x0) * 4);
  }
  return out;
}

/**
 * Bilinear patch: out(u, v) = image(A (u, v, 1)) for an affine A (2x3, output pixel -> input
 * pixel, as cv2.warpAffine with WARP_INVERSE_MAP), border replicated, coordinates in 1/32
 * pixel as OpenCV's. Returns float32 planes (3, size, size) scaled by `gain` into `out` at
 * `offset`.
 */
export function affinePatch(image, m, size, out, offset, gain) {
  const { width: w, height: h } = image;
  const data = image.data;
  const plane = size * size;
  const [m0, m1, m2, m3, m4, m5] = m;
  // OpenCV's fixed point: coordinates in 1/1024 pixel, rounded to 1/32
  const adelta = new Int32Array(size);
  const bdelta = new Int32Array(size);
  for (let u = 0; u < size; u++) {
    adelta[u] = Math.round(m0 * u * 1024);
    bdelta[u] = Math.round(m3 * u * 1024);
  }
  for (let v = 0; v < size; v++) {
    const rx = Math.round((m1 * v + m2) * 1024) + 16;
    const ry = Math.round((m4 * v + m5) * 1024) + 16;
    for (let u = 0; u < size; u++) {
      const qx = (rx + adelta[u]) >> 5;
      const qy = (ry + bdelta[u]) >> 5;
      const x0 = qx >> 5;
      const y0 = qy >> 5;
      const ax = (qx & 31) / 32;
      const ay = (qy & 31) / 32;
      let i00;
      let i01;
      let i10;
      let i11;
      if (x0 >= 0 && y0 >= 0 && x0 < w - 1 && y0 < h - 1) {
        i00 = (y0 * w + x0) * 4;
        i01 = i00 + 4;
        i10 = i00 + w * 4;
        i11 = i10 + 4;
      } else {
        const xa = x0 < 0 ? 0 : x0 >= w ? w - 1 : x0;
        const xb = x0 + 1 < 0 ? 0 : x0 + 1 >= w ? w - 1 : x0 + 1;
        const ya = y0 < 0 ? 0 : y0 >= h ? h - 1 : y0;
        const yb = y0 + 1 < 0 ? 0 : y0 + 1 >= h ? h - 1 : y0 + 1;
        i00 = (ya * w + xa) * 4;
        i01 = (ya * w + xb) * 4;
        i10 = (yb * w + xa) * 4;
        i11 = (yb * w + xb) * 4;
      }
      const o = offset + v * size + u;
      for (let c = 0; c < 3; c++) {
        const top = data[i00 + c] + ax * (data[i01 + c] - data[i00 + c]);
        const bottom = data[i10 + c] + ax * (data[i11 + c] - data[i10 + c]);
        out[o + c * plane] = Math.round(top + ay * (bottom - top)) * gain;
      }
    }
  }
}

/**
 * A float field (h, w, ch interleaved) resized to (height, width) bilinearly with
 * cv2.resize's INTER_LINEAR convention (pixel centres aligned, edges clamped).
 */
export function resizeLinear(field, w, h, ch, width, height) {
  const out = new Float32Array(width * height * ch);
  const sx = w / width;
  const sy = h / height;
  const xi = new Int32Array(width);
  const xf = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    let f = (x + 0.5) * sx - 0.5;
    let i = Math.floor(f);
    f -= i;
    if (i < 0) {
      i = 0;
      f = 0;
    }
    if (i >= w - 1) {
      i = w - 1;
      f = 0;
    }
    xi[x] = i;
    xf[x] = f;
  }
  for (let y = 0; y < height; y++) {
    let fy = (y + 0.5) * sy - 0.5;
    let j = Math.floor(fy);
    fy -= j;
    if (j < 0) {
      j = 0;
      fy = 0;
    }
    if (j >= h - 1) {
      j = h - 1;
      fy = 0;
    }
    const j1 = Math.min(j + 1, h - 1);
    for (let x = 0; x < width; x++) {
      const i = xi[x];
      const i1 = Math.min(i + 1, w - 1);
      const fx = xf[x];
      for (let c = 0; c < ch; c++) {
        const a = field[(j * w + i) * ch + c];
        const b = field[(j * w + i1) * ch + c];
        const d = field[(j1 * w + i) * ch + c];
        const e = field[(j1 * w + i1) * ch + c];
        const top = a + fx * (b - a);
        const bottom = d + fx * (e - d);
        out[(y * width + x) * ch + c] = top + fy * (bottom - top);
      }
    }
  }
  return out;
}

function reflect101(i, n) {
  if (n === 1) return 0;
  while (i < 0 || i >= n) {
    if (i < 0) i = -i;
    if (i >= n) i = 2 * n - 2 - i;
  }
  return i;
}

// bicubic weights (OpenCV's, A = -0.75) for the 32 fractions of a pixel
const CUBIC = (() => {
  const A = -0.75;
  const table = new Float32Array(32 * 4);
  for (let k = 0; k < 32; k++) {
    const x = k / 32;
    table[k * 4] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    table[k * 4 + 1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    table[k * 4 + 2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    table[k * 4 + 3] = 1 - table[k * 4] - table[k * 4 + 1] - table[k * 4 + 2];
  }
  return table;
})();

/**
 * `image` with the box (x0, y0, x1, y1) resampled at the absolute map (mx, my per box pixel),
 * bicubic, coordinates rounded to 1/32 pixel, border reflected (cv2.remap with CV_16SC2 maps,
 * INTER_CUBIC, BORDER_REFLECT101). Writes into `out` (RGBA, same size as image).
 */
export function remapCubic(image, box, map, out) {
  const { width: w, height: h } = image;
  const data = image.data;
  const [x0, y0, x1, y1] = box;
  const bw = x1 - x0;
  const o = out.data;
  const stride = w * 4;
  const rows = new Int32Array(4);
  const cols = new Int32Array(4);
  let k = 0;
  for (let y = y0; y < y1; y++) {
    let dst = (y * w + x0) * 4;
    for (let x = x0; x < x1; x++, k += 2, dst += 4) {
      const qx = Math.round(map[k] * 32);
      const qy = Math.round(map[k + 1] * 32);
      const ix = qx >> 5;
      const iy = qy >> 5;
      const fx = qx & 31;
      const fy = qy & 31;
      if (fx === 0 && fy === 0 && ix >= 0 && iy >= 0 && ix < w && iy < h) {
        const s = iy * stride + ix * 4; // an exact pixel: the cubic weights are 0, 1, 0, 0
        o[dst] = data[s];
        o[dst + 1] = data[s + 1];
        o[dst + 2] = data[s + 2];
        continue;
      }
      const wx = fx * 4;
      const wy = fy * 4;
      const c0 = CUBIC[wx];
      const c1 = CUBIC[wx + 1];
      const c2 = CUBIC[wx + 2];
      const c3 = CUBIC[wx + 3];
      let r0 = 0;
      let g0 = 0;
      let b0 = 0;
      if (ix >= 1 && iy >= 1 && ix < w - 2 && iy < h - 2) {
        let p = (iy - 1) * stride + (ix - 1) * 4;
        for (let r = 0; r < 4; r++, p += stride) {
          const cw = CUBIC[wy + r];
          r0 += cw * (c0 * data[p] + c1 * data[p + 4] + c2 * data[p + 8] + c3 * data[p + 12]);
          g0 += cw * (c0 * data[p + 1] + c1 * data[p + 5] + c2 * data[p + 9] +
            c3 * data[p + 13]);
          b0 += cw * (c0 * data[p + 2] + c1 * data[p + 6] + c2 * data[p + 10] +
            c3 * data[p + 14]);
        }
      } else {
        for (let t = 0; t < 4; t++) {
          cols[t] = reflect101(ix - 1 + t, w) * 4;
          rows[t] = reflect101(iy - 1 + t, h) * stride;
        }
        for (let r = 0; r < 4; r++) {
          const cw = CUBIC[wy + r];
          const p = rows[r];
          for (let c = 0; c < 3; c++) {
            const v = cw * (c0 * data[p + cols[0] + c] + c1 * data[p + cols[1] + c] +
              c2 * data[p + cols[2] + c] + c3 * data[p + cols[3] + c]);
            if (c === 0) r0 += v;
            else if (c === 1) g0 += v;
            else b0 += v;
          }
        }
      }
      o[dst] = Math.round(r0);
      o[dst + 1] = Math.round(g0);
      o[dst + 2] = Math.round(b0);
    }
  }
}

/**
 * Bilinear samples of `image` at absolute float coordinates (mx, my interleaved, count n),
 * border replicated, coordinates rounded to 1/32 pixel (cv2.remap INTER_LINEAR,
 * BORDER_REPLICATE). Returns float32 RGB (n x 3), rounded to integers as uint8 output would be.
 */
export function sampleLinear(image, map, n) {
  const { width: w, height: h, data } = image;
  const out = new Float32Array(n * 3);
  for (let k = 0; k < n; k++) {
    const fx = Math.round(map[2 * k] * 32) / 32;
    const fy = Math.round(map[2 * k + 1] * 32) / 32;
    const x0 = Math.floor(fx);
    const y0 = Math.floor(fy);
    const ax = fx - x0;
    const ay = fy - y0;
    const xa = Math.min(Math.max(x0, 0), w - 1);
    const xb = Math.min(Math.max(x0 + 1, 0), w - 1);
    const ya = Math.min(Math.max(y0, 0), h - 1);
    const yb = Math.min(Math.max(y0 + 1, 0), h - 1);
    const i00 = (ya * w + xa) * 4;
    const i01 = (ya * w + xb) * 4;
    const i10 = (yb * w + xa) * 4;
    const i11 = (yb * w + xb) * 4;
    for (let c = 0; c < 3; c++) {
      const top = data[i00 + c] + ax * (data[i01 + c] - data[i00 + c]);
      const bottom = data[i10 + c] + ax * (data[i11 + c] - data[i10 + c]);
      out[3 * k + c] = Math.round(top + ay * (bottom - top));
    }
  }
  return out;
}

/**
 * A binary mask (Uint8Array, w x h) of the polygon (vertices rounded as given), its edges
 * included (cv2.fillPoly, LINE_8): the pixel centres inside and the pixels its edges cross.
 */
export function fillPolygon(poly, w, h) {
  const mask = new Uint8Array(w * h);
  const n = poly.length / 2;
  let ymin = Infinity;
  let ymax = -Infinity;
  for (let i = 0; i < n; i++) {
    ymin = Math.min(ymin, poly[2 * i + 1]);
    ymax = Math.max(ymax, poly[2 * i + 1]);
  }
  const ya = Math.max(0, Math.floor(ymin));
  const yb = Math.min(h - 1, Math.ceil(ymax));
  const xs = [];
  for (let y = ya; y <= yb; y++) {
    xs.length = 0;
    for (let i = 0, j = n - 1; i < n; j = i++) {
      const xi = poly[2 * i];
      const yi = poly[2 * i + 1];
      const xj = poly[2 * j];
      const yj = poly[2 * j + 1];
      if (yi > y !== yj > y) xs.push(((xj - xi) * (y - yi)) / (yj - yi) + xi);
    }
    xs.sort((a, b) => a - b);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      const from = Math.max(0, Math.ceil(xs[k]));
      const to = Math.min(w - 1, Math.floor(xs[k + 1]));
      for (let x = from; x <= to; x++) mask[y * w + x] = 1;
    }
  }
  // the edges themselves (Bresenham between the rounded vertices)
  for (let i = 0, j = n - 1; i < n; j = i++) {
    let xa = Math.round(poly[2 * j]);
    let ya2 = Math.round(poly[2 * j + 1]);
    const xb = Math.round(poly[2 * i]);
    const yb2 = Math.round(poly[2 * i + 1]);
    const dx = Math.abs(xb - xa);
    const dy = -Math.abs(yb2 - ya2);
    const sx = xa < xb ? 1 : -1;
    const sy = ya2 < yb2 ? 1 : -1;
    let err = dx + dy;
    for (;;) {
      if (xa >= 0 && xa < w && ya2 >= 0 && ya2 < h) mask[ya2 * w + xa] = 1;
      if (xa === xb && ya2 === yb2) break;
      const e2 = 2 * err;
      if (e2 >= dy) {
        err += dy;
        xa += sx;
      }
      if (e2 <= dx) {
        err += dx;
        ya2 += sy;
      }
    }
  }
  return mask;
}

/** A float coverage mask (w x h) of the polygon, antialiased (4 x 4 samples a pixel). */
export function fillPolygonSoft(poly, w, h) {
  const mask = new Float32Array(w * h);
  const n = poly.length / 2;
  const xs = [];
  for (let y = 0; y < h; y++) {
    for (let sy = 0; sy < 4; sy++) {
      const py = y - 0.375 + sy * 0.25;
      xs.length = 0;
      for (let i = 0, j = n - 1; i < n; j = i++) {
        const xi = poly[2 * i];
        const yi = poly[2 * i + 1];
        const xj = poly[2 * j];
        const yj = poly[2 * j + 1];
        if (yi > py !== yj > py) xs.push(((xj - xi) * (py - yi)) / (yj - yi) + xi);
      }
      if (xs.length < 2) continue;
      xs.sort((a, b) => a - b);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        // sample columns x - 0.375 + sx / 4 inside (xs[k], xs[k + 1])
        const first = Math.max(0, Math.floor((xs[k] + 0.375) * 4) + 1);
        const last = Math.min(w * 4 - 1, Math.ceil((xs[k + 1] + 0.375) * 4) - 1);
        for (let s = first; s <= last; s++) mask[y * w + (s >> 2)] += 1 / 16;
      }
    }
  }
  return mask;
}

/** The Gaussian kernel cv2.GaussianBlur uses for a float image and `sigma` (ksize 0). */
function gaussianKernel(sigma) {
  const size = Math.max(1, Math.round(sigma * 8 + 1) | 1);
  const kernel = new Float64Array(size);
  const half = (size - 1) / 2;
  let sum = 0;
  for (let i = 0; i < size; i++) {
    kernel[i] = Math.exp(-((i - half) ** 2) / (2 * sigma * sigma));
    sum += kernel[i];
  }
  for (let i = 0; i < size; i++) kernel[i] /= sum;
  return kernel;
}

/** A float plane (w x h) blurred like cv2.GaussianBlur(plane, (0, 0), sigma) (reflect 101). */
export function gaussianBlur(plane, w, h, sigma) {
  const kernel = gaussianKernel(sigma);
  const r = (kernel.length - 1) / 2;
  const tmp = new Float32Array(w * h);
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = -r; k <= r; k++) s += kernel[k + r] * plane[y * w + reflect101(x + k, w)];
      tmp[y * w + x] = s;
    }
  }
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0;
      for (let k = -r; k <= r; k++) s += kernel[k + r] * tmp[reflect101(y + k, h) * w + x];
      out[y * w + x] = s;
    }
  }
  return out;
}

/**
 * Distance of each non-zero pixel of `mask` (w x h) to the nearest zero pixel (outside the
 * image counts as non-zero), by the 3 x 3 chamfer of cv2.distanceTransform(DIST_L2, 3).
 */
export function distanceTransform(mask, w, h) {
  const a = 0.955;
  const b = 1.3693;
  const big = 1e9;
  const d = new Float32Array(w * h);
  for (let i = 0; i < w * h; i++) d[i] = mask[i] ? big : 0;
  const at = (x, y) => (x < 0 || y < 0 || x >= w || y >= h ? big : d[y * w + x]);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!d[i]) continue;
      d[i] = Math.min(d[i], at(x - 1, y) + a, at(x, y - 1) + a, at(x - 1, y - 1) + b,
        at(x + 1, y - 1) + b);
    }
  }
  for (let y = h - 1; y >= 0; y--) {
    for (let x = w - 1; x >= 0; x--) {
      const i = y * w + x;
      if (!d[i]) continue;
      d[i] = Math.min(d[i], at(x + 1, y) + a, at(x, y + 1) + a, at(x + 1, y + 1) + b,
        at(x - 1, y + 1) + b);
    }
  }
  return d;
}

/**
 * The convex hull of points (flat xy) as flat xy, in cv2.convexHull's order: from the point
 * with the largest x, turning clockwise on the image (y down).
 */
export function convexHull(points) {
  const n = points.length / 2;
  const idx = Array.from({ length: n }, (_, i) => i);
  idx.sort((i, j) => points[2 * i] - points[2 * j] || points[2 * i + 1] - points[2 * j + 1]);
  const cross = (o, p, q) =>
    (points[2 * p] - points[2 * o]) * (points[2 * q + 1] - points[2 * o + 1]) -
    (points[2 * p + 1] - points[2 * o + 1]) * (points[2 * q] - points[2 * o]);
  const lower = [];
  for (const i of idx) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], i) <= 0)
      lower.pop();
    lower.push(i);
  }
  const upper = [];
  for (let k = idx.length - 1; k >= 0; k--) {
    const i = idx[k];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], i) <= 0)
      upper.pop();
    upper.push(i);
  }
  lower.pop();
  upper.pop();
  const hull = lower.concat(upper); // positive signed area, as cv2's

  let start = 0;
  for (let k = 1; k < hull.length; k++) {
    const a = hull[k];
    const s = hull[start];
    if (points[2 * a] > points[2 * s] ||
      (points[2 * a] === points[2 * s] && points[2 * a + 1] > points[2 * s + 1])) start = k;
  }
  const out = new Float64Array(hull.length * 2);
  for (let k = 0; k < hull.length; k++) {
    const i = hull[(start + k) % hull.length];
    out[2 * k] = points[2 * i];
    out[2 * k + 1] = points[2 * i + 1];
  }
  return out;
}
