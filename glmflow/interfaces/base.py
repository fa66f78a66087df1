"""Shared pieces of glmflow's Nipype interfaces."""

from nipype.interfaces.base import BaseInterfaceInputSpec, traits

from glmflow import __version__


class GLMFlowInputSpec(BaseInterfaceInputSpec):
    """Every glmflow input spec carries the package version.

    The version is part of each node's input hash, so a cache written by another glmflow
    version is never served as if it were current.
    """

    glmflow_version = traits.Str(
        __version__, usedefault=True, desc="glmflow version (part of the cache key)"
    )


def optional(value):
    """Nipype's Undefined (or None) as None, anything else unchanged."""
    from nipype.interfaces.base import isdefined

    return value if isdefined(value) and value is not None else None
