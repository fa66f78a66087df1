"""Nipype interfaces: one per step of a first-level analysis, thin wrappers over glmflow.core.

Imported lazily: a batch job that runs one interface then imports only that module (and
what it needs), which saves seconds per job on a cluster.
"""

import importlib

_MODULES = {
    "ComputeMask": "masking",
    "ComputeSurfaceMask": "surface",
    "CountScans": "surface",
    "EstimateContrast": "contrast",
    "EstimateSurfaceContrast": "surface",
    "FitGLM": "fit",
    "FitSurfaceGLM": "surface",
    "GLMReport": "report",
    "MakeDesignMatrix": "design",
}

__all__ = sorted(_MODULES)


def __getattr__(name):
    if name in _MODULES:
        module = importlib.import_module(f"glmflow.interfaces.{_MODULES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'glmflow.interfaces' has no attribute {name!r}")
