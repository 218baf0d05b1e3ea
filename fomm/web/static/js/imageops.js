// Pixel operations of fomm's frame path, as OpenCV computes them (fomm.faces.crop, fomm.media.image):
// area resizing (cv2.INTER_AREA), affine warps with bilinear or bicubic sampling on a 1/32 pixel
// grid with 15-bit weights (cv2.warpAffine), the Gaussian pyramid (cv2.pyrDown) and the tensor
// conversions (fomm.media.image.to_tensor / to_frames). Images are {data, width, height} with
// RGBA bytes (ImageData-like); planes of floats are {data: Float32Array, width, height}.

export function makeImage(width, height) {
  const data = new Uint8ClampedArray(width * height * 4);
  for (let i = 3; i < data.length; i += 4) data[i] = 255;
  return { data, width, height };
}

export function roundHalfEven(x) {
  const r = Math.round(x);
  return (r - x === 0.5 && r % 2 !== 0) ? r - 1 : r;
}

function areaTable(ssize, dsize) {
  // cv2's computeResizeAreaTab: per destination index, (source index, weight) pairs
  const scale = ssize / dsize;
  const tab = [];
  for (let dx = 0; dx < dsize; dx += 1) {
    const fsx1 = dx * scale, fsx2 = fsx1 + scale;
    const cell = Math.min(scale, ssize - fsx1);
    let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
    sx2 = Math.min(sx2, ssize - 1);
    sx1 = Math.min(sx1, sx2);
    const row = [];
    if (sx1 - fsx1 > 1e-3) row.push([sx1 - 1, (sx1 - fsx1) / cell]);
    for (let sx = sx1; sx < sx2; sx += 1) row.push([sx, 1 / cell]);
    if (fsx2 - sx2 > 1e-3) row.push([sx2, Math.min(Math.min(fsx2 - sx2, 1), cell) / cell]);
    tab.push(row);
  }
  return tab;
}

function linearAreaTable(ssize, dsize) {
  // cv2.resize INTER_AREA when enlarging: linear weights of its own
  const inv = dsize / ssize, scale = ssize / dsize;
  const tab = [];
  for (let dx = 0; dx < dsize; dx += 1) {
    let sx = Math.floor(dx * scale);
    let fx = (dx + 1) - (sx + 1) * inv;
    fx = fx <= 0 ? 0 : fx - Math.floor(fx);
    if (sx < 0) { fx = 0; sx = 0; }
    if (sx >= ssize - 1) { fx = 0; sx = ssize - 1; }
    tab.push(fx === 0 ? [[sx, 1]] : [[sx, 1 - fx], [Math.min(sx + 1, ssize - 1), fx]]);
  }
  return tab;
}

function flatTable(tab) {
  // [[index, weight], ...] per destination → typed arrays (start, count, index, weight)
  const n = tab.reduce((s, row) => s + row.length, 0);
  const start = new Int32Array(tab.length), count = new Int32Array(tab.length);
  const index = new Int32Array(n), weight = new Float64Array(n);
  let k = 0;
  tab.forEach((row, d) => {
    start[d] = k; count[d] = row.length;
    for (const [i, w] of row) { index[k] = i; weight[k] = w; k += 1; }
  });
  return { start, count, index, weight };
}

const TABLES = new Map();
function table(ssize, dsize, area) {
  const key = `${ssize} ${dsize} ${area}`;
  let t = TABLES.get(key);
  if (!t) {
    t = flatTable(area ? areaTable(ssize, dsize) : linearAreaTable(ssize, dsize));
    if (TABLES.size > 256) TABLES.clear();
    TABLES.set(key, t);
  }
  return t;
}

/** cv2.resize(src, (dw, dh), INTER_AREA) of interleaved channels; float output (Float32Array,
 * `channels` per pixel) unless `round` (then uint8 values, rounded half to even, in a Float32Array). */
export function resizeArea(data, sw, sh, channels, dw, dh, round) {
  const area = dw <= sw && dh <= sh;
  const tx = table(sw, dw, area), ty = table(sh, dh, area);
  const C = channels, rowLen = dw * C;
  const halves = sw === 2 * dw && sh === 2 * dh;  // OpenCV's 2×2 average rounds halves up
  // horizontal pass on every source row, then the vertical sums
  const rows = new Float64Array(sh * rowLen);
  for (let y = 0; y < sh; y += 1) {
    const src = y * sw * C, dst = y * rowLen;
    for (let dx = 0; dx < dw; dx += 1) {
      const s0 = tx.start[dx], n = tx.count[dx], o = dst + dx * C;
      for (let c = 0; c < C; c += 1) {
        let v = 0;
        for (let k = s0; k < s0 + n; k += 1) v += tx.weight[k] * data[src + tx.index[k] * C + c];
        rows[o + c] = v;
      }
    }
  }
  const out = new Float32Array(dh * rowLen);
  for (let dy = 0; dy < dh; dy += 1) {
    const s0 = ty.start[dy], n = ty.count[dy], ob = dy * rowLen;
    for (let i = 0; i < rowLen; i += 1) {
      let v = 0;
      for (let k = s0; k < s0 + n; k += 1) v += ty.weight[k] * rows[ty.index[k] * rowLen + i];
      out[ob + i] = round ? Math.min(255, Math.max(0, halves ? Math.floor(v + 0.5) : roundHalfEven(v))) : v;
    }
  }
  return out;
}

/** An RGBA image resized with cv2.INTER_AREA (shrinking) as fomm.media.image.resize does. */
export function resizeImageArea(img, dw, dh) {
  const rgb = toRGB(img);
  const out = resizeArea(rgb, img.width, img.height, 3, dw, dh, true);
  return fromRGB(out, dw, dh);
}

export function toRGB(img) {
  const n = img.width * img.height, out = new Uint8Array(n * 3);
  for (let i = 0; i < n; i += 1) {
    out[3 * i] = img.data[4 * i]; out[3 * i + 1] = img.data[4 * i + 1];
    out[3 * i + 2] = img.data[4 * i + 2];
  }
  return out;
}

export function fromRGB(rgb, width, height) {
  const img = makeImage(width, height);
  for (let i = 0; i < width * height; i += 1) {
    img.data[4 * i] = rgb[3 * i]; img.data[4 * i + 1] = rgb[3 * i + 1];
    img.data[4 * i + 2] = rgb[3 * i + 2];
  }
  return img;
}

/** A sub-image copy (integer rectangle, inside the image). */
export function cut(img, x0, y0, x1, y1) {
  const w = x1 - x0, h = y1 - y0, out = makeImage(w, h);
  for (let y = 0; y < h; y += 1) {
    const s = ((y0 + y) * img.width + x0) * 4;
    out.data.set(img.data.subarray(s, s + w * 4), y * w * 4);
  }
  return out;
}

/** cv2.pyrDown of an RGBA image (BORDER_REFLECT_101, 5-tap binomial, rounded). */
export function pyrDown(img) {
  const { width: w, height: h, data } = img;
  const dw = (w + 1) >> 1, dh = (h + 1) >> 1;
  const reflect = (i, n) => {
    if (n === 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
    return i;
  };
  const rows = new Int32Array(dw * h * 3);  // horizontal pass: 1 4 6 4 1
  for (let y = 0; y < h; y += 1) {
    const row = y * w * 4, out = y * dw * 3;
    for (let x = 0; x < dw; x += 1) {
      const c0 = 2 * x;
      if (c0 >= 2 && c0 + 2 < w) {
        const b = row + (c0 - 2) * 4;
        for (let c = 0; c < 3; c += 1) {
          rows[out + 3 * x + c] = data[b + c] + 4 * data[b + 4 + c] + 6 * data[b + 8 + c]
            + 4 * data[b + 12 + c] + data[b + 16 + c];
        }
      } else {
        const i0 = row + reflect(c0 - 2, w) * 4, i1 = row + reflect(c0 - 1, w) * 4;
        const i2 = row + reflect(c0, w) * 4, i3 = row + reflect(c0 + 1, w) * 4;
        const i4 = row + reflect(c0 + 2, w) * 4;
        for (let c = 0; c < 3; c += 1) {
          rows[out + 3 * x + c] = data[i0 + c] + 4 * data[i1 + c] + 6 * data[i2 + c]
            + 4 * data[i3 + c] + data[i4 + c];
        }
      }
    }
  }
  const out = makeImage(dw, dh), od = out.data, stride = dw * 3;
  for (let y = 0; y < dh; y += 1) {
    const r0 = reflect(2 * y - 2, h) * stride, r1 = reflect(2 * y - 1, h) * stride;
    const r2 = reflect(2 * y, h) * stride, r3 = reflect(2 * y + 1, h) * stride;
    const r4 = reflect(2 * y + 2, h) * stride;
    for (let x = 0; x < dw; x += 1) {
      const o = (y * dw + x) * 4;
      for (let c = 0; c < 3; c += 1) {
        const k = 3 * x + c;
        od[o + c] = (rows[r0 + k] + 4 * rows[r1 + k] + 6 * rows[r2 + k] + 4 * rows[r3 + k]
          + rows[r4 + k] + 128) >> 8;
      }
    }
  }
  return out;
}

function cubicWeights(t) {
  const A = -0.75;
  const w0 = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A;
  const w1 = ((A + 2) * t - (A + 3)) * t * t + 1;
  const w2 = ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1;
  return [w0, w1, w2, 1 - w0 - w1 - w2];
}

const LINEAR_TABLE = [], CUBIC_TABLE = [];
for (let i = 0; i < 32; i += 1) {
  const t = i / 32;
  LINEAR_TABLE.push([1 - t, t]);
  CUBIC_TABLE.push(cubicWeights(t));
}

function fixedWeights(wx, wy) {
  // cv2's 2-D interpolation table: products in 1/32768, rounded, the sum fixed at 32768
  const n = wx.length, out = new Int32Array(n * n);
  let sum = 0, big = 0;
  for (let y = 0; y < n; y += 1) {
    for (let x = 0; x < n; x += 1) {
      const v = Math.round(wx[x] * wy[y] * 32768);
      out[y * n + x] = v; sum += v;
      if (Math.abs(v) > Math.abs(out[big])) big = y * n + x;
    }
  }
  out[big] += 32768 - sum;
  return out;
}

const WEIGHT_CACHE = { 2: new Map(), 4: new Map() };

function weightsFor(n, ix, iy) {
  const key = iy * 32 + ix, cache = WEIGHT_CACHE[n];
  let w = cache.get(key);
  if (!w) {
    const table = n === 2 ? LINEAR_TABLE : CUBIC_TABLE;
    w = fixedWeights(table[ix], table[iy]);
    cache.set(key, w);
  }
  return w;
}

/** cv2.warpAffine(src, M, (dw, dh), flags=interp | WARP_INVERSE_MAP): M maps destination pixel
 * indices to source ones; border "replicate" or "black"; RGBA in and out. */
export function warpAffine(img, M, dw, dh, border = "replicate", interp = "linear") {
  const { width: sw, height: sh, data } = img;
  const out = makeImage(dw, dh), od = out.data;
  const n = interp === "cubic" ? 4 : 2, off = n === 4 ? 1 : 0;
  const black = border === "black";
  for (let y = 0; y < dh; y += 1) {
    // cv2's fixed point: 1/1024 pixel map, rounded to the 1/32 interpolation grid
    const rowX = Math.round((M[1] * y + M[2]) * 1024) + 16;
    const rowY = Math.round((M[4] * y + M[5]) * 1024) + 16;
    for (let x = 0; x < dw; x += 1) {
      const X = (rowX + Math.round(M[0] * x * 1024)) >> 5;
      const Y = (rowY + Math.round(M[3] * x * 1024)) >> 5;
      const x0 = (X >> 5) - off, y0 = (Y >> 5) - off;
      const w = weightsFor(n, X & 31, Y & 31);
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < n; j += 1) {
        let yy = y0 + j;
        if (yy < 0 || yy >= sh) { if (black) continue; yy = yy < 0 ? 0 : sh - 1; }
        for (let i = 0; i < n; i += 1) {
          let xx = x0 + i;
          if (xx < 0 || xx >= sw) { if (black) continue; xx = xx < 0 ? 0 : sw - 1; }
          const k = w[j * n + i], s = (yy * sw + xx) * 4;
          r += k * data[s]; g += k * data[s + 1]; b += k * data[s + 2];
        }
      }
      const o = (y * dw + x) * 4;
      od[o] = (r + 16384) >> 15; od[o + 1] = (g + 16384) >> 15; od[o + 2] = (b + 16384) >> 15;
    }
  }
  return out;
}

/** A float plane warped bilinearly (cv2.warpAffine of float32, border black). */
export function warpPlane(plane, M, dw, dh) {
  const { width: sw, height: sh, data } = plane;
  const out = new Float32Array(dw * dh);
  for (let y = 0; y < dh; y += 1) {
    // cv2's fixed point: 1/1024 pixel map, rounded to the 1/32 interpolation grid
    const rowX = Math.round((M[1] * y + M[2]) * 1024) + 16;
    const rowY = Math.round((M[4] * y + M[5]) * 1024) + 16;
    for (let x = 0; x < dw; x += 1) {
      const X = (rowX + Math.round(M[0] * x * 1024)) >> 5;
      const Y = (rowY + Math.round(M[3] * x * 1024)) >> 5;
      const x0 = X >> 5, y0 = Y >> 5, fx = (X & 31) / 32, fy = (Y & 31) / 32;
      let v = 0;
      for (let j = 0; j < 2; j += 1) {
        const yy = y0 + j;
        if (yy < 0 || yy >= sh) continue;
        for (let i = 0; i < 2; i += 1) {
          const xx = x0 + i;
          if (xx < 0 || xx >= sw) continue;
          v += (i ? fx : 1 - fx) * (j ? fy : 1 - fy) * data[yy * sw + xx];
        }
      }
      out[y * dw + x] = v;
    }
  }
  return { data: out, width: dw, height: dh };
}

export function mapPoint(M, x, y) {
  return [M[0] * x + M[1] * y + M[2], M[3] * x + M[4] * y + M[5]];
}

/** fomm.faces.crop.warp: anti-aliased (Gaussian pyramid below scale 2) affine resampling. */
export function warp(img, M, dw, dh, border = "replicate", interp = "linear") {
  let affine = M.slice();
  let scale = Math.max(Math.abs(affine[0]), Math.abs(affine[4]));
  if (scale >= 2) {
    const c0 = mapPoint(affine, -0.5, -0.5), c1 = mapPoint(affine, dw - 0.5, dh - 0.5);
    const pad = Math.ceil(4 * scale) + 2;
    const ix0 = Math.max(Math.floor(Math.min(c0[0], c1[0])) - pad, 0);
    const iy0 = Math.max(Math.floor(Math.min(c0[1], c1[1])) - pad, 0);
    const ix1 = Math.min(Math.ceil(Math.max(c0[0], c1[0])) + pad, img.width);
    const iy1 = Math.min(Math.ceil(Math.max(c0[1], c1[1])) + pad, img.height);
    if (ix1 > ix0 && iy1 > iy0) {
      img = cut(img, ix0, iy0, ix1, iy1);
      affine[2] -= ix0; affine[5] -= iy0;
    }
    while (scale >= 2 && Math.min(img.width, img.height) >= 2) {
      img = pyrDown(img);
      affine = affine.map((v) => v / 2);
      scale /= 2;
    }
  }
  return warpAffine(img, affine, dw, dh, border, interp);
}

/** fomm.faces.crop.crop_to_image_affine: crop pixel indices → image pixel indices. */
export function cropToImage(box, size) {
  const [x0, y0, x1, y1] = box;
  const sx = (x1 - x0) / size, sy = (y1 - y0) / size;
  return [sx, 0, x0 + 0.5 * sx - 0.5, 0, sy, y0 + 0.5 * sy - 0.5];
}

export function invertAffine(M) {
  const det = M[0] * M[4] - M[1] * M[3];
  const a = M[4] / det, b = -M[1] / det, d = -M[3] / det, e = M[0] / det;
  return [a, b, -(a * M[2] + b * M[5]), d, e, -(d * M[2] + e * M[5])];
}

/** fomm.faces.crop.crop: the box cut out and resized to size × size (edge pixels repeated). */
export function crop(img, box, size) {
  return warp(img, cropToImage(box, size), size, size, "replicate");
}

/** fomm.media.image.to_tensor for one image: float32 (1, 3, H, W) data in [0, 1]. */
export function toTensorData(img) {
  const n = img.width * img.height, out = new Float32Array(3 * n);
  for (let i = 0; i < n; i += 1) {
    out[i] = img.data[4 * i] / 255;
    out[n + i] = img.data[4 * i + 1] / 255;
    out[2 * n + i] = img.data[4 * i + 2] / 255;
  }
  return out;
}

/** fomm.media.image.to_frames for one (3, H, W) float plane set: clamped, round(x · 255). */
export function fromTensorData(data, width, height) {
  const n = width * height, img = makeImage(width, height);
  for (let c = 0; c < 3; c += 1) {
    for (let i = 0; i < n; i += 1) {
      const v = data[c * n + i];
      img.data[4 * i + c] = roundHalfEven(Math.fround((v > 1 ? 1 : v < 0 || v !== v ? 0 : v) * 255));
    }
  }
  return img;
}
