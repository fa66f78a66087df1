"""``FirstLevelModel``: nilearn's first-level GLM API, run as a glmflow workflow.

Change ``from nilearn.glm.first_level import FirstLevelModel`` to
``from glmflow import FirstLevelModel`` and a nilearn script gets the same numbers
(|Δz| < 1e-9), with the option to run the fit on MultiProc, SLURM or SGE.

What happens in :meth:`FirstLevelModel.fit`: inputs are checked; the design matrices are
built in-process (cheap, and nilearn's warnings reach the caller once); in-memory images,
designs and sample masks are written to an input folder; ``init_first_level_wf`` is run
with :func:`glmflow.execution.run_workflow` (mask, then one fit per run, in parallel where
the plugin allows); the fitted-model files are loaded so that
:meth:`FirstLevelModel.compute_contrast` is computed in-process from them, in milliseconds.

Deliberate differences from nilearn 0.14.1 are listed in the class docstring.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from numbers import Integral, Real
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from glmflow import model_surface
from glmflow.core.errors import (
    ConfoundsError,
    ContrastError,
    DesignError,
    EventsError,
    ImageError,
    InputFileError,
    MaskError,
    ParameterError,
    SampleMaskError,
)

#: nilearn's ``compute_contrast`` output types, in nilearn's order ("all" gives them all).
OUTPUT_TYPES = ("z_score", "stat", "p_value", "effect_size", "effect_variance")

#: Parameters that only shape the design matrix (ignored when design matrices are given).
_DESIGN_PARAMETERS = ("drift_model", "drift_order", "fir_delays", "high_pass", "hrf_model",
                      "min_onset", "slice_time_ref", "t_r")

#: NiftiMasker options glmflow's fit applies; a given masker must leave the others unset.
_MASKER_DEFAULTS = {"detrend": False, "low_pass": None, "high_pass": None,
                    "standardize_confounds": True, "runs": None}


class FirstLevelModel(BaseEstimator):
    """First-level GLM with nilearn 0.14.1's ``FirstLevelModel`` API, run on any Nipype plugin.

    The positional parameters are nilearn's, in nilearn's order and with its defaults; see
    ``nilearn.glm.first_level.FirstLevelModel`` for their meaning. Only what differs is
    described here.

    Parameters
    ----------
    t_r, slice_time_ref, hrf_model, drift_model, high_pass, drift_order, fir_delays, \
min_onset, mask_img, target_affine, target_shape, smoothing_fwhm, standardize, \
signal_scaling, noise_model, minimize_memory, subject_label, random_state
        As nilearn. ``mask_img`` may be a path or image, a fitted ``NiftiMasker``, ``None``
        (nilearn's multi-run EPI mask is computed) or ``False`` (no mask).
        ``signal_scaling=1`` scales each scan by its mean over the mask (nilearn raises a
        broadcasting error). ``random_state`` must be an int or None (it is written into
        the workflow).
    memory : str, Path or joblib.Memory, optional
        A folder where the Nipype working directories (the cache) are kept, unless
        ``base_dir`` is given. Refitting with the same inputs reuses the cached results.
    memory_level : int, default=1
        Accepted for compatibility; the Nipype cache replaces joblib's levels.
    verbose : int, default=0
        0: silent; 1: progress messages; 2 or more: also Nipype's node log.
    n_jobs : int, default=1
        With the Linear plugin and ``n_jobs != 1``, the runs are fitted on MultiProc with
        ``n_jobs`` processes (-1: all cores). With MultiProc it sets ``n_procs`` unless
        ``plugin_args`` does. Ignored on SLURM/SGE.
    reports : bool, default=True
        Accepted for compatibility; :meth:`generate_report` works either way.
    plugin : {"Linear", "MultiProc", "SLURM", "SGE", "SLURMGraph", "SGEGraph"}, \
default="Linear"
        Keyword-only. The Nipype plugin that runs the workflow.
    plugin_args : dict, optional
        Keyword-only. Passed to the plugin (``n_procs``, ``sbatch_args``, ``qsub_args``...).
    base_dir : str or Path, optional
        Keyword-only. Where inputs written from memory and the Nipype working directories
        are kept (they are then reusable as a cache). Default: ``memory`` if it names a
        folder, else a temporary folder removed after a successful fit. On SLURM/SGE it
        must be on a file system the compute nodes share.

    Attributes
    ----------
    design_matrices_ : list of pandas.DataFrame
        The design of each run (the kept rows only when ``sample_masks`` were given, as
        nilearn).
    masker_ : nilearn.maskers.NiftiMasker
        A fitted masker with the analysis mask and the data parameters (built on first
        access: a fit and its contrasts need neither it nor nilearn).
    mask_img_ : Nifti1Image
    labels_ : list of ndarray
        nilearn's noise-model label of each voxel, per run.
    results_ : list of dict
        Per run, label -> results object with nilearn's ``SimpleRegressionResults``
        attributes (``theta``, ``cov``, ``dispersion``, ``df_residuals``...), usable with
        ``nilearn.glm.contrasts.compute_fixed_effect_contrast``.
    n_elements_ : int
        Number of voxels in the mask.
    fir_delays_, standardize_
        As nilearn.
    models_ : list of glmflow.core.glm.RunModel
        The fitted models, as read from the workflow's model files.
    model_files_ : list of str
        The model files (they exist after ``fit`` only when ``base_dir`` or ``memory``
        names a folder).
    methods_text : str
        A methods paragraph describing the analysis.

    Notes
    -----
    Differences from nilearn 0.14.1:

    * ``standardize`` is applied when ``signal_scaling=False``. nilearn 0.14.1 never
      applies it (``False in [0, 1, (0, 1)]`` is true, so its ``standardize_`` is always
      None). With ``signal_scaling`` other than False, scaling replaces standardization in
      both, and glmflow warns instead of ignoring the parameter silently.
    * ``signal_scaling=1`` works (scaling by each scan's mean over the mask).
    * ``predicted_`` and ``residuals_`` under AR models use the design, not the whitened
      design (nilearn subtracts the whitened prediction from the unwhitened data).
    * A multi-row contrast with ``stat_type="t"`` and an F contrast with linearly
      dependent rows are errors (nilearn: an error and silently wrong, respectively).
    * A plain list of weights (``[1, -1, 0]``) is one contrast vector for all runs (nilearn
      takes each number as the contrast of one run and fails).
    * Sample masks must be unique, increasing indices (or booleans): nilearn silently
      repeats or reorders scans.
    * A design-matrix TSV whose first column is ``frame_time`` (as glmflow and nilearn
      write them) uses it as the index rather than as a regressor.
    * A given mask on another grid than the runs is resampled to the runs' grid (nilearn
      resamples every volume of the data to the mask).
    * Voxels with a constant or non-finite time series get zero statistics, with a warning.
    """

    def __init__(
        self,
        t_r=None,
        slice_time_ref=0.0,
        hrf_model="glover",
        drift_model="cosine",
        high_pass=0.01,
        drift_order=1,
        fir_delays=None,
        min_onset=-24,
        mask_img=None,
        target_affine=None,
        target_shape=None,
        smoothing_fwhm=None,
        memory=None,
        memory_level=1,
        standardize=False,
        signal_scaling=0,
        noise_model="ar1",
        verbose=0,
        n_jobs=1,
        minimize_memory=True,
        subject_label=None,
        random_state=None,
        reports=True,
        *,
        plugin="Linear",
        plugin_args=None,
        base_dir=None,
    ):
        self.t_r = t_r
        self.slice_time_ref = slice_time_ref
        self.hrf_model = hrf_model
        self.drift_model = drift_model
        self.high_pass = high_pass
        self.drift_order = drift_order
        self.fir_delays = fir_delays
        self.min_onset = min_onset
        self.mask_img = mask_img
        self.target_affine = target_affine
        self.target_shape = target_shape
        self.smoothing_fwhm = smoothing_fwhm
        self.memory = memory
        self.memory_level = memory_level
        self.standardize = standardize
        self.signal_scaling = signal_scaling
        self.noise_model = noise_model
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.minimize_memory = minimize_memory
        self.subject_label = subject_label
        self.random_state = random_state
        self.reports = reports
        self.plugin = plugin
        self.plugin_args = plugin_args
        self.base_dir = base_dir

    def __str__(self):
        return "First Level Model"

    def __sklearn_is_fitted__(self):
        return getattr(self, "models_", None) is not None

    # ------------------------------------------------------------------------------ fit
    def fit(self, run_imgs, events=None, confounds=None, sample_masks=None,
            design_matrices=None, bins=100):
        """Fit the GLM of each run (nilearn's signature and rules).

        Parameters
        ----------
        run_imgs : path, Nifti1Image, or list of those
            One 4D image per run, all on one voxel grid.
        events : DataFrame or path (TSV/CSV), or a list with one per run, optional
            Required unless ``design_matrices`` are given.
        confounds : DataFrame, array or path, or a list with one per run, optional
        sample_masks : array (indices or booleans), or a list with one per run, optional
            The scans to keep (scrubbing).
        design_matrices : DataFrame or path, or a list with one per run, optional
            Used instead of events and confounds.
        bins : int, default=100
            nilearn's number of AR(1) bins / AR(p) K-means clusters.

        Returns
        -------
        self
        """
        t_start = time.time()
        params = self._check_parameters()
        self._reset()
        self.fir_delays_ = [0] if self.fir_delays is None else self.fir_delays
        self.standardize_ = params["standardize_"]

        # A SurfaceImage implies nilearn.surface is imported; volume runs need no nilearn.
        surface = "nilearn.surface" in sys.modules and model_surface.is_surface_input(run_imgs)
        if surface:  # nilearn SurfaceImage runs: GIFTI files and the surface workflow
            runs = model_surface.check_surface_runs(run_imgs)
            n_scans = model_surface.n_scans(runs)
        else:
            runs = _check_run_imgs(run_imgs)
            n_scans = [img.shape[3] for img, _ in runs]
            # The workflow will hash the run files (Nipype's cache): start now, in the
            # background, so it overlaps with building the designs.
            from glmflow.execution import prefetch_digests

            prefetch_digests([path for _, path in runs if path is not None])
        designs, given_designs = self._designs(runs, n_scans, events, confounds,
                                               design_matrices, params)
        masks = _check_sample_masks(sample_masks, n_scans, designs)
        _check_designs(designs, masks)
        if not isinstance(bins, Integral) or isinstance(bins, bool) or bins < 1:
            raise ParameterError(f"bins must be a positive integer; got {bins!r}.")

        base_dir, temporary = self._work_dir(params["plugin"])
        succeeded = started = False
        try:
            self._log(f"Fitting {len(runs)} run(s) with plugin {params['plugin']} "
                      f"in {base_dir}.")
            inputs = _InputWriter(Path(base_dir) / "inputs", hashed=not temporary)
            design_files = [inputs.design(design, f"run-{i + 1}_design")
                            for i, design in enumerate(designs)]
            mask_files = None if masks is None else [
                inputs.sample_mask(mask, f"run-{i + 1}_samplemask")
                for i, mask in enumerate(masks)]
            if surface:
                self._given_masker = model_surface.given_masker(self)
                bold_files, surface_masks, mesh_files = model_surface.write_inputs(
                    self, inputs.folder, runs, hashed=not temporary)
                workflow = model_surface.init_workflow(self, params, mesh_files)
                self._configure_fit(workflow, bins)
                model_surface.set_inputs(workflow, bold_files, design_files, surface_masks,
                                         mask_files)
                started = True
                outputs = self._run(workflow, params, base_dir)
                model_surface.load_outputs(self, outputs, designs, masks, runs)
                succeeded = True
                self._log(f"Computation of {len(runs)} surface run(s) done in "
                          f"{time.time() - t_start:.1f} s.")
                return self
            bold_files = [inputs.image(img, path, f"run-{i + 1}_bold")
                          for i, (img, path) in enumerate(runs)]
            mask_file = self._mask_file(inputs, runs, params)
            workflow = self._workflow(params, bins)
            node = workflow.get_node("inputnode")
            node.inputs.bold_files = bold_files
            node.inputs.design_files = design_files
            if mask_file is not None:
                node.inputs.mask_file = mask_file
            if mask_files is not None:
                node.inputs.sample_mask_files = mask_files
            started = True
            outputs = self._run(workflow, params, base_dir)
            self._load(outputs, designs, given_designs, masks, params)
            succeeded = True
        finally:
            # A failed run keeps its temporary folder: the error names its crash files.
            if temporary and (succeeded or not started):
                shutil.rmtree(base_dir, ignore_errors=True)
            elif temporary:
                self._log(f"The working directory {base_dir} was kept for inspection.",
                          level=0)
        self._log(f"Computation of {len(runs)} run(s) done in {time.time() - t_start:.1f} s.")
        return self

    def _reset(self):
        for name in ("models_", "labels_", "_results", "design_matrices_", "_masker",
                     "_masker_args", "_volume_mask", "n_elements_", "model_files_", "_outputs",
                     "_residuals", "_predicted", "_r_square"):
            if hasattr(self, name):
                delattr(self, name)

    def _check_parameters(self):
        """Check the constructor's parameters (nilearn's rules, clearer messages)."""
        from glmflow.core.glm import parse_noise_model
        from glmflow.execution import PLUGINS

        if self.t_r is not None:
            if not _is_number(self.t_r) or not np.isfinite(self.t_r) or self.t_r <= 0:
                raise ParameterError(
                    f"t_r must be a positive number of seconds; got {self.t_r!r}.")
        if self.slice_time_ref is not None and (
                not _is_number(self.slice_time_ref) or not 0 <= self.slice_time_ref <= 1):
            raise ParameterError(
                "slice_time_ref must be a number between 0 and 1 (a fraction of t_r); "
                f"got {self.slice_time_ref!r}.")
        parse_noise_model(self.noise_model)
        scaling = self.signal_scaling
        if isinstance(scaling, (list, tuple)) and tuple(scaling) == (0, 1) and not any(
                isinstance(v, bool) for v in scaling):
            scaling = (0, 1)
        elif scaling is not False and not (
                isinstance(scaling, Integral) and not isinstance(scaling, bool)
                and scaling in (0, 1)):
            raise ParameterError(
                f"signal_scaling must be False, 0 (each voxel's mean over time), 1 (each "
                f"scan's mean over voxels) or (0, 1) (the grand mean); got {scaling!r}.")
        standardize = self.standardize
        allowed_std = (False, True, None, "zscore_sample", "zscore", "psc")
        if not any(standardize is v or (isinstance(v, str) and standardize == v)
                   for v in allowed_std):
            raise ParameterError(
                "standardize must be False, True, 'zscore_sample', 'zscore' or 'psc'; got "
                f"{standardize!r}.")
        # nilearn's standardize_: False -> None, True -> "zscore_sample".
        standardize_ = standardize
        if standardize is False:
            standardize_ = None
        elif standardize is True:
            standardize_ = "zscore_sample"
        if scaling is not False:
            if standardize_ is not None:
                warnings.warn(
                    f"standardize={standardize!r} is ignored because signal_scaling="
                    f"{self.signal_scaling!r} scales the signal instead (nilearn ignores it "
                    "silently). Pass signal_scaling=False to standardize the signal.",
                    UserWarning, stacklevel=3)
            standardize_ = None
        if self.smoothing_fwhm is not None and (
                not _is_number(self.smoothing_fwhm) or self.smoothing_fwhm < 0):
            raise ParameterError(
                "smoothing_fwhm must be None or a non-negative number of millimetres; got "
                f"{self.smoothing_fwhm!r}.")
        target_affine = None
        if self.target_affine is not None:
            target_affine = np.asarray(self.target_affine, dtype=float)
            if target_affine.shape not in ((3, 3), (4, 4)):
                raise ParameterError(
                    f"target_affine must be a 3x3 or 4x4 matrix; got shape "
                    f"{target_affine.shape}.")
        target_shape = None
        if self.target_shape is not None:
            target_shape = [int(v) for v in self.target_shape]
            if len(target_shape) != 3 or min(target_shape) < 1:
                raise ParameterError(
                    f"target_shape must be three positive integers; got {self.target_shape!r}.")
            if target_affine is None or target_affine.shape != (4, 4):
                raise ParameterError(
                    "target_shape needs a 4x4 target_affine (the grid's origin is otherwise "
                    "undefined).")
        if self.random_state is not None and (
                not isinstance(self.random_state, Integral) or isinstance(self.random_state,
                                                                          bool)):
            raise ParameterError(
                "random_state must be None or an int seed (it is passed to the workflow's "
                f"nodes); got {type(self.random_state).__name__}.")
        plugin = self.plugin
        if plugin not in PLUGINS:
            raise ParameterError(f"plugin must be one of {', '.join(PLUGINS)}; got {plugin!r}.")
        n_jobs = self.n_jobs
        if n_jobs is None:
            n_jobs = 1
        if not isinstance(n_jobs, Integral) or isinstance(n_jobs, bool) or n_jobs == 0:
            raise ParameterError(f"n_jobs must be a non-zero integer (-1: all cores); got "
                                 f"{self.n_jobs!r}.")
        plugin_args = dict(self.plugin_args or {})
        n_procs = n_jobs if n_jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + n_jobs)
        if plugin == "Linear" and n_procs > 1:
            plugin = "MultiProc"
        if plugin == "MultiProc":
            plugin_args.setdefault("n_procs", n_procs)
        if not isinstance(self.minimize_memory, (bool, np.bool_)):
            raise ParameterError(
                f"minimize_memory must be True or False; got {self.minimize_memory!r}.")
        return {"signal_scaling": scaling, "standardize_": standardize_,
                "target_affine": target_affine, "target_shape": target_shape,
                "plugin": plugin, "plugin_args": plugin_args}

    def _designs(self, runs, n_scans, events, confounds, design_matrices, params):
        """The design matrix of each run, built in-process (or the given ones)."""
        from glmflow.core.design import load_design, make_design_matrix

        n_runs = len(runs)
        if design_matrices is not None:
            ignored = [name for name, value in (("confounds", confounds), ("events", events))
                       if value is not None]
            if ignored:
                warnings.warn(f"If design matrices are supplied, {' and '.join(ignored)} "
                              "will be ignored.", UserWarning, stacklevel=3)
            defaults = {k: v.default for k, v in
                        _signature_parameters(FirstLevelModel.__init__).items()}
            changed = [k for k in _DESIGN_PARAMETERS if not _same(getattr(self, k),
                                                                  defaults[k])]
            if changed:
                warnings.warn(f"If design matrices are supplied, [{', '.join(changed)}] will "
                              "be ignored.", UserWarning, stacklevel=3)
            tables = _per_run(design_matrices, n_runs, "design_matrices")
            designs, given = [], []
            for index, (table, scans) in enumerate(zip(tables, n_scans, strict=True)):
                if isinstance(table, (str, Path)):
                    frame = load_design(table)
                elif isinstance(table, pd.DataFrame):
                    frame = table
                    bad = [c for c in frame.columns
                           if not pd.api.types.is_numeric_dtype(frame[c])]
                    if bad:
                        raise DesignError(f"design_matrices[{index}] has non-numeric "
                                          f"column(s) {bad}.")
                else:
                    raise DesignError(
                        "design_matrices must be pandas DataFrames or paths to TSV/CSV files; "
                        f"got {type(table).__name__} for run {index + 1}.")
                if frame.shape[0] != scans:
                    raise DesignError(
                        f"design_matrices[{index}] has {frame.shape[0]} rows but run "
                        f"{index + 1} has {scans} scans; expected one row per scan.")
                designs.append(frame.astype(float) if isinstance(table, (str, Path))
                               else frame)
                given.append(True)
            return designs, given
        if events is None:
            raise EventsError("events or design matrices must be provided.")
        if self.t_r is None:
            raise ParameterError(
                "t_r not given to FirstLevelModel object to compute design from events: "
                "give the repetition time in seconds (t_r=...).")
        events = _per_run(events, n_runs, "events")
        confounds = None if confounds is None else _per_run(confounds, n_runs, "confounds")
        designs = []
        for index, scans in enumerate(n_scans):
            table = events[index]
            if isinstance(table, (str, Path)):
                _check_table_path(table, "events")
            if not isinstance(table, (str, Path, pd.DataFrame)):
                raise EventsError(
                    "events can only be a pandas DataFrame or a path to a TSV/CSV file; got "
                    f"{type(table).__name__} for run {index + 1}.")
            run_confounds = None
            if confounds is not None:
                run_confounds = confounds[index]
                if isinstance(run_confounds, (str, Path)):
                    _check_table_path(run_confounds, "confounds")
                elif not isinstance(run_confounds, (pd.DataFrame, np.ndarray)):
                    raise ConfoundsError(
                        "confounds can only be a pandas DataFrame, a numpy array or a path to "
                        f"a TSV/CSV file; got {type(run_confounds).__name__} for run "
                        f"{index + 1}.")
            try:
                design = make_design_matrix(
                    scans, t_r=self.t_r, events=table, confounds=run_confounds,
                    slice_time_ref=self.slice_time_ref, hrf_model=self.hrf_model,
                    drift_model=self.drift_model, high_pass=self.high_pass,
                    drift_order=self.drift_order, fir_delays=self.fir_delays_,
                    min_onset=self.min_onset)
            except (ConfoundsError, EventsError) as exc:
                raise type(exc)(f"Run {index + 1}: {exc}") from exc
            designs.append(design)
        return designs, [False] * n_runs

    def _work_dir(self, plugin):
        """``(folder, temporary)``: base_dir, else memory's folder, else a new temporary one.

        For batch schedulers the temporary folder is made in the current directory, which
        compute nodes are far more likely to share than the submitting host's /tmp.
        """
        folder = self.base_dir
        if folder is None and self.memory is not None:
            folder = getattr(self.memory, "location", self.memory)
            if folder is not None and not isinstance(folder, (str, Path)):
                raise ParameterError(
                    "memory must be None, a folder (str or Path) or a joblib.Memory; got "
                    f"{type(self.memory).__name__}.")
        if folder is not None:
            folder = Path(folder).expanduser().absolute()
            folder.mkdir(parents=True, exist_ok=True)
            return str(folder), False
        shared = plugin.startswith(("SLURM", "SGE"))
        return tempfile.mkdtemp(prefix=".glmflow_" if shared else "glmflow_",
                                dir=os.getcwd() if shared else None), True

    def _mask_file(self, inputs, runs, params):
        """The mask for the workflow's inputnode (None: computed by the workflow)."""
        mask = self.mask_img
        self._given_masker = None
        if mask is None:
            return None
        if mask is False:
            ref = runs[0][0]
            return inputs.image(nib.Nifti1Image(np.ones(ref.shape[:3], np.uint8), ref.affine),
                                None, "mask-all")
        if _is_nifti_masker(mask):
            try:
                check_is_fitted(mask)
            except Exception as exc:
                raise MaskError(
                    "The NiftiMasker given as mask_img must be fitted; call its fit() first."
                ) from exc
            unsupported = [f"{k}={getattr(mask, k, v)!r}" for k, v in _MASKER_DEFAULTS.items()
                           if not _same(getattr(mask, k, v), v)]
            if unsupported:
                raise ParameterError(
                    "The NiftiMasker given as mask_img sets signal cleaning that glmflow's "
                    f"fit does not apply: {', '.join(unsupported)}. Clean the data first or "
                    "add the regressors to the design.")
            self._given_masker = mask
            return inputs.image(mask.mask_img_, None, "mask")
        if isinstance(mask, (str, Path)):
            if not Path(mask).is_file():
                raise InputFileError(f"The mask_img file {mask} does not exist.")
            return str(Path(mask).absolute())
        if isinstance(mask, nib.spatialimages.SpatialImage):
            return inputs.image(mask, _file_of(mask), "mask")
        raise MaskError(
            "mask_img must be None, False, a path to a NIfTI file, a nibabel image or a fitted "
            f"NiftiMasker; got {type(mask).__name__}.")

    def _data_parameters(self, params):
        """Smoothing and resampling of the data: the given masker's, else the model's."""
        masker = getattr(self, "_given_masker", None)
        if masker is not None:
            affine = masker.target_affine
            return (masker.smoothing_fwhm,
                    None if affine is None else np.asarray(affine, float),
                    None if masker.target_shape is None else list(masker.target_shape))
        return self.smoothing_fwhm, params["target_affine"], params["target_shape"]

    def _configure_fit(self, workflow, bins):
        """The fit node's own settings (volume and surface): the real t_r and ``bins``.

        The workflow is built with a placeholder t_r (the designs are made in-process).
        """
        fit = workflow.get_node("fit")
        fit.inputs.t_r = None if self.t_r is None else float(self.t_r)
        fit.inputs.bins = int(bins)

    def _workflow(self, params, bins):
        from glmflow.workflows.first_level import describe_first_level, init_first_level_wf

        smoothing, affine, shape = self._data_parameters(params)
        options = {}
        if "report" in _signature_parameters(init_first_level_wf):
            options["report"] = False  # generate_report makes it on demand
        workflow = init_first_level_wf(
            # The design node only passes the designs built here through; t_r must still
            # be a number for its trait.
            t_r=float(self.t_r) if self.t_r is not None else 1.0,
            contrasts={"_unused": [1.0]},
            smoothing_fwhm=None if smoothing is None else float(smoothing),
            signal_scaling=params["signal_scaling"],
            standardize=self.standardize,
            noise_model=self.noise_model,
            minimize_memory=bool(self.minimize_memory),
            target_affine=affine,
            target_shape=shape,
            random_state=None if self.random_state is None else int(self.random_state),
            **options,
        )
        # Contrasts (and any report of them) are computed in-process from the model files.
        unused = [workflow.get_node(name) for name in ("contrast", "report")]
        workflow.remove_nodes([node for node in unused if node is not None])
        self._configure_fit(workflow, bins)
        # The fitting workflow gets placeholder t_r/contrasts (designs are built here), so
        # the methods paragraph is written from the model's own settings.
        self.methods_text = describe_first_level(
            t_r=self.t_r, hrf_model=self.hrf_model, drift_model=self.drift_model,
            high_pass=self.high_pass, drift_order=self.drift_order,
            noise_model=self.noise_model, smoothing_fwhm=smoothing,
            signal_scaling=params["signal_scaling"])
        return workflow

    def _run(self, workflow, params, base_dir):
        from glmflow.execution import run_workflow
        from glmflow.workflows.outputs import collect_outputs

        with _nipype_log_level(self.verbose):
            graph = run_workflow(workflow, plugin=params["plugin"],
                                 plugin_args=params["plugin_args"], base_dir=base_dir)
        return collect_outputs(workflow, graph)

    def _load(self, outputs, designs, given, masks, params):
        """Read the workflow's outputs into nilearn's fitted attributes."""
        from glmflow.core.glm import load_model

        mask_img = _load_image(outputs["mask_file"])
        self.model_files_ = list(outputs["model_files"])
        self.models_ = [load_model(path) for path in self.model_files_]
        self.design_matrices_ = []
        for index, design in enumerate(designs):
            if masks is not None:
                design = design.iloc[masks[index], :]
            self.design_matrices_.append(design)
        self._set_masker(mask_img, params)
        self.labels_ = [_voxel_labels(model) for model in self.models_]
        self._results = None
        if not self.minimize_memory:
            mask = np.asarray(mask_img.dataobj) > 0
            self._residuals = [_masked(path, mask) for path in outputs["residuals_files"]]
            self._predicted = [_masked(path, mask) for path in outputs["predicted_files"]]
            self._r_square = [_masked(path, mask)[None, :] for path in outputs["r_square_files"]]

    def _set_masker(self, mask_img, params):
        """Prepare ``masker_`` (built on first access) and set ``n_elements_``.

        On the usual path (no given masker, no resampling) the masker's mask is the fit's
        mask as it is, so ``n_elements_`` and the maps' images come from the mask itself
        and nilearn is not imported. Otherwise the masker is built now, as before.
        """
        smoothing, affine, shape = self._data_parameters(params)
        self._masker = None
        self._volume_mask = None
        self._masker_args = {
            "given": self._given_masker, "mask_img": mask_img, "target_affine": affine,
            "target_shape": shape, "smoothing_fwhm": smoothing, "t_r": self.t_r,
            "memory_level": self.memory_level, "standardize": self.standardize_}
        if self._given_masker is None and affine is None and shape is None:
            # The errors NiftiMasker.fit would raise now, not at the first use of masker_.
            _check_masker_parameters(self._masker_args)
            mask, mask_affine = _mask_of(mask_img)
            self.n_elements_ = int(mask.sum())
            if self.n_elements_ > 0:  # an empty mask: the masker raises nilearn's error
                self._volume_mask = (mask, mask_affine)
                return
        self.n_elements_ = int(self.masker_.n_elements_)

    def _fit_masker(self):
        """The fitted masker: a clone of the given one, or a NiftiMasker of the fit's mask."""
        args = self._masker_args
        if args["given"] is not None:
            masker = _clone_masker(args["given"])
        else:
            from nilearn.maskers import NiftiMasker

            masker = NiftiMasker(
                mask_img=args["mask_img"], target_affine=args["target_affine"],
                target_shape=args["target_shape"], smoothing_fwhm=args["smoothing_fwhm"],
                t_r=args["t_r"], mask_strategy="epi", memory_level=args["memory_level"])
        masker.standardize = args["standardize"]
        return masker.fit()

    def _unmask(self, values):
        """An image of in-mask values, as ``masker_.inverse_transform(values)`` makes it."""
        volume_mask = self.__dict__.get("_volume_mask")
        if (volume_mask is not None and isinstance(values, np.ndarray)
                and values.dtype.kind == "f" and values.ndim in (1, 2)):
            return _inverse_transform(values, *volume_mask)
        return self.masker_.inverse_transform(values)

    # ------------------------------------------------------------------ fitted attributes
    @property
    def masker_(self):
        """The fitted masker (``NiftiMasker``, or ``SurfaceMasker`` for surface runs).

        Built on first access: importing nilearn takes most of a second, and neither the
        fit nor the contrasts need it.
        """
        masker = self.__dict__.get("_masker")
        if masker is None:
            if "_masker_args" not in self.__dict__:  # not fitted (as a missing attribute)
                raise AttributeError(
                    f"'{type(self).__name__}' object has no attribute 'masker_'")
            masker = self._masker = self._fit_masker()
        return masker

    @masker_.setter
    def masker_(self, masker):
        # The surface path sets its fitted SurfaceMasker.
        self._masker = masker

    @property
    def mask_img_(self):
        """The analysis mask (``masker_.mask_img_``)."""
        check_is_fitted(self)
        return self.masker_.mask_img_

    @property
    def results_(self):
        """Per run, label -> nilearn-style regression results (built on first access)."""
        check_is_fitted(self)
        if self._results is None:
            self._results = [_run_results(model) for model in self.models_]
        return self._results

    def _voxelwise(self, name):
        check_is_fitted(self)
        if self.minimize_memory:
            raise AttributeError(
                "To access voxelwise attributes like R-squared, residuals, and predictions, "
                "the FirstLevelModel needs to store them: set minimize_memory=False when "
                "creating it.")
        return [self._unmask(values) for values in getattr(self, name)]

    @property
    def residuals_(self):
        """Residual time series of each run, ``Y - X @ beta`` (list of 4D images)."""
        return self._voxelwise("_residuals")

    @property
    def predicted_(self):
        """Predicted time series of each run, ``X @ beta`` (list of 4D images)."""
        return self._voxelwise("_predicted")

    @property
    def r_square_(self):
        """nilearn's (pseudo-)R-square of each run (list of images with one volume)."""
        return self._voxelwise("_r_square")

    @property
    def residuals(self):
        """Deprecated alias of :attr:`residuals_` (as in nilearn 0.14)."""
        _deprecated("residuals")
        return self.residuals_

    @property
    def predicted(self):
        """Deprecated alias of :attr:`predicted_` (as in nilearn 0.14)."""
        _deprecated("predicted")
        return self.predicted_

    @property
    def r_square(self):
        """Deprecated alias of :attr:`r_square_` (as in nilearn 0.14)."""
        _deprecated("r_square")
        return self.r_square_

    # ---------------------------------------------------------------------- contrasts
    def compute_contrast(self, contrast_def, stat_type=None, output_type="z_score"):
        """Compute a contrast: fixed effects over the runs (nilearn's signature and rules).

        Parameters
        ----------
        contrast_def : str, array, or list of those (one per run)
            An expression over design columns (``"audio - video"``), a weight vector, a
            matrix (an F contrast), or one of those per run.
        stat_type : {None, "t", "F"}
            Default: "t" for a vector, "F" for a matrix.
        output_type : {"z_score", "stat", "p_value", "effect_size", "effect_variance", \
"all"}
            "all" returns a dict of the five images.

        Returns
        -------
        Nifti1Image or dict of Nifti1Image
        """
        from glmflow.core.contrasts import compute_contrast, contrast_weights
        from glmflow.execution import available_cores

        check_is_fitted(self)
        if output_type != "all" and output_type not in OUTPUT_TYPES:
            raise ParameterError(
                f"output_type must be one of {', '.join(map(repr, OUTPUT_TYPES))} or 'all'; "
                f"got {output_type!r}.")
        if stat_type not in (None, "t", "F"):
            raise ContrastError(f"stat_type must be None, 't' or 'F'; got {stat_type!r}.")
        n_runs = len(self.models_)
        if isinstance(contrast_def, (np.ndarray, str)):
            definitions = [contrast_def]
        elif isinstance(contrast_def, (list, tuple)):
            if len(contrast_def) == 0:
                raise ContrastError("contrast_def is empty: give an expression or weights.")
            if all(_is_number(v) for v in contrast_def):
                definitions = [np.asarray(contrast_def, dtype=float)]  # one weight vector
            else:
                definitions = list(contrast_def)
        else:
            raise ContrastError(
                "contrast_def must be an expression string, an array, or a list of those "
                f"(one per run); got {type(contrast_def).__name__}.")
        if len(definitions) == 1 and n_runs > 1:
            warnings.warn(
                f"The same contrast will be used for all {n_runs} runs. If the design matrices "
                "are not the same for all runs, (for example with different column names or "
                "column order across runs) you should pass contrast as an expression using "
                "the name of the conditions as they appear in the design matrices.",
                RuntimeWarning, stacklevel=2)
            definitions = definitions * n_runs
        elif len(definitions) != n_runs:
            raise ContrastError(f"{len(definitions)} contrasts given, while there are "
                                f"{n_runs} runs; give one for all runs or one per run.")
        weights = []
        for run, (definition, model) in enumerate(zip(definitions, self.models_, strict=True)):
            if not isinstance(definition, (str, np.ndarray, list, tuple)):
                raise ContrastError(
                    f"The contrast of run {run + 1} must be an expression string or an array; "
                    f"got {type(definition).__name__}.")
            try:
                vector = contrast_weights(definition, model.columns)
            except ContrastError as exc:
                raise ContrastError(f"Run {run + 1}: {exc}") from exc
            if stat_type == "t" and vector.ndim == 2 and vector.shape[0] > 1:
                raise ContrastError(
                    f"A t contrast has one row; the contrast of run {run + 1} has "
                    f"{vector.shape[0]} rows. Use stat_type='F' (or None) for a matrix.")
            if np.all(vector == 0):
                warnings.warn(f"Contrast for run {run} is null.", UserWarning, stacklevel=2)
            weights.append(vector)
        # nilearn names the maps after the per-run definitions, expressions as vectors.
        name = str([_unpadded(d, w) for d, w in zip(definitions, weights, strict=True)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in tails (as nilearn)
            result = compute_contrast(self.models_, weights, stat_type,
                                      n_threads=available_cores())
        wanted = OUTPUT_TYPES if output_type == "all" else (output_type,)
        images = {}
        for key in wanted:
            image = self._unmask(result.maps[key])
            if hasattr(image, "header"):  # a SurfaceImage (surface runs) has none
                image.header["descrip"] = f"{key} of contrast {name}"
            images[key] = image
        return images if output_type == "all" else images[output_type]

    # ------------------------------------------------------------------------ reports
    def generate_report(self, contrasts=None, first_level_contrast=None, title=None,
                        bg_img="MNI152TEMPLATE", threshold=None, alpha=0.001,
                        cluster_threshold=0, height_control="fpr", two_sided=False,
                        min_distance=8.0, plot_type="slice", cut_coords=None,
                        display_mode=None, report_dims=(1600, 800)):
        """An HTML report of the model (nilearn's signature; see glmflow.core.report)."""
        try:
            from glmflow.core.report import report_from_model
        except ImportError as exc:  # pragma: no cover - the report module ships with glmflow
            raise NotImplementedError("This glmflow has no report module.") from exc
        del first_level_contrast  # only for SecondLevelModel's API, as in nilearn
        kwargs = {} if threshold is None else {"threshold": threshold}
        return report_from_model(
            self, contrasts, title=title, bg_img=bg_img, alpha=alpha,
            cluster_threshold=cluster_threshold, height_control=height_control,
            two_sided=two_sided, min_distance=min_distance, plot_type=plot_type,
            cut_coords=cut_coords, display_mode=display_mode, report_dims=report_dims,
            **kwargs)

    def report_parameters(self):
        """The model parameters a report lists (``glmflow.core.report.model_parameters``,
        the rule the workflow's report uses too: nilearn's selection)."""
        from glmflow.core.report import REPORT_PARAMETERS, model_parameters

        return model_parameters(**{name: getattr(self, name) for name in REPORT_PARAMETERS})

    def _log(self, message, level=1):
        if self.verbose >= level:
            print(f"[FirstLevelModel.fit] {message}", flush=True)


# ------------------------------------------------------------------------------ helpers
def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _same(a, b):
    """Equality that works for None, numbers, strings and arrays."""
    if a is b:
        return True
    if a is None or b is None or isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(np.array_equal(a, b))
    except Exception:
        return False


def _signature_parameters(function):
    import inspect

    return dict(inspect.signature(function).parameters)


def _deprecated(name):
    warnings.warn(f"'{name}' is deprecated. It will be removed in Nilearn 0.16.0. "
                  f"Use '{name}_' instead.", FutureWarning, stacklevel=3)


def _per_run(value, n_runs, name):
    """nilearn's rule: a single table for one run, or a list with one per run."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) != n_runs:
        raise ParameterError(
            f"len(run_imgs) {n_runs} does not match len({name}) {len(values)}: give one "
            f"{name} table per run.")
    return values


def _check_table_path(path, what):
    path = Path(path)
    if path.suffix not in (".tsv", ".csv"):
        raise InputFileError(f"Tables to load can only be TSV or CSV; got {what} file {path}.")
    if not path.is_file():
        raise InputFileError(f"The {what} file {path} does not exist.")
    if what == "events" and path.suffix == ".tsv":
        header = path.open().readline()
        if "\t" not in header and "," in header:
            raise EventsError(
                f"The values in the events file {path} are not separated by tabs (its header "
                f"is {header.strip()!r}); please enforce BIDS conventions.")


def _file_of(img):
    """The file an image was loaded from, if its data and affine are still the file's."""
    from nibabel.arrayproxy import ArrayProxy

    filename = img.get_filename()
    if filename is None or not isinstance(img.dataobj, ArrayProxy) or not Path(
            filename).is_file():
        return None
    try:
        on_disk = nib.load(filename)
    except Exception:
        return None
    if on_disk.shape != img.shape or not np.array_equal(on_disk.affine, img.affine):
        return None
    return str(Path(filename).absolute())


def _check_run_imgs(run_imgs):
    """``[(image, path or None)]`` of the runs: 4D NIfTI images on one grid."""
    if isinstance(run_imgs, (str, Path, nib.spatialimages.SpatialImage)):
        run_imgs = [run_imgs]
    if not isinstance(run_imgs, (list, tuple)) or not run_imgs:
        raise ImageError(
            "run_imgs must be a path or a nibabel image, or a non-empty list of those; got "
            f"{type(run_imgs).__name__}.")
    runs = []
    for index, item in enumerate(run_imgs):
        name = f"run_imgs[{index}]"
        if isinstance(item, (str, Path)):
            path = Path(item)
            if not path.is_file():
                raise InputFileError(f"{name}: the file {path} does not exist.")
            try:
                img = nib.load(path)
            except Exception as exc:
                raise InputFileError(f"{name}: {path} is not a readable NIfTI file: {exc}") \
                    from exc
            runs.append((img, str(path.absolute())))
        elif isinstance(item, nib.spatialimages.SpatialImage):
            runs.append((item, _file_of(item)))
        else:
            raise ImageError(
                f"{name} must be a path or a nibabel image (one 4D image per run); got "
                f"{type(item).__name__}.")
        shape = runs[-1][0].shape
        if len(shape) != 4:
            raise ImageError(
                f"{name} has shape {shape}: each run must be a 4D image (x, y, z, time).")
    first = runs[0][0]
    for index, (img, _) in enumerate(runs[1:], start=1):
        if img.shape[:3] != first.shape[:3] or not np.allclose(img.affine, first.affine):
            raise ImageError(
                f"run_imgs[{index}] is not on the grid of run_imgs[0] (shape {img.shape[:3]} "
                f"vs {first.shape[:3]}, or a different affine); all runs must share one "
                "field of view.")
    return runs


def _check_sample_masks(sample_masks, n_scans, designs):
    """nilearn's sample-mask forms, checked: per run, sorted unique scan indices."""
    if sample_masks is None:
        return None
    if isinstance(sample_masks, np.ndarray) and sample_masks.ndim == 1:
        masks = [sample_masks]
    elif isinstance(sample_masks, (list, tuple)) and sample_masks and all(
            np.isscalar(v) for v in sample_masks):
        masks = [np.asarray(sample_masks)]  # one run's indices or booleans
    elif isinstance(sample_masks, (list, tuple, np.ndarray)):
        masks = list(sample_masks)
    else:
        raise SampleMaskError(
            "sample_masks must be an array of scan indices or booleans, or a list with one "
            f"per run; got {type(sample_masks).__name__}.")
    if len(masks) != len(n_scans):
        raise SampleMaskError(
            f"Number of sample_mask ({len(masks)}) not matching number of runs "
            f"({len(n_scans)}).")
    checked = []
    for run, (mask, scans, design) in enumerate(zip(masks, n_scans, designs, strict=True)):
        where = f"sample_masks[{run}]"
        array = np.asarray(mask)
        if array.ndim != 1 or array.size == 0:
            raise SampleMaskError(f"{where} must be a non-empty 1D array; got shape "
                                  f"{array.shape}.")
        if array.dtype == bool:
            if array.size != scans:
                raise SampleMaskError(
                    f"The boolean {where} has {array.size} entries but run {run + 1} has "
                    f"{scans} scans; expected one per scan.")
            array = np.flatnonzero(array)
        elif not np.issubdtype(array.dtype, np.integer):
            if not np.issubdtype(array.dtype, np.floating) or not np.all(
                    array == np.round(array)):
                raise SampleMaskError(
                    f"{where} must hold integer scan indices or booleans; got {array.dtype}.")
            array = array.astype(np.int64)
        if array.min() < 0 or array.max() >= scans:
            raise SampleMaskError(
                f"{where} has indices out of range [0, {scans - 1}] (run {run + 1} has {scans} "
                f"scans): min {array.min()}, max {array.max()}.")
        if np.any(np.diff(array) <= 0):
            raise SampleMaskError(
                f"{where} must hold unique scan indices in increasing order; scans would "
                "otherwise be repeated or reordered in time.")
        if array.size <= design.shape[1]:
            raise SampleMaskError(
                f"{where} keeps {array.size} scans but the design has {design.shape[1]} "
                "columns; at least one more scan than columns is needed.")
        checked.append(array.astype(np.int32))
    return checked


def _check_designs(designs, masks):
    """Design checks before any work (rank, finite values), on the scans that are kept."""
    from glmflow.core.validation import check_design

    for index, design in enumerate(designs):
        kept = design if masks is None else design.iloc[masks[index], :]
        check_design(kept, source=f"run {index + 1}", n_scans=len(kept))


class _InputWriter:
    """Writes in-memory inputs to a folder; content-hashed names when the folder persists.

    With a persistent folder (``base_dir``/``memory``) equal inputs get equal file names
    and contents, so a refit finds Nipype's cache.
    """

    def __init__(self, folder, *, hashed):
        self.folder = Path(folder)
        self.hashed = hashed

    def _path(self, stem, digest_parts, suffix):
        if not self.hashed:
            return self.folder / f"{stem}{suffix}"
        digest = hashlib.sha1()
        for part in digest_parts:
            digest.update(part)
        return self.folder / f"{stem}_{digest.hexdigest()[:16]}{suffix}"

    def image(self, img, path, stem):
        from glmflow.core.io import save_img

        if path is not None:
            return path
        data = np.asanyarray(img.dataobj)
        header = img.header.copy() if isinstance(img, nib.Nifti1Image) else None
        out = nib.Nifti1Image(data, img.affine, header)
        # Write the values as they are in memory (a header's integer type and scale
        # factors would re-quantize them).
        out.set_data_dtype(data.dtype)
        out.header.set_slope_inter(None, None)
        target = self._path(stem, [np.asarray(img.affine, float).tobytes(),
                                   str((data.shape, data.dtype.str)).encode(),
                                   np.ascontiguousarray(data).tobytes()], ".nii")
        if not target.exists():
            save_img(out, target)
        return str(target)

    def design(self, frame, stem):
        from glmflow.core.design import save_design

        text = frame.to_csv(sep="\t", float_format="%.17g").encode()
        target = self._path(stem, [text], ".tsv")
        if not target.exists():
            save_design(frame, target)
        return str(target)

    def sample_mask(self, indices, stem):
        from glmflow.core.io import save_sample_mask

        target = self._path(stem, [np.asarray(indices, np.int64).tobytes()], ".tsv")
        if not target.exists():
            save_sample_mask(indices, target)
        return str(target)


@contextmanager
def _nipype_log_level(verbose):
    """Nipype's node log only at ``verbose >= 2`` (nilearn's verbosity scale)."""
    import logging

    names = ("nipype.workflow", "nipype.interface", "nipype.utils")
    loggers = [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    level = logging.INFO if verbose >= 2 else logging.WARNING
    try:
        for logger in loggers:
            logger.setLevel(level)
        yield
    finally:
        for logger, old in zip(loggers, saved, strict=True):
            logger.setLevel(old)


def _load_image(path):
    """An in-memory copy of an image (the file may be in a folder about to be removed)."""
    img = nib.load(path)
    return nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)


def _masked(path, mask):
    """In-mask values of a 3D or 4D image: ``(n_volumes, n_voxels)`` or ``(n_voxels,)``."""
    data = np.asarray(nib.load(path).dataobj)
    values = data[mask]
    return values.T if values.ndim == 2 else values


def _is_nifti_masker(value):
    """Whether ``value`` is a nilearn ``NiftiMasker``, without importing nilearn.

    A masker object implies ``nilearn.maskers`` was imported; if it was not, no value
    can be one.
    """
    maskers = sys.modules.get("nilearn.maskers")
    return maskers is not None and isinstance(value, maskers.NiftiMasker)


def _check_masker_parameters(args):
    """Raise what ``NiftiMasker.fit`` (nilearn 0.14.1's ``check_params``) raises for these.

    The masker is built later, if ever; a value it would reject must fail the fit as
    before. Messages are nilearn's.
    """
    scalar = (float, np.floating, int, np.integer, type(None))
    checks = (("smoothing_fwhm", scalar, "float | numpy.floating | int | numpy.integer | None"),
              ("t_r", scalar, "float | numpy.floating | int | numpy.integer | None"),
              ("memory_level", (int, np.integer), "int | numpy.integer"))
    for name, types, described in checks:
        value = args[name]
        if isinstance(value, bool) or not isinstance(value, types):
            raise TypeError(f"'{name}' must be of type(s): '{described}'.\n"
                            f"Got: '{value.__class__.__name__}'")
    allowed = ("zscore_sample", "psc", True, False, None)
    if args["standardize"] not in allowed:
        raise ValueError(f"'standardize' must be one of {allowed}.\n"
                         f"'{args['standardize']}' was provided.")


def _mask_of(mask_img):
    """``(in-mask voxels, affine)`` as a NiftiMasker reads a mask: finite and non-zero."""
    data = np.asanyarray(mask_img.dataobj)
    mask = data != 0
    if data.dtype.kind in "fc":
        mask &= np.isfinite(data)
    return mask, mask_img.affine


def _inverse_transform(values, mask, affine):
    """nilearn 0.14.1's ``NiftiMasker.inverse_transform`` of floating-point values.

    Its steps, so its image: ``masking.unmask`` fills a Fortran-ordered array of the
    values' dtype (zeros outside the mask) into an image without a header; the masker then
    remakes it with ``new_img_like`` (that header, scaling, ``glmax`` and the data range
    reset) and sets the header's data type to the values'.

    Parameters
    ----------
    values : ndarray, shape (n_voxels,) or (n_volumes, n_voxels)
        Floating-point values of the voxels in ``mask``.
    mask : ndarray of bool, 3D
    affine : ndarray, shape (4, 4)

    Returns
    -------
    Nifti1Image
        3D for 1D ``values``, else 4D.
    """
    if values.ndim == 1:
        data = np.zeros(mask.shape, dtype=values.dtype, order="F")
        data[mask] = values
    else:
        data = np.zeros((*mask.shape, values.shape[0]), dtype=values.dtype, order="F")
        data[mask, :] = values.T
    unmasked = nib.Nifti1Image(data, affine)
    header = unmasked.header.copy()
    header["scl_slope"] = 0.0
    header["scl_inter"] = 0.0
    header["glmax"] = 0.0
    header["cal_max"] = np.max(data) if data.size > 0 else 0.0
    header["cal_min"] = np.min(data) if data.size > 0 else 0.0
    image = nib.Nifti1Image(data, unmasked.affine, header=header)
    image.set_data_dtype(values.dtype)
    return image


def _clone_masker(masker):
    from sklearn.base import clone

    copy = clone(masker)
    copy.mask_img = masker.mask_img_
    return copy


def _voxel_labels(model):
    """nilearn's ``labels_`` of one run: zeros for OLS, the AR label of each voxel else."""
    if model.meta.get("noise_model") == "ols":
        return np.zeros(model.n_voxels)
    return np.asarray(model.labels)[model.label_index]


class _RegressionResults:
    """The attributes of nilearn's ``SimpleRegressionResults`` for one noise-model group."""

    def __init__(self, theta, cov, dispersion, df_total, df_model):
        self.theta = theta
        self.cov = cov
        self.dispersion = dispersion
        self.nuisance = None
        self.df_total = df_total
        self.df_model = df_model
        self.df_residuals = df_total - df_model

    def vcov(self, matrix=None, column=None, dispersion=None, other=None):
        from nilearn.glm.model import LikelihoodModelResults

        return LikelihoodModelResults.vcov(self, matrix, column, dispersion, other)

    def Tcontrast(self, matrix, store=("t", "effect", "sd"), dispersion=None):  # noqa: N802
        from nilearn.glm.model import LikelihoodModelResults

        return LikelihoodModelResults.Tcontrast(self, matrix, store, dispersion)

    def Fcontrast(self, matrix, dispersion=None, invcov=None):  # noqa: N802
        from nilearn.glm.model import LikelihoodModelResults

        return LikelihoodModelResults.Fcontrast(self, matrix, dispersion, invcov)

    def predicted(self, X):
        """Predicted values for a design ``X``."""
        return np.dot(X, self.theta)

    def residuals(self, Y, X):
        """Residuals of data ``Y`` for a design ``X``."""
        return Y - self.predicted(X)


def _run_results(model):
    """nilearn's ``results_`` entry of one run: label -> regression results."""
    df_total = int(model.meta.get("n_scans"))
    df_model = df_total - model.df_residuals
    results = {}
    for index, label in enumerate(model.labels):
        sel = model.label_index == index
        key = 0.0 if model.meta.get("noise_model") == "ols" else label
        results[key] = _RegressionResults(model.betas[:, sel], model.label_cov[index],
                                          model.dispersion[sel], df_total, df_model)
    return results


def _unpadded(definition, weights):
    """The per-run definition as nilearn prints it (expressions become vectors)."""
    if isinstance(definition, str):
        return weights
    return definition
