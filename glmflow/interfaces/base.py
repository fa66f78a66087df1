"""Shared pieces of glmflow's Nipype interfaces."""

from nipype.interfaces.base import BaseInterfaceInputSpec, File, traits

from glmflow import __version__


class GLMFlowInputSpec(BaseInterfaceInputSpec):
    """Every glmflow input spec carries the package version.

    The version is part of each node's input hash, so a cache written by another glmflow
    version is never served as if it were current.
    """

    glmflow_version = traits.Str(
        __version__, usedefault=True, desc="glmflow version (part of the cache key)"
    )


class FitOptionsInputSpec(GLMFlowInputSpec):
    """The estimation options shared by the volume and surface fit interfaces."""

    noise_model = traits.Str("ar1", usedefault=True, desc="'ols' or 'arN'")
    t_r = traits.Either(None, traits.Float, default=None, usedefault=True, desc="TR (s)")
    signal_scaling = traits.Any(0, usedefault=True, desc="0, 1, [0, 1] or False")
    standardize = traits.Any(False, usedefault=True, desc="nilearn's standardize")
    sample_mask_file = traits.Either(None, File(exists=True), default=None, usedefault=True,
                                     desc="TSV of kept volume indices (scrubbing)")
    random_state = traits.Either(None, traits.Int, default=None, usedefault=True,
                                 desc="K-means seed for AR(p>1)")
    bins = traits.Int(100, usedefault=True,
                      desc="nilearn's AR(1) bins / AR(p) K-means clusters")
    minimize_memory = traits.Bool(True, usedefault=True,
                                  desc="if False, also write residuals, predicted and R-square")
    chunk_mb = traits.Float(128.0, usedefault=True, desc="working memory per voxel chunk (MB)")


def optional(value):
    """Nipype's Undefined (or None) as None, anything else unchanged."""
    from nipype.interfaces.base import isdefined

    return value if isdefined(value) and value is not None else None
