"""FitGLM: one run's GLM fit, to a fitted-model file."""

import os
import tempfile

import nibabel as nib
import numpy as np
from nipype.interfaces.base import File, SimpleInterface, TraitedSpec, traits

from glmflow.core import read_ahead
from glmflow.core.data import load_masked_run
from glmflow.core.glm import chunk_size_for, fit_glm, save_model
from glmflow.interfaces.base import FitOptionsInputSpec, fit_arguments, optional


class _FitGLMInputSpec(FitOptionsInputSpec):
    bold_file = File(exists=True, mandatory=True, desc="the run (4D NIfTI)")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    smoothing_fwhm = traits.Either(None, traits.Float, default=None, usedefault=True,
                                   desc="Gaussian smoothing FWHM in mm")
    target_affine = traits.Either(None, traits.List(traits.List(traits.Float)), default=None,
                                  usedefault=True, desc="resample the data to this affine")
    spill = traits.Bool(True, usedefault=True,
                        desc="keep the masked run in a temporary file on local disk (TMPDIR) "
                             "while fitting, instead of in memory")
    target_shape = traits.Either(None, traits.List(traits.Int), default=None, usedefault=True,
                                 desc="resample the data to this shape")


class _FitGLMOutputSpec(TraitedSpec):
    model_file = File(exists=True, desc="fitted model (.npz, versioned)")
    residuals_file = File(desc="residual time series (minimize_memory=False)")
    predicted_file = File(desc="predicted time series (minimize_memory=False)")
    r_square_file = File(desc="R-square map (minimize_memory=False)")


class FitGLM(SimpleInterface):
    """Fit one run's GLM (OLS or AR(p)) exactly as nilearn, in bounded memory."""

    input_spec = _FitGLMInputSpec
    output_spec = _FitGLMOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib  # noqa: F811  (kept local for pickled nodes)

        mask_img = nib.load(self.inputs.mask_file)
        affine = optional(self.inputs.target_affine)
        n_scans = nib.load(self.inputs.bold_file).shape[-1]
        reading = read_arguments(self.inputs, n_scans)
        raw = None
        if streamed(self.inputs):  # perhaps read ahead by run_workflow
            raw = read_ahead.take(self.inputs.bold_file, mask_img, **reading)
        if raw is None:
            raw = load_masked_run(
                self.inputs.bold_file,
                mask_img,
                smoothing_fwhm=optional(self.inputs.smoothing_fwhm),
                target_affine=None if affine is None else np.asarray(affine),
                target_shape=optional(self.inputs.target_shape),
                **reading,
            )
        design, options = fit_arguments(self.inputs, raw.shape[0])
        model, outputs = fit_glm(raw, design, mask_img=mask_img, **options)
        if hasattr(raw, "close"):
            raw.close()  # a spilled run: its file is released in the background
        del raw
        cwd = runtime.cwd
        self._results["model_file"] = save_model(model, os.path.join(cwd, "model.npz"))
        if outputs is not None:
            from glmflow.core.io import save_img  # pandas: only for these optional outputs

            self._results["residuals_file"] = save_img(
                _to_4d(outputs.residuals, model), os.path.join(cwd, "residuals.nii.gz"))
            self._results["predicted_file"] = save_img(
                _to_4d(outputs.predicted, model), os.path.join(cwd, "predicted.nii.gz"))
            r2 = np.zeros(model.mask.shape)
            r2[model.mask] = outputs.r_square
            self._results["r_square_file"] = save_img(
                nib.Nifti1Image(r2, model.affine), os.path.join(cwd, "r_square.nii.gz"))
        return runtime


def streamed(inputs):
    """Whether the fit reads its run as it is (no smoothing, no resampling)."""
    return all(optional(getattr(inputs, name)) is None
               for name in ("smoothing_fwhm", "target_affine", "target_shape"))


def read_arguments(inputs, n_scans):
    """How a :class:`FitGLM` node reads its run: ``spill_dir`` and ``block_size``."""
    return {
        # TMPDIR is local scratch on most clusters; the node folder may be on NFS.
        "spill_dir": tempfile.gettempdir() if inputs.spill else None,
        # the spilled run is stored in the blocks the fit reads (chunk_mb)
        "block_size": chunk_size_for(n_scans, inputs.chunk_mb),
    }


def _to_4d(series, model):
    data = np.zeros((*model.mask.shape, series.shape[0]))
    data[model.mask] = series.T
    return nib.Nifti1Image(data, model.affine)
