// Colour of drawn-in features (fomm/expression/colour.py): pixels taken from the driving frame
// (an eye, a mouth's interior) take the chroma of the image they are drawn on, their luma kept.

// full-range BT.601 chroma of RGB: (Cb, Cr) rows; back to RGB from luma and chroma
export const CHROMA = [
  [-0.168736, -0.331264, 0.5],
  [0.5, -0.418688, -0.081312],
];
export const FROM_CHROMA = [
  [0.0, 1.402],
  [-0.344136, -0.714136],
  [1.772, 0.0],
];

const clip = (x, lo, hi) => (x < lo ? lo : x > hi ? hi : x);

/**
 * Mean and spread ([[meanCb, meanCr], [stdCb, stdCr]]) of the chroma of `image` (RGBA) within
 * `box` ([x0, y0, x1, y1]): of its pixels where `skip` (a box-sized mask, or null) is 0, all of
 * them when none is left; each channel times `gain` (or null).
 */
export function chromaStats(image, box, skip = null, gain = null) {
  const { width: w, data } = image;
  const [x0, y0, x1, y1] = box;
  const bw = x1 - x0;
  const sum = [0, 0];
  const sq = [0, 0];
  let n = 0;
  let use = skip;
  if (use !== null && use.every((v) => v)) use = null;
  const g = gain === null ? [1, 1, 1] : gain;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) {
      if (use !== null && use[(y - y0) * bw + (x - x0)]) continue;
      const i = (y * w + x) * 4;
      for (let k = 0; k < 2; k++) {
        const v = gain === null
          ? CHROMA[k][0] * data[i] + CHROMA[k][1] * data[i + 1] + CHROMA[k][2] * data[i + 2]
          : CHROMA[k][0] * (data[i] * g[0]) + CHROMA[k][1] * (data[i + 1] * g[1]) +
            CHROMA[k][2] * (data[i + 2] * g[2]);
        sum[k] += v;
        sq[k] += v * v;
      }
      n++;
    }
  }
  const mean = sum.map((v) => v / n);
  return [mean, sq.map((v, k) => Math.sqrt(Math.max(v / n - mean[k] * mean[k], 0)))];
}

/**
 * `inside` (float RGB, changed in place) with its chroma moved from the `driver`'s statistics to
 * the `photo`'s (chromaStats): its mean shifted, its spread scaled down to the photo's; its luma
 * kept.
 */
export function tint(inside, photo, driver) {
  const scale = [0, 1].map((k) => clip(photo[1][k] / Math.max(driver[1][k], 1e-6), 0, 1));
  for (let q = 0; q < inside.length; q += 3) {
    const rgb = [inside[q], inside[q + 1], inside[q + 2]];
    const chroma = CHROMA.map((row) => row[0] * rgb[0] + row[1] * rgb[1] + row[2] * rgb[2]);
    const moved = chroma.map((v, k) => photo[0][k] + (v - driver[0][k]) * scale[k]);
    for (let c = 0; c < 3; c++) {
      const f = FROM_CHROMA[c];
      inside[q + c] = rgb[c] + f[0] * (moved[0] - chroma[0]) + f[1] * (moved[1] - chroma[1]);
    }
  }
}
