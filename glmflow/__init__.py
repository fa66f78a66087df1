"""glmflow: first-level fMRI GLMs as Nipype workflows, numerically identical to nilearn."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy import: ``import glmflow.core`` must not pull in nipype (the facade does).
    if name == "FirstLevelModel":
        from glmflow.model import FirstLevelModel

        return FirstLevelModel
    raise AttributeError(f"module 'glmflow' has no attribute {name!r}")


__all__ = ["FirstLevelModel", "__version__"]
