"""OLS and AR(p) estimation of one run, exactly as nilearn computes it, in bounded memory.

nilearn (``nilearn.glm.first_level.run_glm``) fits OLS, estimates per-voxel AR coefficients
of the residuals (Yule-Walker), groups voxels by those coefficients (AR(1): truncated onto a
grid of ``1/bins``; AR(p>1): K-means with ``bins`` clusters) and refits each group with the
whitened design, one Python call per group. Here the same groups and the same arithmetic
are computed over chunks of voxels with vectorised whitening, so peak memory is bounded by
the chunk size and the numbers agree with nilearn's to rounding.

Deliberate differences (documented in the README):

* the residual variance is divided by ``n_scans - rank(X)`` (nilearn divides by
  ``n_scans - n_columns`` while its t/F degrees of freedom use the rank; the two agree for
  full-rank designs);
* voxels whose time series is constant or not finite get zero effects and zero statistics
  (nilearn gives them arbitrary values, and a single NaN voxel spoils every AR estimate);
* ``signal_scaling=1`` scales each volume by its mean over voxels (nilearn raises a
  broadcasting error unless the numbers of voxels and scans coincide);
* ``predicted``/``residuals`` use the design, not the whitened design, under AR models.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from glmflow.core.buffers import mapped_zeros
from glmflow.core.errors import DesignError, ModelFileError, ParameterError
from glmflow.core.versions import file_version

MODEL_FORMAT = "glmflow-run-model"
MODEL_VERSION = 1

#: Upper bound (MiB) on the float64 work arrays of one chunk of voxels.
DEFAULT_CHUNK_MB = 128

#: Chunks are also kept this small (bytes per (n_scans x chunk) float64 array) so that a
#: chunk's work arrays stay in the CPU cache: on a 2 mm MNI run, 1000-2000-voxel chunks fit
#: 30% faster than ~7000-voxel ones (measured), and the memory bound only gets tighter.
CACHE_CHUNK_BYTES = 3 * 2**20

#: Up to this size the OLS residuals are held whole to average them bit-for-bit as nilearn.
EXACT_MEAN_MAX_BYTES = 256 * 2**20


@dataclass
class RunModel:
    """The fitted GLM of one run: enough to compute any contrast exactly without refitting.

    Attributes
    ----------
    betas : ndarray, shape (n_regressors, n_voxels)
    dispersion : ndarray, shape (n_voxels,)
        Residual variance (of the whitened residuals under AR models).
    label_index : ndarray of int, shape (n_voxels,)
        Noise-model group of each voxel (index into ``labels``).
    labels : list of str
        nilearn's label of each group (the AR coefficient(s) as text; ``"0.0"`` for OLS).
    label_cov : ndarray, shape (n_labels, n_regressors, n_regressors)
        ``pinv(WX) pinv(WX)^T`` of each group's whitened design ``WX``.
    df_residuals : float
        ``n_scans - rank(X)``.
    columns : list of str
        Design column names.
    mask : ndarray of bool, 3D (volume) or 1D (surface vertices / CIFTI grayordinates)
    affine : ndarray, shape (4, 4), or None for surface and CIFTI models
    degenerate : ndarray of bool, shape (n_voxels,)
        Voxels with a constant or non-finite time series (statistics set to zero).
    meta : dict
        Noise model, number of scans and the parameters of the fit.
    geometry : {"volume", "surface", "cifti"}
    geometry_info : dict
        JSON-able description of a surface/CIFTI geometry (hemisphere vertex counts, the
        CIFTI brain-model axis); see :class:`glmflow.core.surface.SurfaceGeometry`.
    """

    betas: np.ndarray
    dispersion: np.ndarray
    label_index: np.ndarray
    labels: list
    label_cov: np.ndarray
    df_residuals: float
    columns: list
    mask: np.ndarray
    affine: np.ndarray
    degenerate: np.ndarray
    meta: dict = field(default_factory=dict)
    geometry: str = "volume"
    geometry_info: dict = field(default_factory=dict)

    @property
    def n_voxels(self):
        return self.betas.shape[1]


@dataclass
class FitOutputs:
    """Per-voxel extras kept when ``minimize_memory=False``."""

    residuals: np.ndarray  # (n_scans, n_voxels): Y - X @ beta
    predicted: np.ndarray  # (n_scans, n_voxels): X @ beta
    r_square: np.ndarray  # (n_voxels,): var(WX beta) / var(WY), nilearn's pseudo-R2


def parse_noise_model(noise_model):
    """Return the AR order of ``noise_model`` (0 for ``"ols"``), with nilearn's rules."""
    if noise_model == "ols":
        return 0
    if not isinstance(noise_model, str) or not noise_model.startswith("ar"):
        raise ParameterError(
            f"noise_model must be 'ols' or 'arN' with N a positive integer (e.g. 'ar1'); "
            f"got {noise_model!r}."
        )
    try:
        order = int(noise_model[2:])
    except ValueError:
        order = 0
    if order < 1 or noise_model[2:] != str(order):
        raise ParameterError(
            f"noise_model {noise_model!r}: the AR order must be a positive integer written "
            "after 'ar', e.g. 'ar1' or 'ar3'."
        )
    return order


def chunk_size_for(n_scans, budget_mb=DEFAULT_CHUNK_MB):
    """Voxels per chunk: ~6 float64 (n_scans x chunk) arrays within ``budget_mb``.

    ``budget_mb`` is an upper bound; chunks are further capped at
    :data:`CACHE_CHUNK_BYTES` per array (cache-sized chunks are faster). At least 64
    voxels, so the per-chunk Python overhead stays small.
    """
    n_scans = max(n_scans, 1)
    by_budget = int(budget_mb * 2**20 / (6 * 8 * n_scans))
    by_cache = int(CACHE_CHUNK_BYTES / (8 * n_scans))
    return max(64, min(by_budget, by_cache))


class _Preprocessor:
    """Turns the raw masked run into nilearn's GLM input, one chunk of voxels at a time.

    Applies what nilearn applies between masking and ``run_glm``: the masker's cleaning
    (sample mask, standardisation) and ``mean_scaling``.
    """

    def __init__(self, raw, *, mask_img, t_r, standardize, signal_scaling, sample_mask):
        self.raw = raw
        self.sample_mask = None if sample_mask is None else np.asarray(sample_mask)
        self.signal_scaling = signal_scaling
        standardize_ = {False: None, True: "zscore_sample"}.get(standardize, standardize)
        if signal_scaling is not False:
            standardize_ = None  # as FirstLevelModel: scaling replaces standardisation
        self.needs_clean = standardize_ is not None
        self.clean_kwargs = self._clean_arguments(mask_img, t_r, standardize_) if (
            self.needs_clean) else None
        self.global_mean = None
        if signal_scaling in ((0, 1), [0, 1]):
            # Means over the whole run need it whole (a disk-spilled run is read in full).
            kept = np.asarray(raw) if self.sample_mask is None else raw[self.sample_mask]
            self.global_mean = np.maximum(kept.mean(), 1)
        elif signal_scaling == 1 and signal_scaling is not True:
            kept = np.asarray(raw) if self.sample_mask is None else raw[self.sample_mask]
            self.volume_mean = np.maximum(kept.mean(axis=1), 1)[:, None]

    @staticmethod
    def _clean_arguments(mask_img, t_r, standardize):
        """``nilearn.signal.clean``'s arguments as ``NiftiMasker(t_r, standardize)`` passes them."""
        # nilearn is imported here only: the default fit (no standardisation) never needs it.
        from nilearn.maskers import NiftiMasker

        if not hasattr(mask_img, "affine"):
            # Surface/CIFTI (1D mask): the masker only supplies clean()'s parameters, which
            # are the same for nilearn's SurfaceMasker and do not depend on the mask.
            import nibabel as nib

            mask_img = nib.Nifti1Image(np.ones((1, 1, 1), np.int8), np.eye(4))
        masker = NiftiMasker(mask_img=mask_img, t_r=t_r, standardize=standardize).fit()
        params = masker._get_masker_params(ignore=["mask_img", "mask_args", "mask_strategy"])
        return dict(
            detrend=params["detrend"],
            standardize=params["standardize"],
            standardize_confounds=params["standardize_confounds"],
            t_r=params["t_r"],
            low_pass=params["low_pass"],
            high_pass=params["high_pass"],
            **masker.clean_args_,
        )

    def __call__(self, columns):
        stored = getattr(self.raw, "stored", None)  # a SpilledRun: its columns as stored
        chunk = stored(columns) if stored else self.raw[:, columns]
        if self.needs_clean:
            from nilearn.signal import clean

            chunk = clean(chunk, confounds=None, sample_mask=self.sample_mask, **self.clean_kwargs)
        elif self.sample_mask is not None:
            chunk = chunk[self.sample_mask]
        scaling = self.signal_scaling
        if scaling is False:
            return chunk
        if scaling == 0 and scaling is not False:
            mean = np.maximum(chunk.mean(axis=0), 1)
        elif self.global_mean is not None:
            mean = self.global_mean
        else:
            mean = self.volume_mean
        return 100 * (chunk / mean - 1)


class _Chunk(NamedTuple):
    """Voxels processed together: ``cols`` is what is read (columns of the run as
    stored), ``voxels`` their indices in the mask's order (where results go)."""

    cols: slice
    voxels: np.ndarray


def _chunks(raw, size):
    """The run's chunks of ``size`` stored columns (a spilled run's blocks)."""
    n_voxels = raw.shape[1]
    voxels_of = getattr(raw, "voxels", None)  # a SpilledRun stores voxels in file order
    for start in range(0, n_voxels, size):
        cols = slice(start, min(start + size, n_voxels))
        yield _Chunk(cols, voxels_of(cols) if voxels_of else np.arange(cols.start, cols.stop))


def _map_chunks(function, chunks, n_threads=1):
    """``[function(chunk) for chunk in chunks]``, on ``n_threads`` threads, in order.

    Chunks are independent (each writes its own voxels' columns), and NumPy and BLAS
    release the GIL on arrays this size, so threads scale. Each chunk's arithmetic is the
    same whichever thread runs it: the results do not depend on ``n_threads``.
    """
    if n_threads <= 1 or len(chunks) < 2:
        return [function(chunk) for chunk in chunks]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(n_threads, len(chunks))) as pool:
        return list(pool.map(function, chunks))


def _ols_parts(design):
    import scipy.linalg as spl  # here: importing this module (chunk sizes) stays light

    calc_beta = spl.pinv(design)
    cov = np.dot(calc_beta, calc_beta.T)
    return calc_beta, cov


def design_rank(design):
    """Rank of the design with nilearn's tolerance (``OLSModel``)."""
    eps = np.abs(design).sum() * np.finfo(np.float64).eps
    return int(np.linalg.matrix_rank(design, eps))


def _whiten(design, rho):
    """AR(p) whitening of a design ``(n_scans, n_regressors)`` as nilearn's ``ARModel.whiten``.

    ``rho`` is ``(order,)``: ``w[i+1:] = w[i+1:] - rho_i * x[:-(i+1)]`` for each lag ``i``,
    with ``x`` the unwhitened design.
    """
    design = np.asarray(design, np.float64)
    white = design.copy()
    for i in range(rho.shape[0]):
        white[(i + 1):] = white[(i + 1):] - rho[i] * design[: -(i + 1)]
    return white


def _whiten_series(series, coef):
    """Whiten voxel-major series ``(n_voxels, n_scans)`` in place, each with its own AR.

    ``coef`` is ``(order, n_voxels)``. Elementwise the same operations as nilearn's
    ``ARModel.whiten`` on each voxel's series (``w[t] = w[t] - rho_i * y[t - i - 1]`` for
    every lag ``i``, with ``y`` the unwhitened series).
    """
    order, n_scans = coef.shape[0], series.shape[1]
    # Each lag reads the *unwhitened* series: keep it where the lags would overwrite it.
    source = series.copy() if order > 1 else series
    product = np.empty((series.shape[0], n_scans - 1))
    for i in range(order):
        lag = i + 1
        lagged = product[:, : n_scans - lag]
        np.multiply(coef[i][:, None], source[:, :-lag], out=lagged)
        np.subtract(series[:, lag:], lagged, out=series[:, lag:])
    return series


def _yule_walker(resid_t, order, mean, overwrite=False):
    """nilearn's ``_yule_walker`` on voxel rows, with the global residual mean given.

    nilearn subtracts the mean over *all* voxels and scans; with chunks that mean is
    computed beforehand and passed in. With ``overwrite`` the mean is subtracted in
    place (same values, same memory layout, one array less).
    """
    y = np.subtract(resid_t, mean, out=resid_t) if overwrite else resid_t - mean
    return _solve_yule_walker(_lagged_sums(y, order), y.shape[-1])


def _lagged_sums(y, order):
    """``sum_t y[t] y[t - k]`` for ``k = 0..order`` of each voxel row, as nilearn sums them."""
    r = np.zeros((y.shape[0], order + 1), np.float64)
    r[:, 0] += (y[:, np.newaxis, :] @ y[:, :, np.newaxis])[:, 0, 0]
    for k in range(1, order + 1):
        r[:, k] += (y[:, np.newaxis, 0:-k] @ y[:, k:, np.newaxis])[:, 0, 0]
    return r


def _solve_yule_walker(sums, n_scans):
    """AR coefficients from :func:`_lagged_sums` (nilearn's normalisation and solve)."""
    order = sums.shape[1] - 1
    r = sums / ((n_scans - np.arange(order + 1)) * n_scans)
    rho = np.zeros((r.shape[0], order))
    usable = r[:, 0] > 0  # an all-zero residual has no autocorrelation to estimate
    if usable.any():
        # toeplitz(rr[:-1]) for every voxel at once: entry (i, j) is r[|i - j|].
        lags = np.abs(np.subtract.outer(np.arange(order), np.arange(order)))
        rt = r[usable][:, lags]
        rhs = r[usable, 1:, None]
        try:
            rho[usable] = np.linalg.solve(rt, rhs)[..., 0]
        except np.linalg.LinAlgError:
            # A singular Toeplitz system (e.g. the residual of a constant series is pure
            # rounding): solve voxel by voxel and leave those at 0; such voxels are the
            # degenerate ones, whose statistics are zeroed anyway.
            rho[usable] = [_solve_or_zero(a, b) for a, b in zip(rt, rhs, strict=True)]
    return rho


def _solve_or_zero(matrix, rhs):
    try:
        return np.linalg.solve(matrix, rhs)[:, 0]
    except np.linalg.LinAlgError:
        return np.zeros(matrix.shape[0])


def _one_blas_thread(function):
    """Run ``function`` with a single BLAS thread.

    The fit is thousands of small matrix products (a few dozen rows) interleaved with
    elementwise work; OpenBLAS threads gain little there and, on a busy machine (or with
    runs fitted in parallel processes), spin-wait: a 2 mm MNI AR(1) fit measured 8 s with
    one thread and 30-66 s with two on a loaded 2-core machine. Thread count does not
    change the results (OpenBLAS splits rows/columns, not the summation).
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return wrapper


@_one_blas_thread
def fit_glm(
    raw,
    design,
    *,
    mask_img,
    noise_model="ar1",
    t_r=None,
    signal_scaling=0,
    standardize=False,
    sample_mask=None,
    bins=100,
    random_state=None,
    chunk_size=None,
    keep_outputs=False,
    geometry="volume",
    geometry_info=None,
    n_threads=1,
):
    """Fit the GLM of one run.

    Parameters
    ----------
    raw : ndarray or SpilledRun, shape (n_scans_total, n_voxels)
        The masked run from :func:`glmflow.core.data.load_masked_run` (in memory, or on
        disk with ``spill_dir``: then chunks are read back one at a time).
    design : pandas.DataFrame, shape (n_scans, n_regressors)
        The design matrix; with ``sample_mask`` it has the kept scans' rows only (as
        nilearn's ``design_matrices_``) or all rows (then the mask selects them).
    mask_img : Nifti1Image or 1D bool array
        The analysis mask; a 1D array for surface/CIFTI data (then no affine is stored).
    noise_model : {"ols", "ar1", "ar2", ...}
    t_r, signal_scaling, standardize, sample_mask, random_state
        As ``nilearn.glm.first_level.FirstLevelModel``.
    bins : int, default=100
        nilearn's number of AR bins (AR(1)) or K-means clusters (AR(p>1)).
    chunk_size : int, optional
        Voxels processed at once (default from :data:`DEFAULT_CHUNK_MB`); a spilled run
        is processed in its blocks.
    keep_outputs : bool, default=False
        Also return residuals, predicted time series and R-square.
    geometry, geometry_info : optional
        Stored in the model: ``"volume"`` (default), ``"surface"`` or ``"cifti"`` and its
        JSON-able description (:meth:`glmflow.core.surface.SurfaceGeometry.to_info`).
    n_threads : int, default=1
        Chunks of voxels processed at once, one thread each (BLAS itself stays on one
        thread). The results are identical for any value.

    Returns
    -------
    model : RunModel
    outputs : FitOutputs or None
    """
    order = parse_noise_model(noise_model)
    X = np.asarray(design, dtype=np.float64)
    if sample_mask is not None and X.shape[0] == raw.shape[0] != len(sample_mask):
        X = X[np.asarray(sample_mask)]
    n_scans, n_regressors = X.shape
    n_kept = raw.shape[0] if sample_mask is None else len(sample_mask)
    if n_kept != n_scans:
        raise DesignError(
            f"The design matrix has {n_scans} rows but the run has {n_kept} (kept) scans."
        )
    rank = design_rank(X)
    if rank >= n_scans:
        raise DesignError(
            f"The design has rank {rank} with {n_scans} scans: no degrees of freedom are left "
            "for the residuals; use fewer regressors or more scans."
        )
    df_residuals = float(n_scans - rank)
    n_voxels = raw.shape[1]
    # A run spilled to disk is read back in its own blocks (one contiguous read each).
    size = getattr(raw, "block_size", None) or chunk_size or chunk_size_for(n_scans)
    chunks = list(_chunks(raw, size))
    prepare = _Preprocessor(
        raw,
        mask_img=mask_img,
        t_r=t_r,
        standardize=standardize,
        signal_scaling=signal_scaling,
        sample_mask=sample_mask,
    )
    calc_beta, ols_cov = _ols_parts(X)
    # Chunks are voxel-major (one row per voxel, see _ChunkLoader): products are taken
    # with the transposed operators, contiguous in memory.
    calc_beta_t, design_t = np.ascontiguousarray(calc_beta.T), np.ascontiguousarray(X.T)

    # Degenerate voxels (constant or non-finite series) are found in the first pass over
    # the data, which every noise model needs anyway: no separate pass.
    degenerate = np.zeros(n_voxels, bool)
    load = _ChunkLoader(prepare, degenerate)
    dof = n_scans - rank

    betas = mapped_zeros((n_regressors, n_voxels))  # 47 MB at 2 mm: see core/buffers
    dispersion = np.zeros(n_voxels)
    outputs = None
    if keep_outputs:
        outputs = FitOutputs(
            residuals=np.zeros((n_scans, n_voxels)),
            predicted=np.zeros((n_scans, n_voxels)),
            r_square=np.zeros(n_voxels),
        )

    if order == 0:
        # One pass: load, flag degenerate voxels, fit.
        label_index = np.zeros(n_voxels, np.int32)
        labels = ["0.0"]
        label_cov = ols_cov[None]

        def fit_chunk(chunk):
            series = load(chunk, first=True)
            beta = np.dot(series, calc_beta_t)
            _store(chunk.voxels, series, series, X, X, beta, betas, dispersion, outputs, dof)

        _map_chunks(fit_chunk, chunks, n_threads)
    elif order == 1:
        # nilearn subtracts the mean of all OLS residuals (every voxel and scan) before
        # Yule-Walker. With an intercept in the design each voxel's residuals sum to zero,
        # so that mean is rounding noise: one pass fits every chunk without it, keeping
        # each voxel's residual moments, which give the exact correction once the mean is
        # known; the rare voxels whose bin that moves are refitted. Without an intercept,
        # a first pass computes the mean.
        one_pass = _has_intercept(X)
        mean = 0.0 if one_pass else _residual_mean(load, X, calc_beta, chunks, n_threads)
        moments = _ResidualMoments(n_voxels, n_scans) if one_pass else None
        binned = np.empty(n_voxels)
        groups = _GroupCache(X)

        def refit(voxels, series, values):
            _fit_groups(voxels, series, values, groups.get, X, betas, dispersion, outputs, dof)

        def fit_chunk(chunk):
            series = load(chunk, first=one_pass)
            resid = np.dot(np.dot(series, calc_beta_t), design_t)
            np.subtract(series, resid, out=resid)
            if moments is None:
                rho = _yule_walker(resid, 1, mean, overwrite=True)[:, 0]
            else:
                rho = moments.record(chunk.voxels, resid)[:, 0]
            del resid
            rho[degenerate[chunk.voxels]] = 0.0
            values = _ar1_bins(rho, bins)
            binned[chunk.voxels] = values
            refit(chunk.voxels, series, values)
            return series.sum(axis=0) if one_pass else None

        scan_sums = _map_chunks(fit_chunk, chunks, n_threads)
        if one_pass:
            mean = _residual_mean_from_sums(scan_sums, X, calc_beta, n_voxels)
            rho = moments.coefficients(mean)[:, 0]
            rho[degenerate] = 0.0
            values = _ar1_bins(rho, bins)
            moved = values != binned
            binned[moved] = values[moved]
            for chunk in chunks:
                rows = np.flatnonzero(moved[chunk.voxels])
                if rows.size:
                    voxels = chunk.voxels[rows]
                    refit(voxels, load(chunk)[rows], values[voxels])
        values, label_index = np.unique(binned, return_inverse=True)
        # nilearn sorts labels as strings; the order does not change any result.
        labels = [str(v) for v in values]
        label_cov = np.stack([groups.get(v).cov for v in values])
    else:
        rho = _ar_coefficients(load, X, calc_beta, order, chunks, degenerate, n_threads)
        label_index, labels, label_rho = _group_voxels(rho, order, bins, random_state)
        del rho
        groups = _GroupCache(X, label_rho)
        label_cov = np.stack([groups.get(g).cov for g in range(len(labels))])

        def fit_chunk(chunk):
            _fit_groups(chunk.voxels, load(chunk), label_index[chunk.voxels], groups.get, X,
                        betas, dispersion, outputs, dof, rho=label_rho)

        _map_chunks(fit_chunk, chunks, n_threads)

    betas[:, degenerate] = 0.0
    dispersion[degenerate] = 0.0
    if outputs is not None:
        outputs.r_square[degenerate] = 0.0
    if hasattr(mask_img, "affine"):
        mask, affine = np.asarray(mask_img.dataobj) > 0, np.asarray(mask_img.affine, np.float64)
    else:  # surface / CIFTI: a 1D mask over vertices or grayordinates, no affine
        mask, affine = np.asarray(mask_img, bool), None
    model = RunModel(
        betas=betas,
        dispersion=dispersion,
        label_index=np.asarray(label_index, np.int32),
        labels=list(labels),
        label_cov=np.asarray(label_cov, np.float64),
        df_residuals=df_residuals,
        columns=[str(c) for c in getattr(design, "columns", range(n_regressors))],
        mask=mask,
        affine=affine,
        degenerate=degenerate,
        meta={
            "noise_model": noise_model,
            "n_scans": int(n_scans),
            "rank": rank,
            "signal_scaling": signal_scaling if signal_scaling is False else (
                list(signal_scaling) if isinstance(signal_scaling, (tuple, list))
                else int(signal_scaling)),
            "standardize": standardize,
            "bins": int(bins),
            "n_degenerate_voxels": int(degenerate.sum()),
        },
        geometry=geometry,
        geometry_info=dict(geometry_info or {}),
    )
    if degenerate.any():
        warnings.warn(
            f"{int(degenerate.sum())} in-mask voxel(s) have a constant or non-finite time "
            "series; their effects and statistics are set to 0.",
            UserWarning,
            stacklevel=2,
        )
    return model, outputs


class _ChunkLoader:
    """Prepared chunks as voxel-major float64; on the first pass, flags degenerate voxels.

    The chunk is prepared (cleaned, scaled) in the run's own ``(n_scans, chunk)`` layout,
    so every floating-point operation there is nilearn's in nilearn's order, and then
    transposed to ``(chunk, n_scans)``: each voxel's series contiguous, which makes the
    per-voxel sums and the per-group products of the fit run on contiguous rows.

    A voxel is degenerate when its prepared series is constant or not finite. Such series
    are replaced by zeros (keeping non-finite values out of shared sums such as the
    residual mean); their outputs are zeroed at the end.
    """

    def __init__(self, prepare, degenerate):
        self.prepare = prepare
        self.degenerate = degenerate

    def _prepared(self, chunk, first):
        data = self.prepare(chunk.cols)
        if first:
            finite = np.isfinite(data).all(axis=0)
            self.degenerate[chunk.voxels] = ~finite | (data == data[:1]).all(axis=0)
        return data

    def __call__(self, chunk, first=False):
        """The chunk ``(n_voxels_in_chunk, n_scans)``, float64, C-ordered."""
        data = self._prepared(chunk, first)
        series = np.empty(data.shape[::-1])
        series[...] = data.T
        bad = self.degenerate[chunk.voxels]
        if bad.any():
            series[bad & ~np.isfinite(series).all(axis=1)] = 0.0
        return series

    def time_major(self, chunk, first=False):
        """The chunk in the run's layout ``(n_scans, n_voxels_in_chunk)``, float64."""
        data = np.array(self._prepared(chunk, first), np.float64)  # a copy: zeroed below
        bad = self.degenerate[chunk.voxels]
        if bad.any():
            data[:, bad & ~np.isfinite(data).all(axis=0)] = 0.0
        return data

    def scan_sums(self, chunk):
        """First pass: flag the chunk's degenerate voxels; return its per-scan sums."""
        return self.time_major(chunk, first=True).sum(axis=1)


class _GroupCache:
    """Whitened design, its pseudo-inverse and covariance per noise-model group.

    Keys are the AR(1) bin values themselves (``label_rho`` None) or group indices into
    ``label_rho`` (AR(p>1)); each group's :class:`_GroupParts` are computed once, on first
    use.
    """

    def __init__(self, X, label_rho=None):
        self.X = X
        self.label_rho = label_rho
        self.parts = {}

    def get(self, key):
        parts = self.parts.get(key)
        if parts is None:
            rho = np.array([key]) if self.label_rho is None else self.label_rho[key]
            parts = self.parts[key] = _GroupParts(_whiten(self.X, rho))
        return parts


class _GroupParts:
    """What the refit of one group needs, from its whitened design ``WX``.

    Attributes
    ----------
    design, design_t : ``WX`` and its transpose (contiguous).
    cov : ``pinv(WX) pinv(WX)^T``, from scipy's ``pinv`` as nilearn computes it.
    basis : ``U``, an orthonormal basis of the columns of ``WX`` (its left singular
        vectors, with ``pinv``'s rank cut-off), shape ``(n_scans, rank)``.
    from_basis : ``S^-1 V^T`` (rank x n_regressors): ``pinv(WX)^T = U S^-1 V^T``, so a
        series' coordinates ``c = wy U`` give its effects ``beta = c S^-1 V^T``, and its
        residual sum of squares is ``|wy|^2 - |c|^2``.
    """

    def __init__(self, design):
        self.design = design
        self.design_t = np.ascontiguousarray(design.T)
        self.cov = _ols_parts(design)[1]
        import scipy.linalg as spl

        u, s, vh = spl.svd(design, full_matrices=False)
        # scipy.linalg.pinv's default cut-off (max(M, N) * eps relative), so the rank agrees.
        rank = int(np.sum(s > s.max(initial=0.0) * max(design.shape) * np.finfo(float).eps))
        self.basis = np.ascontiguousarray(u[:, :rank])
        self.from_basis = np.ascontiguousarray(vh[:rank] / s[:rank, None])


#: The residual sum of squares of a group refit comes from the projection onto the
#: whitened design's column space (|wy|^2 - |c|^2, one product instead of two) unless it
#: is below this fraction of |wy|^2: a near-perfect fit, where that difference would lose
#: digits; those voxels get nilearn's direct ``sum((wy - WX beta)**2)``.
PROJECTION_MIN_RESIDUAL = 1e-2


def _fit_groups(voxels, series, keys, lookup, X, betas, dispersion, outputs, dof, rho=None):
    """Whitened refit of voxel-major series, one matrix product per noise-model group.

    ``voxels`` are the indices of the series' voxels (rows) in the run.

    The chunk's voxels (rows) are reordered so that every group is a contiguous block (one
    gather instead of one copy per group) and whitened at once with each voxel's
    coefficients (``keys`` are the AR(1) bin values, or group indices into ``rho``). Each
    group is nilearn's ``ARModel(X, rho).fit(Y[:, group])``: the same whitening, effects
    ``pinv(WX) wy`` and residual variance, computed through the design's singular
    vectors (:class:`_GroupParts`); equal to nilearn's to rounding.
    """
    uniq, inverse = np.unique(keys, return_inverse=True)
    if len(uniq) > 1:
        order = np.argsort(inverse, kind="stable")
        white = series.take(order, axis=0)
        keys = keys[order]
    else:
        order = np.arange(series.shape[0])
        white = series if outputs is None else series.copy()
    coef = keys[None, :] if rho is None else rho[keys].T
    white = _whiten_series(white, coef)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=len(uniq)))])
    voxels = voxels[order]
    chunk_betas = np.empty((white.shape[0], X.shape[1]))
    chunk_rss = _row_sums_of_squares(white)
    for g, key in enumerate(uniq):
        block = slice(bounds[g], bounds[g + 1])
        parts = lookup(key)
        w_block = white[block]
        coords = np.dot(w_block, parts.basis)
        beta = np.dot(coords, parts.from_basis)
        chunk_betas[block] = beta
        norms = chunk_rss[block]
        rss = norms - _row_sums_of_squares(coords)
        close = np.flatnonzero(rss <= PROJECTION_MIN_RESIDUAL * norms)
        if close.size:
            # wresid = wY - WX beta; dispersion = sum(wresid**2) / dof, as nilearn.
            wresid = w_block[close] - np.dot(beta[close], parts.design_t)
            rss[close] = _row_sums_of_squares(wresid)
        chunk_rss[block] = rss
        if outputs is not None:
            _store(voxels[block], series[order[block]], w_block, X, parts.design, beta,
                   betas, dispersion, outputs, dof)
    betas[:, voxels] = chunk_betas.T
    if outputs is None:
        dispersion[voxels] = chunk_rss / dof


def _row_sums_of_squares(rows):
    return np.einsum("ij,ij->i", rows, rows)


def _store(voxels, series, white, X, white_design, beta, betas, dispersion, outputs, dof):
    """Record the fit of some voxels (indices ``voxels``) of the current voxel-major chunk.

    ``series`` and ``white`` are ``(n_voxels, n_scans)``, ``beta`` ``(n_voxels,
    n_regressors)``.
    """
    fitted = np.dot(beta, white_design.T)
    wresid = white - fitted
    betas[:, voxels] = beta.T
    dispersion[voxels] = _row_sums_of_squares(wresid) / dof
    if outputs is not None:
        predicted = np.dot(beta, X.T)
        outputs.predicted[:, voxels] = predicted.T
        outputs.residuals[:, voxels] = (series - predicted).T
        outputs.r_square[voxels] = np.var(fitted, 1) / np.var(white, 1)


def _residual_mean(load, X, calc_beta, chunks, n_threads=1):
    """Mean of all OLS residuals (every voxel and scan) from one pass over the data.

    This is the first pass (it flags degenerate voxels). The chunks' sums are added in
    chunk order whatever the number of threads, so the mean does not depend on it.
    """
    scan_sums = _map_chunks(load.scan_sums, chunks, n_threads)
    return _residual_mean_from_sums(scan_sums, X, calc_beta,
                                    sum(len(chunk.voxels) for chunk in chunks))


def _residual_mean_from_sums(scan_sums, X, calc_beta, n_voxels):
    """Mean of all OLS residuals from the chunks' per-scan sums of the data (in order).

    The residuals' sum over voxels is linear in the data, ``(I - X X^+) sum_v y_v``, so
    the mean needs only the per-scan sums. It only moves AR coefficients by rounding, far
    below the ``1/bins`` grid they are truncated onto.
    """
    n_scans = X.shape[0]
    total = np.zeros(n_scans)
    for sums in scan_sums:
        total += sums
    resid_sum = total - X @ (calc_beta @ total)
    return resid_sum.sum() / (n_scans * n_voxels)


def _has_intercept(X):
    """Whether a column of the design is a non-zero constant (nilearn's ``constant``)."""
    return bool(np.any(np.all(X == X[:1], axis=0) & (X[0] != 0)))


def _ar1_bins(rho, bins):
    """nilearn's AR(1) grouping: the coefficient truncated onto a grid of ``1/bins``."""
    return (rho * bins).astype(int) * 1.0 / bins


class _ResidualMoments:
    """Per-voxel OLS residual moments: AR(1) coefficients for any global residual mean.

    Yule-Walker needs ``r0 = sum_t y_t^2`` and ``r1 = sum_t y_t y_(t-1)`` of ``y = e - m``
    (``e`` a voxel's residuals, ``m`` the mean of all residuals). They follow from the
    sums of ``e`` itself: ``r0 = R0 - 2 m S + n m^2`` and ``r1 = R1 - m (2 S - e_0 -
    e_(n-1)) + (n - 1) m^2`` with ``S = sum_t e_t``. With ``m = 0`` the coefficients are
    bit for bit those of :func:`_yule_walker`.
    """

    def __init__(self, n_voxels, n_scans):
        self.n_scans = n_scans
        self.sums = np.zeros((n_voxels, 2))
        self.total = np.zeros(n_voxels)
        self.ends = np.zeros((n_voxels, 2))

    def record(self, voxels, resid):
        """Keep the moments of voxel rows ``resid``; return their AR(1) with ``m = 0``."""
        sums = _lagged_sums(resid, 1)
        self.sums[voxels] = sums
        self.total[voxels] = resid.sum(axis=1)
        self.ends[voxels, 0], self.ends[voxels, 1] = resid[:, 0], resid[:, -1]
        return _solve_yule_walker(sums, self.n_scans)

    def coefficients(self, mean):
        """AR(1) coefficients of every voxel with the global mean ``mean`` subtracted."""
        n_scans = self.n_scans
        sums = self.sums
        if mean != 0:
            sums = sums.copy()
            sums[:, 0] += n_scans * mean**2 - 2 * mean * self.total
            sums[:, 1] += (n_scans - 1) * mean**2 - mean * (
                2 * self.total - self.ends[:, 0] - self.ends[:, 1])
        return _solve_yule_walker(sums, n_scans)


def _ar_coefficients(load, X, calc_beta, order, chunks, degenerate, n_threads=1):
    """Per-voxel Yule-Walker AR(p) coefficients of the OLS residuals (nilearn's rule).

    nilearn subtracts the mean of *all* residuals (every voxel and scan) first. K-means
    reacts to the last bit of its input, so the residuals are computed in nilearn's layout
    with nilearn's products (time-major chunks), and gathered and averaged exactly as
    nilearn does while they fit in :data:`EXACT_MEAN_MAX_BYTES`; beyond that the mean
    comes from per-scan sums (:func:`_residual_mean`).
    """
    n_scans = X.shape[0]
    n_voxels = degenerate.shape[0]
    rho = np.zeros((n_voxels, order))
    if n_scans * n_voxels * 8 <= EXACT_MEAN_MAX_BYTES:
        resid = np.empty((n_scans, n_voxels))

        def residuals(chunk):
            data = load.time_major(chunk, first=True)
            resid[:, chunk.voxels] = data - np.dot(X, np.dot(calc_beta, data))

        def coefficients(chunk):
            rho[chunk.voxels] = _yule_walker(resid[:, chunk.voxels].T, order, mean)

        _map_chunks(residuals, chunks, n_threads)
        mean = resid.T.mean()
        _map_chunks(coefficients, chunks, n_threads)
        del resid
    else:
        mean = _residual_mean(load, X, calc_beta, chunks, n_threads)

        def coefficients(chunk):
            data = load.time_major(chunk)
            resid = data - np.dot(X, np.dot(calc_beta, data))
            rho[chunk.voxels] = _yule_walker(resid.T, order, mean)

        _map_chunks(coefficients, chunks, n_threads)
    rho[degenerate] = 0.0
    return rho


def _group_voxels(rho, order, bins, random_state):
    """nilearn's K-means grouping of voxels by AR(p>1) coefficients.

    Returns
    -------
    label_index : ndarray (n_voxels,)
    labels : list of str
    label_rho : ndarray (n_labels, order), the coefficients each group is refitted with.
    """
    from sklearn.cluster import KMeans

    n_clusters = int(np.min([bins, rho.shape[0]]))
    kmeans = KMeans(n_clusters=n_clusters, n_init=10, random_state=random_state).fit(rho)
    centre_labels = np.array(["_".join(map(str, np.round(c, 2))) for c in kmeans.cluster_centers_])
    voxel_labels = centre_labels[kmeans.labels_]
    labels, first, label_index = np.unique(voxel_labels, return_index=True, return_inverse=True)
    # Clusters whose rounded centres coincide share one label; nilearn refits that label
    # with the coefficients of its first voxel.
    label_rho = kmeans.cluster_centers_[kmeans.labels_[first]]
    return label_index, [str(v) for v in labels], label_rho


#: The model this process wrote last, by file version: ``{file_version: RunModel}``. On
#: the Linear plugin the contrast steps run in the process that fitted the model, and
#: take it from here instead of reading the file back.
_LAST_SAVED = {}
_LAST_SAVED_LOCK = threading.Lock()


def save_model(model: RunModel, path):
    """Write a :class:`RunModel` to a versioned ``.npz`` file (atomically).

    The process remembers the last model it wrote (until it writes another), so that
    :func:`load_model` of that same file version returns it without reading. The model's
    ``betas`` array is shared with that memory and becomes read-only.
    """
    from glmflow.core.io import atomic_path

    header = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "labels": model.labels,
        "columns": model.columns,
        "df_residuals": model.df_residuals,
        "meta": model.meta,
        "geometry": model.geometry,
        "geometry_info": model.geometry_info,
    }
    header_text = json.dumps(header)
    arrays = {
        "betas": model.betas,
        "dispersion": model.dispersion,
        "label_index": model.label_index,
        "label_cov": model.label_cov,
        "mask": model.mask,
        "degenerate": model.degenerate,
    }
    # Surface/CIFTI models have no affine (np.savez cannot store None without pickling).
    if model.affine is not None:
        arrays["affine"] = model.affine
    with atomic_path(path) as tmp, open(tmp, "wb") as fobj:
        np.savez(fobj, header=np.array(header_text), **arrays)
    # Kept as np.load gives them back (C order), read-only as they are shared; the small
    # arrays are copies (the affine may be the mask image's own), the effects are not.
    shared = {key: np.array(array, order="C", copy=True if key != "betas" else None)
              for key, array in arrays.items()}
    for array in shared.values():
        array.flags.writeable = False
    remembered = _model_from(json.loads(header_text), shared)
    with _LAST_SAVED_LOCK:
        _LAST_SAVED.clear()
        _LAST_SAVED[file_version(path)] = remembered
    return str(path)


def load_model(path) -> RunModel:
    """Read a model file written by :func:`save_model`, checking its format and version.

    The model this process wrote last to this very file version is returned as it was
    written, without reading the file (its arrays are read-only).
    """
    try:
        version = file_version(path)
    except OSError:
        version = None
    if version is not None:
        with _LAST_SAVED_LOCK:
            remembered = _LAST_SAVED.get(version)
        if remembered is not None:
            return dataclasses.replace(remembered, meta=copy.deepcopy(remembered.meta))
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {key: data[key] for key in data.files if key != "header"}
    except (OSError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{path} is not a glmflow model file: {exc}") from exc
    if header.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path} is not a glmflow model file (format {header.get('format')}).")
    if header.get("version") != MODEL_VERSION:
        raise ModelFileError(
            f"{path} has model-file version {header.get('version')}; this glmflow reads "
            f"version {MODEL_VERSION}. Refit the model."
        )
    return _model_from(header, arrays)


def _model_from(header, arrays):
    """A :class:`RunModel` from a model file's header and arrays."""
    return RunModel(
        betas=arrays["betas"],
        dispersion=arrays["dispersion"],
        label_index=arrays["label_index"],
        labels=header["labels"],
        label_cov=arrays["label_cov"],
        df_residuals=float(header["df_residuals"]),
        columns=header["columns"],
        mask=arrays["mask"].astype(bool, copy=False),
        affine=arrays.get("affine"),
        degenerate=arrays["degenerate"].astype(bool, copy=False),
        meta=header["meta"],
        geometry=header.get("geometry", "volume"),
        geometry_info=header.get("geometry_info", {}),
    )


def _forget_after_fork():
    global _LAST_SAVED_LOCK
    _LAST_SAVED_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
