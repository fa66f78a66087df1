"""ComputeMask: the analysis mask of a set of runs."""

import os

import numpy as np
from nipype.interfaces.base import File, InputMultiObject, SimpleInterface, TraitedSpec, traits

from glmflow.core.data import compute_mask
from glmflow.core.io import save_img
from glmflow.core.validation import check_bold_images, check_mask
from glmflow.interfaces.base import GLMFlowInputSpec, optional


class _ComputeMaskInputSpec(GLMFlowInputSpec):
    bold_files = InputMultiObject(File(exists=True), mandatory=True, desc="the runs")
    mask_file = traits.Either(None, File(exists=True), default=None, usedefault=True,
                              desc="a given mask (resampled to the runs' grid if needed)")
    target_affine = traits.Either(None, traits.List(traits.List(traits.Float)), default=None,
                                  usedefault=True, desc="resample to this affine (3x3 or 4x4)")
    target_shape = traits.Either(None, traits.List(traits.Int), default=None, usedefault=True,
                                 desc="resample to this 3D shape (with target_affine)")


class _ComputeMaskOutputSpec(TraitedSpec):
    mask_file = File(exists=True, desc="binary mask NIfTI")


class ComputeMask(SimpleInterface):
    """Use the given mask, or compute nilearn's multi-run EPI mask."""

    input_spec = _ComputeMaskInputSpec
    output_spec = _ComputeMaskOutputSpec

    def _run_interface(self, runtime):
        affine = optional(self.inputs.target_affine)
        runs = check_bold_images(list(self.inputs.bold_files))
        given = optional(self.inputs.mask_file)
        if given is not None:
            check_mask(given, runs[0])
        mask = compute_mask(
            self.inputs.bold_files,
            optional(self.inputs.mask_file),
            target_affine=None if affine is None else np.asarray(affine),
            target_shape=optional(self.inputs.target_shape),
        )
        self._results["mask_file"] = save_img(mask, os.path.join(runtime.cwd, "mask.nii.gz"))
        return runtime
