"""Nipype interfaces: one per step of a first-level analysis, thin wrappers over glmflow.core."""

from glmflow.interfaces.contrast import EstimateContrast
from glmflow.interfaces.design import MakeDesignMatrix
from glmflow.interfaces.fit import FitGLM
from glmflow.interfaces.masking import ComputeMask
from glmflow.interfaces.report import GLMReport
from glmflow.interfaces.surface import (
    ComputeSurfaceMask,
    CountScans,
    EstimateSurfaceContrast,
    FitSurfaceGLM,
)

__all__ = [
    "ComputeMask",
    "ComputeSurfaceMask",
    "CountScans",
    "EstimateContrast",
    "EstimateSurfaceContrast",
    "FitGLM",
    "FitSurfaceGLM",
    "GLMReport",
    "MakeDesignMatrix",
]
