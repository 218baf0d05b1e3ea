"""The browser site: fomm's frame path on onnxruntime-web, animating on the user's device.

:func:`build_site` writes it (``fomm export-web DIR``); ``fomm serve`` serves it at ``/device/``.
"""

from fomm.web.site import HEADERS, SiteInfo, build_site

__all__ = ["HEADERS", "SiteInfo", "build_site"]
