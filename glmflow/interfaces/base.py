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

    design_file = File(exists=True, mandatory=True, desc="design matrix TSV")
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
    # Not part of the cache key: the fit is identical for any number of threads. Nipype
    # sets it from the node's n_procs, which is what MultiProc and the schedulers reserve.
    num_threads = traits.Int(1, usedefault=True, nohash=True,
                             desc="threads fitting voxel chunks at once")


def optional(value):
    """Nipype's Undefined (or None) as None, anything else unchanged."""
    from nipype.interfaces.base import isdefined

    return value if isdefined(value) and value is not None else None


def fit_arguments(inputs, n_scans):
    """Read and check what :class:`FitOptionsInputSpec` describes, for ``fit_glm``.

    Parameters
    ----------
    inputs : FitOptionsInputSpec
        A fit interface's inputs.
    n_scans : int
        Scans in the run (before any sample mask).

    Returns
    -------
    design : pandas.DataFrame
    kwargs : dict
        ``fit_glm``'s estimation keyword arguments.
    """
    from glmflow.core.design import load_design
    from glmflow.core.glm import chunk_size_for
    from glmflow.core.io import read_sample_mask
    from glmflow.core.validation import check_design, check_sample_mask

    design = check_design(load_design(inputs.design_file), source=inputs.design_file)
    sample_file = optional(inputs.sample_mask_file)
    sample_mask = None
    if sample_file is not None:
        sample_mask = check_sample_mask(read_sample_mask(sample_file), n_scans=n_scans,
                                        source=sample_file, n_regressors=design.shape[1])
    scaling = inputs.signal_scaling
    return design, {
        "noise_model": inputs.noise_model,
        "t_r": optional(inputs.t_r),
        "signal_scaling": tuple(scaling) if isinstance(scaling, list) else scaling,
        "standardize": inputs.standardize,
        "sample_mask": sample_mask,
        "random_state": optional(inputs.random_state),
        "bins": inputs.bins,
        "chunk_size": chunk_size_for(n_scans, inputs.chunk_mb),
        "keep_outputs": not inputs.minimize_memory,
        "n_threads": max(1, int(inputs.num_threads)),
    }
