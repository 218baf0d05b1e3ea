"""The FOMM networks; build them with :func:`fomm.models.registry.build_models`."""

from fomm.models.registry import Models, build_models, count_parameters

__all__ = ["Models", "build_models", "count_parameters"]
