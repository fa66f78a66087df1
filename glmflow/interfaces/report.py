"""GLMReport: the HTML report of a first-level model (the workflow's last step)."""

import json
import os

from nipype.interfaces.base import (
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from glmflow.core.design import load_design
from glmflow.core.errors import ParameterError
from glmflow.core.io import atomic_path
from glmflow.core.report import MAX_CLUSTERS, build_report
from glmflow.interfaces.base import GLMFlowInputSpec, optional
from glmflow.interfaces.contrast import decode_contrast, encode_contrast


class _GLMReportInputSpec(GLMFlowInputSpec):
    design_files = InputMultiObject(File(exists=True), mandatory=True,
                                    desc="design matrix TSV of each run, in run order")
    mask_file = File(exists=True, mandatory=True, desc="analysis mask")
    z_files = InputMultiObject(File(exists=True), value=[], usedefault=True,
                               desc="z map of each contrast, aligned with contrast_names")
    contrast_names = InputMultiObject(traits.Str, value=[], usedefault=True,
                                      desc="contrast names, aligned with z_files")
    contrasts = traits.Str(
        "{}", usedefault=True,
        desc="JSON object: contrast name -> encoded definition, as made by encode_contrasts "
             "({'def': ...} or {'per_run': [...]}, optionally with 'stat_type')",
    )
    parameters = traits.Str("{}", usedefault=True,
                            desc="JSON object of model parameters to list in the report")
    methods = traits.Str("", usedefault=True,
                         desc="methods boilerplate (the workflow's __desc__)")
    title = traits.Either(None, traits.Str, default=None, usedefault=True, desc="page title")
    bg_img = traits.Str(
        "MNI152TEMPLATE", usedefault=True,
        desc="background of mask and slice plots: 'MNI152TEMPLATE', a file path, or '' "
             "for none",
    )
    threshold = traits.Float(3.09, usedefault=True,
                             desc="z threshold; used only when height_control is None")
    alpha = traits.Float(0.001, usedefault=True,
                         desc="p (fpr, bonferroni) or q (fdr) level")
    height_control = traits.Enum("fpr", "fdr", "bonferroni", None, usedefault=True,
                                 desc="false-positive control: fpr, fdr, bonferroni or None")
    cluster_threshold = traits.Int(0, usedefault=True,
                                   desc="drop clusters of this many voxels or fewer")
    two_sided = traits.Bool(False, usedefault=True,
                            desc="threshold and tabulate negative values too")
    min_distance = traits.Float(8.0, usedefault=True,
                                desc="minimum distance between cluster sub-peaks (mm)")
    plot_type = traits.Enum("slice", "glass", usedefault=True,
                            desc="stat maps as slices or glass brains")
    cut_coords = traits.Either(None, traits.Int, traits.List(traits.Float), default=None,
                               usedefault=True, desc="nilearn cut_coords of slice plots")
    display_mode = traits.Either(None, traits.Str, default=None, usedefault=True,
                                 desc="nilearn display_mode (default z / lzry)")
    report_dims = traits.Tuple(traits.Int(1600), traits.Int(800), usedefault=True,
                               desc="width, height in pixels (notebook frame, page width)")
    max_clusters = traits.Either(None, traits.Int, default=MAX_CLUSTERS, usedefault=True,
                                 desc="clusters listed per sign in each cluster table")
    out_name = traits.Str("report.html", usedefault=True, desc="file name of the report")


class _GLMReportOutputSpec(TraitedSpec):
    report_file = File(exists=True, desc="self-contained HTML report")


class GLMReport(SimpleInterface):
    """Write the HTML report: design, mask, thresholded maps, cluster tables, methods."""

    input_spec = _GLMReportInputSpec
    output_spec = _GLMReportOutputSpec

    def _run_interface(self, runtime):
        names = list(self.inputs.contrast_names)
        z_files = list(self.inputs.z_files)
        if len(names) != len(z_files):
            raise ParameterError(
                f"GLMReport got {len(z_files)} z maps for {len(names)} contrast names "
                f"({names}); they must be aligned."
            )
        contrasts = decode_contrasts(self.inputs.contrasts)
        missing = [name for name in names if name not in contrasts]
        if missing:
            raise ParameterError(
                f"GLMReport: no definition for contrast(s) {missing} in 'contrasts' "
                f"(has {list(contrasts)})."
            )
        text = build_report(
            design_matrices=[load_design(path) for path in self.inputs.design_files],
            contrasts={name: contrasts[name] for name in names},
            z_maps=dict(zip(names, z_files, strict=True)),
            mask_img=self.inputs.mask_file,
            parameters=json.loads(self.inputs.parameters),
            methods_text=self.inputs.methods or None,
            title=optional(self.inputs.title),
            bg_img=self.inputs.bg_img or None,
            threshold=self.inputs.threshold,
            alpha=self.inputs.alpha,
            cluster_threshold=self.inputs.cluster_threshold,
            height_control=self.inputs.height_control,
            two_sided=self.inputs.two_sided,
            min_distance=self.inputs.min_distance,
            plot_type=self.inputs.plot_type,
            cut_coords=optional(self.inputs.cut_coords),
            display_mode=optional(self.inputs.display_mode),
            # a MapNode copy of this interface can lose the Tuple trait's default
            report_dims=tuple(self.inputs.report_dims) if isdefined(self.inputs.report_dims)
            else (1600, 800),
            max_clusters=self.inputs.max_clusters if isdefined(self.inputs.max_clusters)
            else MAX_CLUSTERS,
        )
        path = os.path.join(runtime.cwd, self.inputs.out_name)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        self._results["report_file"] = path
        return runtime


def encode_contrasts(contrasts):
    """JSON text for GLMReport's ``contrasts`` input.

    Parameters
    ----------
    contrasts : dict
        Name -> definition, in the forms ``init_first_level_wf`` takes: an expression, a
        vector, a matrix, a list with one per run, or ``{"def": ..., "stat_type": "F"}``.
    """
    encoded = {}
    for name, definition in contrasts.items():
        stat_type = None
        if isinstance(definition, dict):
            definition, stat_type = definition.get("def"), definition.get("stat_type")
        item = json.loads(encode_contrast(definition))
        if stat_type is not None:
            item["stat_type"] = stat_type
        encoded[name] = item
    return json.dumps(encoded)


def decode_contrasts(text):
    """Inverse of :func:`encode_contrasts`: name -> ``{"def": ..., "stat_type": ...}``."""
    decoded = {}
    for name, item in json.loads(text).items():
        stat_type = item.pop("stat_type", None)
        decoded[name] = {"def": decode_contrast(json.dumps(item)), "stat_type": stat_type}
    return decoded
