"""Facial expression by design on top of the FOMM result (issue #21).

FOMM moves the photo's head like the driver's; a smile, a pout or a blink of the driver does not
reach the photo. :class:`ExpressionLayer` adds them with 2D warps that imitate the driver's facial
motion, in the spirit of "Bringing Portraits to Life" (Averbuch-Elor et al., SIGGRAPH Asia 2017):
landmarks of the driver (its expression, head motion taken out), of the photo and of the result,
a confined thin-plate warp, and the mouth's interior filled from the driver. No learned model of
the target face.
"""

from __future__ import annotations

from fomm.expression.layer import ExpressionLayer
from fomm.expression.options import REGIONS, ExpressionOptions, Region, uses_networks

__all__ = ["REGIONS", "ExpressionLayer", "ExpressionOptions", "Region", "uses_networks"]
