// Paste-back of the animated face crop into the photo, as fomm.faces.paste.Paster: a rounded-square
// feathered mask, the crop's colour shifted so that its border ring matches the photo's, a bicubic
// warp onto the photo's pixels and cv2.blendLinear.
import { cropToImage, invertAffine, makeImage, roundHalfEven, warp, warpPlane } from "./imageops.js";

const FEATHER = 0.08, MAX_COLOUR_SHIFT = 24;
const smoothstep = (x) => { x = Math.min(Math.max(x, 0), 1); return x * x * (3 - 2 * x); };

function weightedMean(img, weights) {
  let total = 0;
  const sum = [0, 0, 0];
  for (let i = 0; i < weights.length; i += 1) {
    const w = weights[i];
    if (!w) continue;
    total += w;
    sum[0] += w * img.data[4 * i]; sum[1] += w * img.data[4 * i + 1]; sum[2] += w * img.data[4 * i + 2];
  }
  return total > 0 ? sum.map((v) => v / total) : null;
}

export class Paster {
  /** photo: RGBA image; box: the square crop box; cropSize: the animated crops' side. */
  constructor(photo, box, cropSize, { feather = FEATHER, colourMatch = true } = {}) {
    this.image = photo; this.box = box; this.colourMatch = colourMatch;
    const [x0, y0, x1, y1] = box;
    this.roi = [Math.max(Math.floor(x0), 0), Math.max(Math.floor(y0), 0),
      Math.min(Math.ceil(x1), photo.width), Math.min(Math.ceil(y1), photo.height)];
    const [rx0, ry0, rx1, ry1] = this.roi;
    this.rw = rx1 - rx0; this.rh = ry1 - ry0;
    const side = Math.max(x1 - x0, y1 - y0), cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const outer = 1 - 1 / Math.max(side, 1), ramp = Math.max(2 * feather, 2 / Math.max(side, 1));
    this.alpha = new Float32Array(this.rw * this.rh);
    for (let j = 0; j < this.rh; j += 1) {
      const v = Math.abs(ry0 + j + 0.5 - cy) / ((y1 - y0) / 2);
      for (let i = 0; i < this.rw; i += 1) {
        const u = Math.abs(rx0 + i + 0.5 - cx) / ((x1 - x0) / 2);
        this.alpha[j * this.rw + i] = smoothstep((outer - (u ** 4 + v ** 4) ** 0.25) / ramp);
      }
    }
    const ring = this.alpha.map((a) => a * (1 - a));
    const original = makeImage(this.rw, this.rh);
    for (let j = 0; j < this.rh; j += 1) {
      const s = ((ry0 + j) * photo.width + rx0) * 4;
      original.data.set(photo.data.subarray(s, s + this.rw * 4), j * this.rw * 4);
    }
    this.originalRingMean = weightedMean(original, ring);
    // ROI → crop and crop → ROI affines, the ring at crop resolution
    const toCrop = invertAffine(cropToImage(box, cropSize));
    toCrop[2] += toCrop[0] * rx0 + toCrop[1] * ry0;
    toCrop[5] += toCrop[3] * rx0 + toCrop[4] * ry0;
    this.affine = toCrop;
    this.cropSize = cropSize;
    this.cropRing = warpPlane({ data: ring, width: this.rw, height: this.rh }, invertAffine(toCrop),
      cropSize, cropSize).data;
  }

  colourMatched(crop) {
    const mean = weightedMean(crop, this.cropRing);
    if (!this.colourMatch || !this.originalRingMean || !mean) return crop;
    const shift = this.originalRingMean.map((o, c) =>
      Math.min(Math.max(o - mean[c], -MAX_COLOUR_SHIFT), MAX_COLOUR_SHIFT));
    const out = makeImage(crop.width, crop.height);
    for (let i = 0; i < crop.width * crop.height; i += 1) {
      for (let c = 0; c < 3; c += 1) out.data[4 * i + c] = roundHalfEven(crop.data[4 * i + c] + shift[c]);
    }
    return out;
  }

  /** The photo with the animated crop (RGBA, cropSize²) blended in: a new RGBA image. */
  paste(crop) {
    const out = { data: new Uint8ClampedArray(this.image.data), width: this.image.width,
      height: this.image.height };
    const animated = warp(this.colourMatched(crop), this.affine, this.rw, this.rh, "replicate", "cubic");
    const [rx0, ry0] = this.roi;
    for (let j = 0; j < this.rh; j += 1) {
      for (let i = 0; i < this.rw; i += 1) {
        const a = this.alpha[j * this.rw + i];
        if (a === 0) continue;
        const b = 1 - a, o = ((ry0 + j) * out.width + rx0 + i) * 4, s = (j * this.rw + i) * 4;
        for (let c = 0; c < 3; c += 1) {
          out.data[o + c] = roundHalfEven((a * animated.data[s + c] + b * out.data[o + c]) / (a + b + 1e-5));
        }
      }
    }
    return out;
  }
}
