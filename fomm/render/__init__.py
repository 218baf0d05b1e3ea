"""Rendering at the photo's resolution: the detail step and its spline sampler."""
