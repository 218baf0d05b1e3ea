// One-Euro filter (Casiez et al., CHI 2012) over flat float arrays (fomm/expression/smoothing.py).

export class OneEuro {
  constructor({ minCutoff = 1.5, beta = 0.5, rate = 25.0, dCutoff = 1.0 } = {}) {
    this.minCutoff = minCutoff;
    this.beta = beta;
    this.rate = rate;
    this.dCutoff = dCutoff;
    this.reset();
  }

  alpha(cutoff) {
    const tau = 1.0 / (2 * Math.PI * cutoff);
    return 1.0 / (1.0 + tau * this.rate);
  }

  /** The filtered value of x (the first call returns a copy of x). */
  filter(x) {
    if (this.value === null || this.value.length !== x.length) {
      this.value = Float64Array.from(x);
      this.speed = new Float64Array(x.length);
      return Float64Array.from(x);
    }
    const aD = this.alpha(this.dCutoff);
    for (let i = 0; i < x.length; i++) {
      const speed = (x[i] - this.value[i]) * this.rate;
      this.speed[i] += aD * (speed - this.speed[i]);
      const a = this.alpha(this.minCutoff + this.beta * Math.abs(this.speed[i]));
      this.value[i] += a * (x[i] - this.value[i]);
    }
    return Float64Array.from(this.value);
  }

  reset() {
    this.value = null;
    this.speed = null;
  }
}
