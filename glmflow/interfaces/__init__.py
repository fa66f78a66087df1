"""Nipype interfaces: one per step of a first-level analysis, thin wrappers over glmflow.core."""

from glmflow.interfaces.contrast import EstimateContrast
from glmflow.interfaces.design import MakeDesignMatrix
from glmflow.interfaces.fit import FitGLM
from glmflow.interfaces.masking import ComputeMask

__all__ = ["ComputeMask", "EstimateContrast", "FitGLM", "MakeDesignMatrix"]
