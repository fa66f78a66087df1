"""Contrasts: definitions to weights, t and F statistics, fixed effects across runs.

The arithmetic is nilearn's (``nilearn.glm.contrasts.compute_contrast``,
``compute_fixed_effect_contrast`` and ``Contrast``), done from fitted-model files: per
noise-model group the covariance ``c (WX)^+ (WX)^+T c^T`` is computed once and applied to
that group's voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import special
from scipy.linalg import sqrtm

from glmflow.core.errors import ContrastError
from glmflow.core.expressions import contrast_vector_from_expression

OUTPUT_TYPES = ("z_score", "stat", "p_value", "effect_size", "effect_variance")
TINY = 1e-50
DOFMAX = 1e10


@dataclass
class ContrastResult:
    """The five statistical maps of one contrast, as 1D arrays over in-mask voxels.

    Attributes
    ----------
    maps : dict
        ``effect_size`` (shape (n_voxels,) for t, (q, n_voxels) for F), ``effect_variance``,
        ``stat``, ``z_score``, ``p_value``.
    stat_type : {"t", "F"}
    dof : float
        Residual degrees of freedom (summed over runs).
    dim : int
        Number of contrast rows.
    weights : list of ndarray
        The weights applied to each run.
    """

    maps: dict
    stat_type: str
    dof: float
    dim: int
    weights: list

    def to_images(self, mask, affine):
        """Return a dict of NIfTI images (zero outside the mask), keyed like :attr:`maps`."""
        mask = np.asarray(mask, bool)
        inside = np.flatnonzero(mask)  # one integer gather, cheaper than a boolean mask
        images = {}
        for key, values in self.maps.items():
            values = np.atleast_2d(values) if np.ndim(values) > 1 else values
            if np.ndim(values) == 2:
                data = np.zeros((mask.size, values.shape[0]))
                data[inside] = values.T  # F effects: one volume per row, as nilearn
                data = data.reshape((*mask.shape, values.shape[0]))
            else:
                data = np.zeros(mask.size)
                data[inside] = values
                data = data.reshape(mask.shape)
            images[key] = nib.Nifti1Image(data, affine)
        return images


def contrast_weights(contrast_def, columns):
    """Turn one run's contrast definition into a weight vector or matrix.

    Parameters
    ----------
    contrast_def : str, array-like
        An expression over design columns (``"audio - video"``), a vector or a matrix
        (rows are F-contrast rows). A vector shorter than the design is padded with zeros,
        as nilearn does.
    columns : list of str
        The run's design columns.
    """
    if isinstance(contrast_def, str):
        return contrast_vector_from_expression(contrast_def, columns)
    weights = np.asarray(contrast_def, dtype=float)
    if weights.size == 0:
        raise ContrastError("The contrast is empty: give at least one weight.")
    if weights.ndim > 2:
        raise ContrastError(f"A contrast must be a vector or a matrix; got shape {weights.shape}.")
    n_cols = weights.shape[-1]
    if n_cols > len(columns):
        raise ContrastError(
            f"The contrast has {n_cols} weights but the design has {len(columns)} columns "
            f"({', '.join(columns)})."
        )
    if n_cols < len(columns):
        pad = [(0, 0)] * (weights.ndim - 1) + [(0, len(columns) - n_cols)]
        weights = np.pad(weights, pad)
    return weights


def check_contrast_columns(contrast_def, design, *, run_file=None):
    """Raise :class:`ContrastError` early if a definition does not fit a run's design.

    Run before fitting, so a misspelt condition fails in seconds rather than after the fit.
    ``contrast_def`` may be a list with one definition per run: each is checked (all against
    this design, which is what the workflow has at this point).
    """
    columns = [str(c) for c in design.columns]
    definitions = contrast_def if isinstance(contrast_def, list) else [contrast_def]
    for definition in definitions:
        try:
            contrast_weights(definition, columns)
        except ContrastError as exc:
            where = f" (run {run_file})" if run_file else ""
            raise ContrastError(f"{exc}{where}") from None


def per_run_definitions(contrast_def, n_runs):
    """nilearn's rule: one definition for all runs, or a list with one per run."""
    if isinstance(contrast_def, (str, np.ndarray)):
        return [contrast_def] * n_runs
    if isinstance(contrast_def, (list, tuple)):
        if len(contrast_def) and all(np.isscalar(v) and not isinstance(v, str) for v in contrast_def):
            return [np.asarray(contrast_def, float)] * n_runs  # a plain list of weights
        if len(contrast_def) == 1:
            return list(contrast_def) * n_runs
        if len(contrast_def) != n_runs:
            raise ContrastError(
                f"{len(contrast_def)} contrast definitions given for {n_runs} runs; give one "
                "for all runs or one per run."
            )
        return list(contrast_def)
    raise ContrastError(
        "A contrast must be an expression string, an array or a list of those (one per run); "
        f"got {type(contrast_def).__name__}."
    )


def _run_contrast(model, weights, stat_type):
    """nilearn's ``compute_contrast`` for one run, from a :class:`RunModel`."""
    dim = 1 if weights.ndim == 1 else weights.shape[0]
    n_vox = model.n_voxels
    if stat_type == "t":
        if weights.ndim == 2 and weights.shape[0] != 1:
            raise ContrastError(
                f"A t contrast has one row; got {weights.shape[0]} rows (use stat_type='F')."
            )
        vector = weights.reshape(1, -1)
        effect = (vector @ model.betas)[0]
        # c (WX)^+ (WX)^+T c^T of each noise-model group, spread to its voxels; the
        # elementwise arithmetic is nilearn's (sqrt(q * dispersion) ** 2).
        q = np.array([float(np.dot(vector, np.dot(cov, vector.T))[0, 0])
                      for cov in model.label_cov])
        variance = np.sqrt(q[model.label_index] * model.dispersion) ** 2
        return effect, variance
    matrix = np.atleast_2d(weights)
    effect = np.zeros((dim, n_vox))
    variance = np.asarray(model.dispersion, dtype=float).copy()
    cbeta = matrix @ model.betas
    for g in range(len(model.labels)):
        sel = model.label_index == g
        invcov = np.linalg.inv(np.atleast_2d(np.dot(matrix, np.dot(model.label_cov[g], matrix.T))))
        effect[:, sel] = np.dot(sqrtm(invcov), cbeta[:, sel])
    return effect, variance


def _check_f_rank(matrix, columns):
    if matrix.ndim == 2 and matrix.shape[0] > 1 and np.linalg.matrix_rank(matrix) < matrix.shape[0]:
        raise ContrastError(
            f"The F contrast's {matrix.shape[0]} rows are linearly dependent (rank "
            f"{np.linalg.matrix_rank(matrix)}); remove redundant rows."
        )


def compute_contrast(models, contrast_def, stat_type=None, n_threads=1):
    """Estimate a contrast on one or several fitted runs (fixed effects across runs).

    Parameters
    ----------
    models : RunModel or list of RunModel
    contrast_def : str, array-like, or list of those (one per run)
    stat_type : {None, "t", "F"}
        Default: "t" for a vector, "F" for a matrix with several rows.
    n_threads : int, default=1
        With 2 or more, the two tails of the statistic (p and 1 - p) are evaluated at
        once on two threads; the values do not change.

    Returns
    -------
    ContrastResult
    """
    if not isinstance(models, (list, tuple)):
        models = [models]
    definitions = per_run_definitions(contrast_def, len(models))
    weights = [contrast_weights(d, m.columns) for d, m in zip(definitions, models, strict=True)]
    dim = 1 if weights[0].ndim == 1 else weights[0].shape[0]
    if stat_type is None:
        stat_type = "t" if dim == 1 else "F"
    if stat_type not in ("t", "F"):
        raise ContrastError(f"stat_type must be 't' or 'F'; got {stat_type!r}.")
    if stat_type == "t" and dim > 1:
        raise ContrastError(
            f"A t contrast has one row; this one has {dim} (give stat_type='F', or no "
            "stat_type, for a multi-row contrast)."
        )
    effect_sum = variance_sum = None
    dof = 0.0
    n_used = 0
    for index, (model, w) in enumerate(zip(models, weights, strict=True)):
        if stat_type == "F":
            _check_f_rank(np.atleast_2d(w), model.columns)
        if np.all(w == 0):
            continue  # nilearn skips null contrasts of a run (with a warning)
        effect, variance = _run_contrast(model, w, stat_type)
        if effect_sum is None:
            effect_sum, variance_sum = effect, variance
        else:
            if effect.shape != effect_sum.shape:
                raise ContrastError(
                    f"Run {index + 1}'s contrast has shape {effect.shape[:-1]}; the first "
                    f"run's has {effect_sum.shape[:-1]}."
                )
            effect_sum = effect_sum + effect
            variance_sum = variance_sum + variance
        dof += model.df_residuals
        n_used += 1
    if effect_sum is None:
        raise ContrastError("The contrast is null (all weights zero) in every run.")
    scale = 1.0 / n_used
    if n_used > 1:
        effect, variance = effect_sum * scale, variance_sum * scale**2
    else:
        effect, variance = effect_sum, variance_sum
    if stat_type == "F" and effect.ndim == 2:
        dim_ = effect.shape[0]
    else:
        dim_ = 1
    maps = _statistics(effect, variance, dim_, dof, stat_type, n_threads)
    degenerate = np.any([m.degenerate for m in models], axis=0)
    if degenerate.any():
        maps["stat"][degenerate] = 0.0
        maps["p_value"][degenerate] = 1.0 if stat_type == "F" else 0.5
        maps["z_score"][degenerate] = 0.0
    return ContrastResult(maps=maps, stat_type=stat_type, dof=dof, dim=dim_, weights=weights)


def _statistics(effect, variance, dim, dof, stat_type, n_threads=1):
    """nilearn's ``Contrast`` statistics: stat, p, z with its sf/cdf switch."""
    dof_ = np.minimum(dof, DOFMAX)
    if stat_type == "F":
        stat = np.sum(effect**2, 0) / dim / np.maximum(variance, TINY)
        upper, lower = (lambda: f_sf(stat, dim, dof_)), (lambda: f_cdf(stat, dim, dof_))
    else:
        stat = effect / np.sqrt(np.maximum(variance, TINY))
        upper, lower = (lambda: t_sf(stat, dof_)), (lambda: t_cdf(stat, dof_))
    if n_threads > 1:
        # Each tail is one scipy.special ufunc call over every voxel (~45 ms for 235k
        # voxels), which releases the GIL: the two run side by side.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(upper)
            one_minus = lower()
            p_value = pending.result()
    else:
        p_value, one_minus = upper(), lower()
    stat = stat.ravel()
    z = _z_score(p_value, one_minus)
    return {
        "effect_size": effect,
        "effect_variance": variance,
        "stat": stat,
        "z_score": z,
        "p_value": p_value,
    }


def _z_score(p_value, one_minus_pvalue):
    """nilearn's ``z_score``: the more precise of the two tails."""
    p_value = np.clip(p_value, 1.0e-300, 1.0 - 1.0e-16)
    one_minus_pvalue = np.clip(one_minus_pvalue, 1.0e-300, 1.0 - 1.0e-16)
    z_sf = -special.ndtri(p_value)  # scipy.stats.norm.isf on (0, 1), which the clip ensures
    z_cdf = special.ndtri(one_minus_pvalue)  # norm.ppf
    return np.where(z_sf < 0, z_cdf, z_sf)


# scipy.stats' t and F tail functions, computed by the same scipy.special functions but
# without importing scipy.stats (0.4 s of every contrast job). scipy.stats evaluates the
# special function on the open support and fills the rest: 1 or 0 at and beyond the
# bounds, NaN for NaN; these do the same, so the values are identical (a test checks it).
def _on_support(x, lower, inside, below, above):
    x = np.asarray(x, dtype=np.promote_types(np.asarray(x).dtype, np.float64))
    out = np.asarray(inside(x), dtype=x.dtype).copy()
    out[x <= lower] = below
    out[x == np.inf] = above
    out[np.isnan(x)] = np.nan
    return out


def t_sf(x, df):
    """``scipy.stats.t.sf(x, df)``."""
    return _on_support(x, -np.inf, lambda v: special.stdtr(df, -v), 1.0, 0.0)


def t_cdf(x, df):
    """``scipy.stats.t.cdf(x, df)``."""
    return _on_support(x, -np.inf, lambda v: special.stdtr(df, v), 0.0, 1.0)


def f_sf(x, dfn, dfd):
    """``scipy.stats.f.sf(x, dfn, dfd)``."""
    return _on_support(x, 0.0, lambda v: special.fdtrc(dfn, dfd, v), 1.0, 0.0)


def f_cdf(x, dfn, dfd):
    """``scipy.stats.f.cdf(x, dfn, dfd)``."""
    return _on_support(x, 0.0, lambda v: special.fdtr(dfn, dfd, v), 0.0, 1.0)
