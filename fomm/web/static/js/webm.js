// A small WebM (Matroska) writer for one VP8/VP9 video track of WebCodecs chunks: EBML header,
// segment info with the duration, the track, and one cluster per key frame (SimpleBlocks with
// millisecond timecodes). Written once at the end, so every size is known.

const enc = new TextEncoder();

function idBytes(id) {
  const out = [];
  for (let v = id; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return out;
}

function sizeBytes(n) {
  // the shortest EBML variable-size integer that holds n (all ones is reserved)
  for (let len = 1; len <= 8; len += 1) {
    if (n < 2 ** (7 * len) - 1) {
      const out = new Array(len).fill(0);
      let v = n;
      for (let i = len - 1; i >= 0; i -= 1) { out[i] = v & 0xff; v = Math.floor(v / 256); }
      out[0] |= 1 << (8 - len);
      return out;
    }
  }
  throw new Error("element too large");
}

function uint(n) {
  const out = [];
  do { out.unshift(n & 0xff); n = Math.floor(n / 256); } while (n > 0);
  return new Uint8Array(out);
}

function float64(x) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setFloat64(0, x);
  return b;
}

function concat(parts) {
  const total = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function element(id, ...children) {
  const body = concat(children.map((c) => (typeof c === "string" ? enc.encode(c) : c)));
  return concat([new Uint8Array(idBytes(id)), new Uint8Array(sizeBytes(body.length)), body]);
}

export class WebMWriter {
  /** {width, height, codec: a WebCodecs codec string ("vp8", "vp09..."), fps} */
  constructor({ width, height, codec, fps }) {
    Object.assign(this, { width, height, fps });
    this.codecId = codec.startsWith("vp09") ? "V_VP9" : "V_VP8";
    this.chunks = [];
  }

  /** Take an EncodedVideoChunk (timestamps in microseconds). */
  add(chunk) {
    const data = new Uint8Array(chunk.byteLength);
    chunk.copyTo(data);
    this.chunks.push({ ms: Math.round(chunk.timestamp / 1000), key: chunk.type === "key", data });
  }

  /** The file, as a Blob of type video/webm. */
  finish() {
    const chunks = this.chunks.slice().sort((a, b) => a.ms - b.ms);
    const last = chunks.length ? chunks[chunks.length - 1].ms : 0;
    const duration = last + 1000 / this.fps;
    const header = element(0x1A45DFA3, element(0x4286, uint(1)), element(0x42F7, uint(1)),
      element(0x42F2, uint(4)), element(0x42F3, uint(8)), element(0x4282, "webm"),
      element(0x4287, uint(2)), element(0x4285, uint(2)));
    const info = element(0x1549A966, element(0x2AD7B1, uint(1e6)), element(0x4D80, "fomm"),
      element(0x5741, "fomm"), element(0x4489, float64(duration)));
    const tracks = element(0x1654AE6B, element(0xAE, element(0xD7, uint(1)), element(0x73C5, uint(1)),
      element(0x83, uint(1)), element(0x86, this.codecId),
      element(0x23E383, uint(Math.round(1e9 / this.fps))),
      element(0xE0, element(0xB0, uint(this.width)), element(0xBA, uint(this.height)))));
    const clusters = [];
    let current = null;
    for (const c of chunks) {
      if (!current || c.key || c.ms - current.ms > 30000) {
        current = { ms: c.ms, blocks: [] };
        clusters.push(current);
      }
      const rel = c.ms - current.ms;
      const head = new Uint8Array([0x81, (rel >> 8) & 0xff, rel & 0xff, c.key ? 0x80 : 0x00]);
      current.blocks.push(element(0xA3, head, c.data));
    }
    const body = [info, tracks, ...clusters.map((cl) => element(0x1F43B675, element(0xE7, uint(cl.ms)), ...cl.blocks))];
    return new Blob([header, element(0x18538067, ...body)], { type: "video/webm" });
  }
}
