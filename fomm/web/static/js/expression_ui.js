// The expression layer's controls (as on the server-side live page): on/off, the region that
// moves, the strength and the offsets. The layer itself comes from ../expression/ (the face mesh
// networks listed in site.json); without them the controls stay off and say why.

const SLIDERS = ["expression_scale", "eye_offset", "mouth_offset", "smile_offset"];
const $ = (id) => document.getElementById(id);

export class ExpressionControls {
  constructor(state, manifest, say) {
    this.state = state; this.manifest = manifest; this.say = say;
    this.module = null; this.meshModels = null; this.animator = null;
    this.available = Boolean(manifest.face_mesh);
    for (const name of SLIDERS) $(name).addEventListener("input", () => this.changed());
    for (const name of ["expression", "animation_region"]) {
      $(name).addEventListener("change", () => this.changed());
    }
    this.showValues();
    if (!this.available) this.disable("(not in this site: it was built without the face mesh)");
  }

  disable(note) {
    $("expression-note").textContent = note;
    for (const name of [...SLIDERS, "expression", "animation_region"]) $(name).disabled = true;
  }

  showValues() {
    for (const name of SLIDERS) $(`${name}-value`).textContent = Number($(name).value).toFixed(2);
  }

  options() {
    return { region: $("animation_region").value, scale: Number($("expression_scale").value),
      eyes: Number($("eye_offset").value), mouth: Number($("mouth_offset").value),
      smile: Number($("smile_offset").value) };
  }

  /** The layer's module and face-mesh networks, loaded with the page (so that turning the
   * layer on later fetches nothing); their bytes are added to `counter.bytes`. */
  async preload(counter) {
    if (!this.available) return;
    try {
      await this.loadModule(counter);
    } catch (err) {
      this.available = false;
      this.disable(`(unavailable: ${err.message})`);
    }
  }

  async loadModule(counter = { bytes: 0 }) {
    if (this.module) return this.module;
    const module = await import("../expression/layer.js");
    const { ort } = this.state.runtime;
    const meshModels = {};
    for (const [name, path] of Object.entries(this.manifest.face_mesh)) {
      const bytes = new Uint8Array(await (await fetch(path)).arrayBuffer());
      counter.bytes += bytes.length;
      meshModels[name] = await ort.InferenceSession.create(bytes, this.state.options);
    }
    this.meshModels = meshModels;
    this.module = module;
    return module;
  }

  /** A new photo: the layer is rebuilt for it when the box is on. */
  async attach(animator) {
    this.animator = animator;
    animator.layer = null;
    await this.changed();
  }

  async changed() {
    this.showValues();
    const animator = this.animator;
    if (!animator || !this.available) return;
    if (!$("expression").checked) {
      animator.layer = null;
      $("expression-note").textContent = "(off)";
      return;
    }
    const options = this.options();
    try {
      if (!animator.layer) {
        const { ExpressionLayer } = await this.loadModule();
        animator.layerReference = null;  // a new layer takes the reference afresh
        animator.layer = await ExpressionLayer.create(this.state.runtime.ort, this.meshModels,
          new ImageData(new Uint8ClampedArray(animator.crop.data), animator.crop.width,
            animator.crop.height), options);
      }
      animator.layer.options = options;
      $("expression-note").textContent = `(${options.region} ×${options.scale})`;
    } catch (err) {
      animator.layer = null;
      $("expression-note").textContent = `(unavailable: ${err.message})`;
    }
  }
}
