// The per-frame step shared by the live camera and file mode, as fomm.live.loop.LiveAnimator:
// the photo's face framed and encoded once (fomm.inference.pipeline.source_target), then per frame
// the driving face framed (LiveFramer), its keypoints smoothed, the reference pose taken, the
// generator run and its crop pasted back into the photo.
import { crop } from "./imageops.js";
import { KeypointSmoother, LiveFramer, MARGIN, squareBox } from "./framing.js";
import { normalizeKp } from "./model.js";
import { Paster } from "./paste.js";

export class NoFaceError extends Error {}

export class FaceAnimator {
  /** networks: Networks; detector: MTCNN; photo: RGBA image; options: {relative, adaptScale,
   * smoothing, smoothingCutoff, detectEvery, margin}. Use FaceAnimator.create. */
  constructor(networks, detector, photo, options = {}) {
    this.networks = networks; this.detector = detector; this.photo = photo;
    this.options = { relative: true, adaptScale: false, smoothing: true, smoothingCutoff: 1.0,
      detectEvery: 3, margin: MARGIN, ...options };
    this.layer = null;  // the expression layer, when on
    this.reset();
  }

  static async create(networks, detector, photo, options) {
    const self = new FaceAnimator(networks, detector, photo, options);
    const faces = await detector.detect(photo);
    if (!faces.length) throw new NoFaceError("no face found in the photo: pick a portrait");
    const size = networks.size;
    self.box = squareBox(faces[0].box, photo.width, photo.height, self.options.margin);
    self.crop = crop(photo, self.box, size);
    self.paster = new Paster(photo, self.box, size);
    self.source = await networks.prepareSource(self.crop);
    self.still = self.paster.paste(self.crop);
    return self;
  }

  /** Forget the followed face and the reference pose (a new stream); `track`: the stream's
   * framer finds the followed face again from its last box (LiveFramer's `track`). */
  reset({ track = false } = {}) {
    this.layerReference = null;
    const o = this.options;
    this.framer = new LiveFramer(this.detector, this.networks.size,
      { detectEvery: o.detectEvery, smoothing: o.smoothing, margin: o.margin, track });
    this.smoother = o.smoothing ? new KeypointSmoother(o.smoothingCutoff) : null;
    this.reference = null; this.referenceCrop = null; this.retakeNext = false;
    if (this.layer) this.layer.reset();
  }

  retake() { this.retakeNext = true; }

  get needsReference() { return this.reference === null || this.retakeNext; }

  /** The first half: {kp, reference, crop, referenceCrop} for an RGBA frame taken at t s, or
   * null when no face is in view. */
  async pose(frame, t) {
    const faceCrop = await this.framer.frame(frame, t);
    if (!faceCrop) { if (this.smoother) this.smoother.reset(); return null; }
    let kp = await this.networks.keypoints(faceCrop);
    if (this.smoother) kp = this.smoother.smooth(kp, t);
    let newReference = false;
    if (this.reference === null || this.retakeNext) {
      this.reference = kp; this.referenceCrop = faceCrop; this.retakeNext = false;
      newReference = true;
    }
    return { kp, reference: this.reference, crop: faceCrop, referenceCrop: this.referenceCrop,
      newReference, box: this.framer.box };
  }

  /** Whether the networks draw the face (the expression layer's regions that keep the head
   * still draw on the photo's own crop, without the paste's colour match). */
  usesNetworks() {
    const layer = this.layer;
    return !layer || layer.options.region === "all" || layer.options.region === "pose";
  }

  /** The networks' part of `animate`: the generator's crop for a pose (in the generator's worker
   * when the networks have one), or the photo's crop when the layer keeps the head still. */
  async draw(pose) {
    if (!this.usesNetworks()) return this.crop;
    const o = this.options;
    const headOnly = Boolean(this.layer) && this.layer.options.region === "pose";
    // the keypoints on the photo's mouth and jaw keep none of their own motion
    const keep = headOnly ? this.layer.headKeep(this.source.kp.value) : null;
    const kp = normalizeKp(this.source.kp, pose.kp, pose.reference, o.relative, o.adaptScale,
      headOnly, keep);
    return this.networks.generate(this.source, kp);
  }

  /** The expression layer (when on) on a drawn crop: its reference is the reference pose's
   * crop, as in fomm live. */
  async layered(pose, result) {
    const layer = this.layer;
    if (layer) {
      if (this.layerReference !== pose.referenceCrop) {
        layer.reset();
        await layer.setReference(pose.referenceCrop);
        this.layerReference = pose.referenceCrop;
      }
      result = await layer.apply(result, pose.crop);
    }
    return result;
  }

  /** The second half: the animated face crop (RGBA, model size). With the expression layer
   * on, as fomm live: its reference is the reference pose's crop, and the regions that keep the
   * head still (expression, eyes, lips) draw on the photo's own crop without the networks and
   * without the paste's colour match. */
  async animate(pose) {
    this.paster.colourMatch = this.usesNetworks();
    return this.layered(pose, await this.draw(pose));
  }

  /** The end of a frame whose crop `drawn` came from `draw(pose)` (`networks`: whether the
   * networks drew it): the layer and the paste-back, {image, face, crop, box, kp}. */
  async finish(pose, drawn, networks) {
    const animated = await this.layered(pose, drawn);
    this.paster.colourMatch = networks;
    return { image: this.paster.paste(animated), face: true, crop: animated, box: pose.box,
      kp: pose.kp };
  }

  /** The still photo, for a frame without a face. */
  stillFrame() {
    this.paster.colourMatch = true;
    return { image: this.still, face: false, crop: null };
  }

  /** The photo with the face animated by an RGBA frame (or the still photo without a face):
   * {image, face, crop}. */
  async frame(frame, t) {
    const pose = await this.pose(frame, t);
    if (!pose) return this.stillFrame();
    const networks = this.usesNetworks();
    return this.finish(pose, await this.draw(pose), networks);
  }
}
