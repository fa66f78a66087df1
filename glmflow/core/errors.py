"""The exception types users see.

Every error names the parameter, file or column at fault, what was found and what was
expected. They subclass ``ValueError`` (or ``OSError`` for files) where nilearn raises those,
so code written for nilearn keeps catching them.
"""


class GLMFlowError(Exception):
    """Base class of every error raised on purpose by glmflow."""


class ParameterError(GLMFlowError, ValueError):
    """A model parameter has the wrong type or an out-of-range value."""


class EventsError(GLMFlowError, ValueError):
    """An events table is malformed (columns, values, timing)."""


class ConfoundsError(GLMFlowError, ValueError):
    """A confounds table is malformed (length, NaNs, non-numeric columns)."""


class ImageError(GLMFlowError, ValueError):
    """An image has the wrong dimensionality, geometry or content."""


class MaskError(ImageError):
    """A mask is empty, all-zero or does not overlap the data."""


class DesignError(GLMFlowError, ValueError):
    """A design matrix cannot be estimated (too many regressors, bad columns)."""


class ContrastError(GLMFlowError, ValueError):
    """A contrast is unknown, malformed, has the wrong length or is empty."""


class SampleMaskError(GLMFlowError, ValueError):
    """Sample masks are out of range, duplicated or keep too few volumes."""


class InputFileError(GLMFlowError, OSError):
    """A file is missing, unreadable or of the wrong format."""


class OutputError(GLMFlowError, OSError):
    """An output cannot be written, or would silently replace a different result."""


class ModelFileError(GLMFlowError, ValueError):
    """A fitted-model file is of an unknown version or is corrupt."""
