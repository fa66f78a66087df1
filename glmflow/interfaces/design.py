"""MakeDesignMatrix: events and confounds TSVs to a design-matrix TSV."""

import os

from nipype.interfaces.base import File, SimpleInterface, TraitedSpec, traits

from glmflow.interfaces.base import GLMFlowInputSpec, optional
from glmflow.interfaces.contrast import decode_contrast


class _MakeDesignMatrixInputSpec(GLMFlowInputSpec):
    events_file = traits.Either(
        None, File(exists=True), default=None, usedefault=True,
        desc="BIDS events TSV (onset, duration[, trial_type, modulation])",
    )
    confounds_file = traits.Either(
        None, File(exists=True), default=None, usedefault=True,
        desc="confounds TSV, one row per scan",
    )
    confound_columns = traits.List(traits.Str, desc="confounds columns to use (default: all)")
    bold_file = File(exists=True, desc="the run (its number of volumes sets n_scans)")
    n_scans = traits.Int(desc="number of scans, when no bold_file is given")
    design_file = traits.Either(
        None, File(exists=True), default=None, usedefault=True,
        desc="a ready design matrix TSV; passed through instead of building one",
    )
    t_r = traits.Float(desc="repetition time in seconds")
    slice_time_ref = traits.Float(0.0, usedefault=True, desc="slice-timing reference (0-1)")
    hrf_model = traits.Either(None, traits.Str, default="glover", usedefault=True,
                              desc="HRF model (nilearn names, e.g. 'glover', 'spm + derivative', 'fir')")
    drift_model = traits.Either(None, traits.Str, default="cosine", usedefault=True,
                                desc="'cosine', 'polynomial' or None")
    high_pass = traits.Float(0.01, usedefault=True, desc="cosine drift cut-off (Hz)")
    drift_order = traits.Int(1, usedefault=True, desc="polynomial drift order")
    fir_delays = traits.List(traits.Float, desc="FIR delays in scans (hrf_model='fir')")
    min_onset = traits.Float(-24.0, usedefault=True, desc="earliest onset modelled (s)")
    contrast_defs = traits.List(
        traits.Str, desc="JSON contrast definitions to check against the columns (fail early)"
    )


class _MakeDesignMatrixOutputSpec(TraitedSpec):
    design_file = File(exists=True, desc="design matrix TSV (frame_time index + regressors)")


class MakeDesignMatrix(SimpleInterface):
    """Build one run's design matrix with nilearn's semantics, or pass a given one through."""

    input_spec = _MakeDesignMatrixInputSpec
    output_spec = _MakeDesignMatrixOutputSpec

    def _run_interface(self, runtime):
        # Imported here: building a workflow loads no pandas or scipy (see interfaces/__init__).
        from glmflow.core.contrasts import check_contrast_columns
        from glmflow.core.data import check_4d, load_img
        from glmflow.core.design import load_design, make_design_matrix, save_design
        from glmflow.core.validation import check_design

        out = os.path.join(runtime.cwd, "design.tsv")
        given = optional(self.inputs.design_file)
        if given is not None:
            design = load_design(given)
        else:
            n_scans = optional(self.inputs.n_scans)
            if optional(self.inputs.bold_file) is not None:
                img = load_img(self.inputs.bold_file)
                check_4d(img, name=self.inputs.bold_file)
                n_scans = img.shape[3]
            design = make_design_matrix(
                n_scans,
                t_r=self.inputs.t_r,
                events=optional(self.inputs.events_file),
                confounds=optional(self.inputs.confounds_file),
                confound_columns=optional(self.inputs.confound_columns) or None,
                slice_time_ref=self.inputs.slice_time_ref,
                hrf_model=self.inputs.hrf_model,
                drift_model=self.inputs.drift_model,
                high_pass=self.inputs.high_pass,
                drift_order=self.inputs.drift_order,
                fir_delays=optional(self.inputs.fir_delays) or None,
                min_onset=self.inputs.min_onset,
            )
        design = check_design(design, source=given)
        for text in optional(self.inputs.contrast_defs) or []:
            check_contrast_columns(decode_contrast(text), design, run_file=self.inputs.bold_file)
        self._results["design_file"] = save_design(design, out)
        return runtime
