"""Surface and CIFTI-2 steps: scan count, mask, fit, contrast (thin wrappers over core.surface).

A run is given as a list of files: ``[left.func.gii, right.func.gii]`` (a GIFTI pair) or
``[run.dtseries.nii]`` (CIFTI-2). Masks travel between nodes in the same formats (a GIFTI
pair or a ``.dscalar.nii``), statistical maps leave as GIFTI pairs or ``.dscalar.nii``.
"""

import os

import numpy as np
from nipype.interfaces.base import File, InputMultiObject, SimpleInterface, TraitedSpec, traits

from glmflow.interfaces.base import (
    FitOptionsInputSpec,
    GLMFlowInputSpec,
    fit_arguments,
    optional,
)
from glmflow.interfaces.contrast import EstimateContrastInputSpec

#: Output field -> (nilearn output_type, file ``stat-`` label).
OUTPUTS = {
    "effect_files": ("effect_size", "effect"),
    "variance_files": ("effect_variance", "variance"),
    "stat_files": ("stat", None),
    "z_files": ("z_score", "z"),
    "p_files": ("p_value", "p"),
}

_RUN_DESC = "one run: [left, right] GIFTI time series or [run.dtseries.nii]"


def _mesh_input():
    return traits.Either(
        None, traits.Str, traits.List(File(exists=True)), default=None, usedefault=True,
        desc="surface mesh for smoothing: a nilearn template name ('fsaverage5') or "
             "[left, right] GIFTI surface files",
    )


class _CountScansInputSpec(GLMFlowInputSpec):
    bold_file = InputMultiObject(File(exists=True), mandatory=True, desc=_RUN_DESC)


class _CountScansOutputSpec(TraitedSpec):
    n_scans = traits.Int(desc="number of scans of the run")


class CountScans(SimpleInterface):
    """Number of scans of a surface or CIFTI run (to build its design matrix)."""

    input_spec = _CountScansInputSpec
    output_spec = _CountScansOutputSpec

    def _run_interface(self, runtime):
        from glmflow.core.surface import n_scans

        self._results["n_scans"] = n_scans(list(self.inputs.bold_file))
        return runtime


class _ComputeSurfaceMaskInputSpec(GLMFlowInputSpec):
    bold_files = traits.List(traits.List(File(exists=True)), mandatory=True,
                             desc=f"the runs, each {_RUN_DESC}")
    mask_files = InputMultiObject(
        File(exists=True),
        desc="a given mask ([left, right] GIFTI or mask.dscalar.nii); non-zero = in. "
             "Default: elements finite in every run (nilearn's rule)",
    )


class _ComputeSurfaceMaskOutputSpec(TraitedSpec):
    mask_files = traits.List(File(exists=True), desc="mask as [left, right] GIFTI or dscalar")


class ComputeSurfaceMask(SimpleInterface):
    """Use the given vertex/grayordinate mask, or nilearn's finite-values rule."""

    input_spec = _ComputeSurfaceMaskInputSpec
    output_spec = _ComputeSurfaceMaskOutputSpec

    def _run_interface(self, runtime):
        from glmflow.core.surface import compute_surface_mask, save_mask

        mask = optional(self.inputs.mask_files)
        geometry = compute_surface_mask(
            [list(run) for run in self.inputs.bold_files],
            None if not mask else list(mask),
        )
        self._results["mask_files"] = save_mask(geometry, os.path.join(runtime.cwd, "mask"))
        return runtime


class _FitSurfaceGLMInputSpec(FitOptionsInputSpec):
    bold_file = InputMultiObject(File(exists=True), mandatory=True, desc=_RUN_DESC)
    mask_files = InputMultiObject(File(exists=True), mandatory=True,
                                  desc="mask from ComputeSurfaceMask")
    mesh = _mesh_input()
    mesh_type = traits.Str("pial", usedefault=True,
                           desc="surface of a template mesh (pial, white_matter, inflated)")
    smoothing_fwhm = traits.Either(None, traits.Float, default=None, usedefault=True,
                                   desc="surface smoothing FWHM in mm (nilearn's iterations)")


class _FitSurfaceGLMOutputSpec(TraitedSpec):
    model_file = File(exists=True, desc="fitted model (.npz, versioned, geometry included)")
    residuals_files = traits.List(File(exists=True), desc="residual time series")
    predicted_files = traits.List(File(exists=True), desc="predicted time series")
    r_square_files = traits.List(File(exists=True), desc="R-square map")


class FitSurfaceGLM(SimpleInterface):
    """Fit one surface/CIFTI run's GLM (OLS or AR(p)) exactly as nilearn."""

    input_spec = _FitSurfaceGLMInputSpec
    output_spec = _FitSurfaceGLMOutputSpec

    def _run_interface(self, runtime):
        from glmflow.core.glm import fit_glm, save_model
        from glmflow.core.surface import (
            load_mask,
            load_masked_surface_run,
            resolve_mesh,
            save_maps,
        )

        geometry = load_mask(list(self.inputs.mask_files))
        mesh = optional(self.inputs.mesh)
        raw = load_masked_surface_run(
            list(self.inputs.bold_file), geometry,
            smoothing_fwhm=optional(self.inputs.smoothing_fwhm),
            mesh=None if mesh is None else resolve_mesh(mesh, mesh_type=self.inputs.mesh_type),
        )
        design, options = fit_arguments(self.inputs, raw.shape[0])
        model, outputs = fit_glm(
            raw,
            design,
            mask_img=geometry.mask,
            geometry=geometry.kind,
            geometry_info=geometry.to_info(),
            **options,
        )
        del raw
        cwd = runtime.cwd
        self._results["model_file"] = save_model(model, os.path.join(cwd, "model.npz"))
        if outputs is not None:
            t_r = optional(self.inputs.t_r)
            for field, values, series in (("residuals_files", outputs.residuals, True),
                                          ("predicted_files", outputs.predicted, True),
                                          ("r_square_files", outputs.r_square, False)):
                name = field.replace("_files", "")
                self._results[field] = save_maps(
                    values, geometry, os.path.join(cwd, name), name=name, series=series,
                    t_r=t_r)
        return runtime


class _EstimateSurfaceContrastInputSpec(EstimateContrastInputSpec):
    gifti_float32 = traits.Bool(
        False, usedefault=True,
        desc="write GIFTI maps in float32 (the GIFTI standard's float type, read by every "
             "tool) instead of float64 (exact: equal to nilearn's to 1e-9)")


class _EstimateSurfaceContrastOutputSpec(TraitedSpec):
    effect_files = traits.List(File(exists=True), desc="effect size ([L, R] GIFTI or dscalar)")
    variance_files = traits.List(File(exists=True), desc="effect variance")
    stat_files = traits.List(File(exists=True), desc="t or F map")
    z_files = traits.List(File(exists=True), desc="z map")
    p_files = traits.List(File(exists=True), desc="p map")
    stat_type = traits.Str(desc="'t' or 'F'")
    dof = traits.Float(desc="residual degrees of freedom (summed over runs)")


class EstimateSurfaceContrast(SimpleInterface):
    """The five statistical maps of a contrast on surfaces (.func.gii pairs) or CIFTI."""

    input_spec = _EstimateSurfaceContrastInputSpec
    output_spec = _EstimateSurfaceContrastOutputSpec

    def _run_interface(self, runtime):
        from glmflow.core.contrasts import compute_contrast
        from glmflow.core.glm import load_model
        from glmflow.core.io import bids_label
        from glmflow.core.surface import INTENTS, SurfaceGeometry, save_maps
        from glmflow.interfaces.contrast import decode_contrast

        models = [load_model(path) for path in self.inputs.model_files]
        geometry = SurfaceGeometry.from_model(models[0])
        result = compute_contrast(
            models, decode_contrast(self.inputs.contrast_def), optional(self.inputs.stat_type),
            n_threads=max(1, int(self.inputs.num_threads)),
        )
        label = bids_label(self.inputs.contrast_name)
        for field, (key, stat) in OUTPUTS.items():
            stat = stat or result.stat_type
            intent = INTENTS.get(key if key != "stat" else result.stat_type, "NIFTI_INTENT_NONE")
            self._results[field] = save_maps(
                result.maps[key], geometry,
                os.path.join(runtime.cwd, f"contrast-{label}_stat-{stat}_statmap"),
                name=f"{label} {stat}", intent=intent,
                gifti_dtype=np.float32 if self.inputs.gifti_float32 else np.float64,
            )
        self._results["stat_type"] = result.stat_type
        self._results["dof"] = result.dof
        return runtime
