"""EstimateContrast: one contrast over one or several fitted runs."""

import json
import os
from concurrent.futures import ThreadPoolExecutor

from nipype.interfaces.base import File, InputMultiObject, SimpleInterface, TraitedSpec, traits

from glmflow.core.errors import ParameterError
from glmflow.interfaces.base import GLMFlowInputSpec, optional

#: Output field -> (nilearn output_type, file ``stat-`` label).
OUTPUTS = {
    "effect_file": ("effect_size", "effect"),
    "variance_file": ("effect_variance", "variance"),
    "stat_file": ("stat", None),
    "z_file": ("z_score", "z"),
    "p_file": ("p_value", "p"),
}


class EstimateContrastInputSpec(GLMFlowInputSpec):
    """Inputs of a contrast step (shared by the volume and surface interfaces)."""

    # Not part of the cache key (the maps do not depend on it); set from the node's n_procs.
    num_threads = traits.Int(1, usedefault=True, nohash=True,
                             desc="threads computing the tails and writing the maps")
    model_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="fitted models of the runs (fixed effects across them)")
    contrast_name = traits.Str(mandatory=True, desc="name of the contrast (used in file names)")
    contrast_def = traits.Str(
        mandatory=True,
        desc="JSON: an expression string, a vector, a matrix, or a list with one per run",
    )
    stat_type = traits.Either(None, traits.Enum("t", "F"), default=None, usedefault=True,
                              desc="'t' or 'F' (default: t for vectors, F for matrices)")


class _EstimateContrastOutputSpec(TraitedSpec):
    effect_file = File(exists=True, desc="effect size map")
    variance_file = File(exists=True, desc="effect variance map")
    stat_file = File(exists=True, desc="t or F map")
    z_file = File(exists=True, desc="z map")
    p_file = File(exists=True, desc="p map")
    stat_type = traits.Str(desc="'t' or 'F'")
    dof = traits.Float(desc="residual degrees of freedom (summed over runs)")


class EstimateContrast(SimpleInterface):
    """Compute the five statistical maps of a contrast, nilearn's way."""

    input_spec = EstimateContrastInputSpec
    output_spec = _EstimateContrastOutputSpec

    def _run_interface(self, runtime):
        # Imported here: building a workflow loads no pandas or scipy (see interfaces/__init__).
        from glmflow.core.contrasts import compute_contrast
        from glmflow.core.glm import load_model
        from glmflow.core.io import bids_label
        from glmflow.core.maps import MaskedMapWriter

        models = [load_model(path) for path in self.inputs.model_files]
        if models[0].geometry != "volume":
            raise ParameterError(
                f"{self.inputs.model_files[0]} is a {models[0].geometry} model; use "
                "EstimateSurfaceContrast (glmflow.interfaces.surface) for surface/CIFTI data."
            )
        n_threads = max(1, int(self.inputs.num_threads))
        result = compute_contrast(
            models, decode_contrast(self.inputs.contrast_def), optional(self.inputs.stat_type),
            n_threads=n_threads,
        )
        writer = MaskedMapWriter(models[0].mask, models[0].affine)
        label = bids_label(self.inputs.contrast_name)
        paths = {
            field: os.path.join(runtime.cwd,
                                f"contrast-{label}_stat-{stat or result.stat_type}_statmap.nii.gz")
            for field, (_, stat) in OUTPUTS.items()
        }
        # Compressing a map releases the GIL: with threads the five are written at once.
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            written = {field: pool.submit(writer.write, result.maps[key], paths[field])
                       for field, (key, _) in OUTPUTS.items()}
            for field, future in written.items():
                self._results[field] = future.result()
        self._results["stat_type"] = result.stat_type
        self._results["dof"] = result.dof
        return runtime


def encode_contrast(contrast_def):
    """JSON text of a contrast definition.

    A list or tuple of strings/arrays is one definition per run (nilearn's rule); anything
    else (a string, a vector, a matrix, nested lists of numbers) is one definition for all
    runs.
    """
    import numpy as np

    def plain(value):
        return value.tolist() if isinstance(value, np.ndarray) else value

    if isinstance(contrast_def, (list, tuple)) and any(
        isinstance(v, (str, np.ndarray)) for v in contrast_def
    ):
        return json.dumps({"per_run": [plain(v) for v in contrast_def]})
    if isinstance(contrast_def, tuple):
        contrast_def = list(contrast_def)
    return json.dumps({"def": plain(contrast_def)})


def decode_contrast(text):
    """Inverse of :func:`encode_contrast`."""
    import numpy as np

    def value(item):
        return item if isinstance(item, str) else np.asarray(item, float)

    data = json.loads(text)
    if "per_run" in data:
        return [value(item) for item in data["per_run"]]
    return value(data["def"])
