"""The HTML report of a first-level GLM: one self-contained file, readable offline.

:func:`build_report` is a pure function of the model's pieces (design matrices, contrast
weights, z maps, mask, parameters, methods text) and returns the HTML text. Every
figure is drawn with nilearn's plotting functions on matplotlib's Agg backend and
inlined as a base64 PNG; the page loads nothing from the network and runs no script.
Thresholds and cluster tables are nilearn's (see :mod:`glmflow.core.thresholds`).

Two callers: the ``GLMReport`` interface (files from the workflow) and the facade's
``generate_report`` through :func:`report_from_model`. Given the same inputs both give
byte-identical HTML (no time stamps; PNG metadata stripped).
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
import sys
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from glmflow.core.contrasts import contrast_weights, per_run_definitions
from glmflow.core.errors import ContrastError, ParameterError
from glmflow.core.thresholds import (
    DEFAULT_THRESHOLD,
    check_threshold_options,
    cluster_table,
    threshold_map,
)

#: Absolute correlation between two regressors above which the report warns.
HIGH_CORRELATION = 0.9
#: Packages whose versions the report lists (read from metadata: nothing is imported).
VERSION_PACKAGES = ("glmflow", "nilearn", "nipype", "numpy", "scipy", "nibabel", "pandas",
                    "scikit-learn", "matplotlib")
#: Model parameters a report may list (nilearn's names).
REPORT_PARAMETERS = ("subject_label", "t_r", "slice_time_ref", "hrf_model", "drift_model",
                     "high_pass", "drift_order", "fir_delays", "noise_model",
                     "smoothing_fwhm", "signal_scaling", "standardize", "target_affine",
                     "target_shape")
#: Clusters listed per sign in a cluster table (see :func:`cluster_table`).
MAX_CLUSTERS = 50
#: nilearn's default display modes.
DEFAULT_DISPLAY_MODE = {"slice": "z", "glass": "lzry"}


# ----------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------
def build_report(
    *,
    design_matrices,
    contrasts,
    z_maps,
    mask_img,
    parameters=None,
    methods_text=None,
    title=None,
    bg_img="MNI152TEMPLATE",
    threshold=DEFAULT_THRESHOLD,
    alpha=0.001,
    cluster_threshold=0,
    height_control="fpr",
    two_sided=False,
    min_distance=8.0,
    plot_type="slice",
    cut_coords=None,
    display_mode=None,
    report_dims=(1600, 800),
    versions=None,
    max_clusters=MAX_CLUSTERS,
) -> str:
    """Build the report and return it as HTML text.

    Parameters
    ----------
    design_matrices : list of pandas.DataFrame
        One design matrix per run.
    contrasts : dict
        Contrast name -> definition: an expression string (``"a - b"``), a vector or
        matrix of weights, a list with one of those per run, or
        ``{"def": ..., "stat_type": ...}``. Same order as ``z_maps``.
    z_maps : dict
        Contrast name -> z map (image or path).
    mask_img : Nifti1Image or path
        The analysis mask.
    parameters : dict, optional
        Model parameters, listed as given.
    methods_text : str, optional
        The workflow's methods boilerplate (``__desc__``); paragraphs split on blank lines.
    title : str, optional
        Page title and heading.
    bg_img : image, path, "MNI152TEMPLATE" or None
        Background of the mask and stat-map plots (nilearn's default: the MNI template
        that ships with nilearn). Not used by glass-brain plots.
    threshold, alpha, cluster_threshold, height_control, two_sided, min_distance
        nilearn's ``generate_report`` meaning: ``height_control`` "fpr", "fdr",
        "bonferroni" (``alpha`` is the p or q level) or None (``threshold`` is the z
        threshold); clusters of ``cluster_threshold`` voxels or fewer are dropped;
        sub-peaks in the cluster table are ``min_distance`` mm apart.
    plot_type : {"slice", "glass"}
        Stat maps as slices over ``bg_img`` or as glass brains.
    cut_coords, display_mode
        Passed to nilearn's plotting (defaults: "z" for slices, "lzry" for glass).
    report_dims : (int, int)
        Width and height in pixels of the report when shown in a notebook; the width
        also caps the page width.
    versions : dict, optional
        Package -> version to list; defaults to the installed versions.
    max_clusters : int or None, default=50
        The cluster table lists the clusters with the highest peaks, this many per sign
        (None: all). The rows are the first rows of nilearn's full table.

    Returns
    -------
    str
        The HTML document.
    """
    check_threshold_options(
        height_control=height_control, alpha=alpha, threshold=threshold,
        cluster_threshold=cluster_threshold, min_distance=min_distance, plot_type=plot_type,
    )
    design_matrices = _check_designs(design_matrices)
    contrasts = dict(contrasts or {})
    z_maps = dict(z_maps or {})
    missing = [name for name in z_maps if name not in contrasts]
    if missing:
        raise ContrastError(
            f"No contrast definition for the z map(s) {missing}; definitions were given "
            f"for {list(contrasts)}."
        )
    width, height = _check_dims(report_dims)
    display_mode = display_mode or DEFAULT_DISPLAY_MODE[plot_type]
    bg = _background(bg_img)

    _use_agg()
    volume_mask = _as_volume(mask_img)
    z_volumes = {name: _as_volume(img) for name, img in z_maps.items()}
    if volume_mask is None or any(v is None for v in z_volumes.values()):
        # surface or CIFTI maps: no slices, glass brains or cluster tables (nilearn's
        # volume tools), but the rest of the report and the extreme values
        sections, found = _non_volume_sections(design_matrices, contrasts, z_maps, mask_img,
                                               parameters, methods_text, versions)
        return _page(title or "First-level GLM report", sections, found, width=width,
                     height=height)
    mask_img = volume_mask
    parameters = dict(parameters or {})
    page_title = title or "First-level GLM report"

    warnings_found = []  # (anchor, text) shown at the top and in place
    weights = {}
    for name, definition in contrasts.items():
        try:
            weights[name] = contrast_weights_per_run(definition, design_matrices)
        except ContrastError as exc:
            raise ContrastError(f"Contrast {name!r}: {exc}") from exc
    design_html = _design_section(design_matrices, weights, warnings_found)
    mask_html = _mask_section(mask_img, bg)
    stat_html = []
    for index, name in enumerate(z_maps):
        stat_html.append(_contrast_section(
            index, name, contrasts[name], weights[name], z_volumes[name], mask_img, bg,
            warnings_found,
            threshold=threshold, alpha=alpha, cluster_threshold=cluster_threshold,
            height_control=height_control, two_sided=two_sided, min_distance=min_distance,
            plot_type=plot_type, cut_coords=cut_coords, display_mode=display_mode,
            max_clusters=max_clusters,
        ))

    sections = [
        ("parameters", "Model", _parameters_section(parameters, design_matrices, mask_img)),
        ("design", "Design matrices", design_html),
        ("mask", "Mask", mask_html),
        ("contrasts", "Statistical maps", "".join(stat_html) or
         "<p class='note'>No contrast was requested.</p>"),
        ("methods", "Methods", _methods_section(methods_text)),
        ("versions", "Software versions", _versions_section(versions)),
    ]
    return _page(page_title, sections, warnings_found, width=width, height=height)


class Report:
    """An HTML report, as returned by ``FirstLevelModel.generate_report``.

    Mirrors the parts of nilearn's ``HTMLReport`` people use: ``save_as_html``,
    ``get_iframe``, ``_repr_html_`` (notebooks), ``width``/``height``, ``str()``.
    """

    def __init__(self, html_text: str, *, report_dims=(1600, 800)):
        self.html = html_text
        self.width, self.height = _check_dims(report_dims)

    def __str__(self):
        return self.html

    def get_standalone(self) -> str:
        """The full HTML document."""
        return self.html

    def resize(self, width, height):
        """Change the notebook frame size."""
        self.width, self.height = _check_dims((width, height))
        return self

    def get_iframe(self, width=None, height=None) -> str:
        """An ``<iframe srcdoc=...>`` holding the report (for notebooks)."""
        width = width or self.width
        height = height or self.height
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" width="{width}" '
                f'height="{height}" frameborder="0"></iframe>')

    def _repr_html_(self):
        return self.get_iframe()

    def save_as_html(self, file_name):
        """Write the report to ``file_name`` (atomically)."""
        from glmflow.core.io import atomic_path

        with atomic_path(file_name) as tmp:
            tmp.write_text(self.html, encoding="utf-8")
        return str(file_name)


def report_from_model(
    model,
    contrasts=None,
    title=None,
    bg_img="MNI152TEMPLATE",
    threshold=DEFAULT_THRESHOLD,
    alpha=0.001,
    cluster_threshold=0,
    height_control="fpr",
    two_sided=False,
    min_distance=8.0,
    plot_type="slice",
    cut_coords=None,
    display_mode=None,
    report_dims=(1600, 800),
    *,
    parameters=None,
    methods_text=None,
) -> Report:
    """Report of a fitted model with nilearn's ``FirstLevelModel`` API.

    Works with glmflow's facade and with nilearn's own ``FirstLevelModel``: it reads
    ``design_matrices_``, the mask (``mask_img_`` or ``masker_.mask_img_``) and calls
    ``compute_contrast(definition, stat_type=..., output_type="z_score")``.

    Parameters
    ----------
    model : fitted FirstLevelModel
    contrasts : dict, str, list of str, array or list of arrays, optional
        nilearn's forms: name -> definition, a single expression, a list of expressions
        or weight arrays (named after their expression, or ``contrast_<i>``).
        None: the report lists model and design only.
    title ... report_dims
        As :func:`build_report` (nilearn's ``generate_report`` meaning).
    parameters : dict, optional
        Model parameters to list; default: ``model.report_parameters()`` if the model
        has it, else the model's ``get_params()`` (nilearn) minus runtime options.
    methods_text : str, optional
        Default: ``model.methods_text`` if present.

    Returns
    -------
    Report
    """
    designs = getattr(model, "design_matrices_", None)
    if designs is None:
        raise ParameterError("The model must be fitted before generate_report is called.")
    named = _name_contrasts(contrasts)
    mask_img = getattr(model, "mask_img_", None)
    if mask_img is None and getattr(model, "masker_", None) is not None:
        mask_img = model.masker_.mask_img_
    z_maps = {}
    for name, definition in named.items():
        definition, stat_type = _split_stat_type(definition)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*same contrast will be used")
            z_maps[name] = model.compute_contrast(
                definition, stat_type=stat_type, output_type="z_score")
    if parameters is None:
        if hasattr(model, "report_parameters"):
            parameters = model.report_parameters()
        else:
            parameters = _model_parameters(model)
    if methods_text is None:
        methods_text = getattr(model, "methods_text", None)
    text = build_report(
        design_matrices=list(designs), contrasts=named, z_maps=z_maps, mask_img=mask_img,
        parameters=parameters, methods_text=methods_text, title=title, bg_img=bg_img,
        threshold=threshold, alpha=alpha, cluster_threshold=cluster_threshold,
        height_control=height_control, two_sided=two_sided, min_distance=min_distance,
        plot_type=plot_type, cut_coords=cut_coords, display_mode=display_mode,
        report_dims=report_dims,
    )
    return Report(text, report_dims=report_dims)


def model_parameters(**params) -> dict:
    """The model parameters a report lists: nilearn's selection, sorted by name.

    The workflow and the facade both build the ``parameters`` of :func:`build_report`
    with this rule, so the same settings give the same table. As nilearn's report does,
    it keeps ``fir_delays`` only for the FIR model, ``high_pass`` only for cosine drifts,
    ``drift_order`` only for polynomial drifts, and leaves out unset (None) values.

    Parameters
    ----------
    **params
        Any of :data:`REPORT_PARAMETERS` (nilearn ``FirstLevelModel`` names). Unknown
        names raise :class:`ParameterError`.
    """
    unknown = sorted(set(params) - set(REPORT_PARAMETERS))
    if unknown:
        raise ParameterError(f"Unknown report parameter(s) {unknown}; expected some of "
                             f"{list(REPORT_PARAMETERS)}.")
    keep = set(params) - {"fir_delays", "high_pass", "drift_order"}
    if params.get("hrf_model") == "fir":
        keep.add("fir_delays")
    if params.get("drift_model") == "cosine":
        keep.add("high_pass")
    elif params.get("drift_model") == "polynomial":
        keep.add("drift_order")
    return {key: _jsonable(params[key]) for key in sorted(keep & set(params))
            if params[key] is not None}


def software_versions() -> dict:
    """Python and package versions (from installed metadata; nothing is imported)."""
    versions = {"python": platform.python_version()}
    for package in VERSION_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def contrast_weights_per_run(definition, designs):
    """The weight vector or matrix of a contrast on each run's design.

    ``definition`` is any form ``compute_contrast`` takes (``{"def": ..., "stat_type": ...}``
    is unwrapped); the rules (one definition for all runs or one per run, expressions,
    zero-padding of short vectors) are :mod:`glmflow.core.contrasts`'.
    """
    definition, _ = _split_stat_type(definition)
    per_run = per_run_definitions(definition, len(designs))
    return [contrast_weights(item, [str(c) for c in design.columns])
            for item, design in zip(per_run, designs, strict=True)]


# ----------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------
def _parameters_section(parameters, designs, mask_img):
    rows = [(key, _format_value(value)) for key, value in parameters.items()]
    n_mask = int(np.count_nonzero(np.asanyarray(mask_img.dataobj)))
    rows += [
        ("number of runs", str(len(designs))),
        ("scans per run", ", ".join(str(len(d)) for d in designs)),
        ("regressors per run", ", ".join(str(d.shape[1]) for d in designs)),
        ("voxels in mask", f"{n_mask:,}"),
    ]
    body = "".join(f"<tr><th scope='row'>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table class='params'><tbody>{body}</tbody></table>"


def _design_section(designs, per_run, warnings_found):
    from nilearn.plotting import plot_design_matrix

    parts = []
    weight_pngs = {}
    for run, design in enumerate(designs, start=1):
        anchor = f"run-{run}"
        run_warnings = _design_warnings(design, run)
        for text in run_warnings:
            warnings_found.append((anchor, text))
        from matplotlib import pyplot as plt

        _, ax = plt.subplots(figsize=(min(2.0 + 0.35 * design.shape[1], 16.0), 6.0))
        plot_design_matrix(design, axes=ax)
        ax.set_title(f"Run {run}: {design.shape[0]} scans × {design.shape[1]} regressors",
                     fontsize=10)
        design_png = _figure_png(ax.figure)
        correlation = _correlation_png(design)
        contrast_figs = []
        for name, weights in per_run.items():
            # runs with the same columns and weights share one picture
            key = (name, tuple(map(str, design.columns)), weights[run - 1].shape,
                   weights[run - 1].tobytes())
            if key not in weight_pngs:
                weight_pngs[key] = _contrast_png(name, weights[run - 1], design, run)
            contrast_figs.append(_img(weight_pngs[key],
                                      f"Weights of contrast {name} on run {run}",
                                      "contrast-weights", data={"contrast": name}))
        parts.append(
            f"<section class='run' id='{anchor}' data-run='{run}'>"
            f"<h3>Run {run}</h3>{_warning_list(run_warnings)}"
            "<div class='row'>"
            + _img(design_png, f"Design matrix of run {run}", "design-matrix",
                   caption="Design matrix (columns rescaled)")
            + (_img(correlation, f"Correlation matrix of run {run}", "correlation-matrix",
                    caption="Correlations between regressors (drifts and constant left out)")
               if correlation else
               "<p class='note'>One regressor besides drifts and constant: "
               "no correlation matrix to show.</p>")
            + "</div>"
            + ("<h4>Contrast weights</h4><div class='row contrasts'>" + "".join(contrast_figs)
               + "</div>" if contrast_figs else "")
            + "</section>"
        )
    return "".join(parts)


def _mask_section(mask_img, bg):
    from matplotlib import pyplot as plt
    from nilearn.plotting import plot_roi

    n_voxels = int(np.count_nonzero(np.asanyarray(mask_img.dataobj)))
    if n_voxels == 0:
        return "<div class='warning'>The mask is empty.</div>"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        display = plot_roi(mask_img, bg_img=bg, display_mode="z", cmap="Set1",
                           colorbar=False)
    png = _figure_png(plt.gcf(), tight=False)
    display.close()
    zooms = mask_img.header.get_zooms()[:3]
    return (_img(png, "Analysis mask", "mask",
                 caption=f"{n_voxels:,} voxels of "
                         f"{' × '.join(f'{z:.3g}' for z in zooms)} mm"))


def _contrast_section(index, name, definition, weights, z_img, mask_img, bg, warnings_found, *,
                      threshold, alpha, cluster_threshold, height_control, two_sided,
                      min_distance, plot_type, cut_coords, display_mode, max_clusters):
    anchor = f"contrast-{index + 1}"
    result = threshold_map(
        z_img, mask_img, alpha=alpha, threshold=threshold, height_control=height_control,
        cluster_threshold=cluster_threshold, two_sided=two_sided,
    )
    table, n_clusters = cluster_table(result, min_distance=min_distance,
                                      max_clusters=max_clusters)
    _, stat_type = _split_stat_type(definition)
    if stat_type is None:  # nilearn's rule: F for a matrix of more than one row
        first = np.atleast_2d(weights[0])
        stat_type = "F" if first.shape[0] > 1 else "t"
    local = []
    if result.empty:
        local.append(f"Contrast {name}: no voxel survives {result.describe()}.")
    for text in local:
        warnings_found.append((anchor, text))
    details = [
        ("Height control", str(height_control)),
        ("alpha" if height_control is not None else "alpha (not used)", f"{alpha:g}"),
        ("Threshold (z)", "∞ (nothing survives)" if not np.isfinite(result.threshold)
         else f"{result.threshold:.3f}"),
        ("Cluster size threshold (voxels)", str(cluster_threshold)),
        ("Minimum distance between peaks (mm)", f"{min_distance:g}"),
        ("Two sided", "yes" if two_sided else "no"),
        ("Suprathreshold voxels", f"{result.n_voxels:,}"),
        ("Clusters", f"{n_clusters:,}"),
    ]
    details_html = "".join(f"<tr><th scope='row'>{_e(k)}</th><td>{_e(v)}</td></tr>"
                           for k, v in details)
    figure = ""
    if not result.empty:
        png = _stat_map_png(result, bg, plot_type=plot_type, cut_coords=cut_coords,
                            display_mode=display_mode, title=name)
        figure = _img(png, f"Thresholded z map of {name}", "stat-map",
                      data={"contrast": name},
                      caption=f"z map of {name}, {result.describe()}")
    return (
        f"<section class='contrast' id='{anchor}' data-contrast='{_e(name)}'>"
        f"<h3>{_e(name)}</h3>"
        f"<p class='definition'>Definition: <code>{_e(_format_definition(definition))}</code>"
        + (f" ({_e(stat_type)} test)" if stat_type else "") + "</p>"
        + _warning_list(local)
        + f"<table class='details'><tbody>{details_html}</tbody></table>"
        + figure
        + "<h4>Clusters</h4>"
        + _cluster_table_html(table, name, n_clusters)
        + "</section>"
    )


def _methods_section(methods_text):
    if not methods_text:
        return "<p class='note'>No methods text was provided.</p>"
    paragraphs = [p.strip() for p in str(methods_text).split("\n\n") if p.strip()]
    return "".join(f"<p>{_e(' '.join(p.split()))}</p>" for p in paragraphs)


def _versions_section(versions):
    versions = software_versions() if versions is None else versions
    body = "".join(f"<tr><th scope='row'>{_e(k)}</th><td>{_e(v)}</td></tr>"
                   for k, v in versions.items())
    return f"<table class='versions'><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def _as_volume(img):
    """A 3D NIfTI image, or None for surface / CIFTI data (which the plots cannot show)."""
    import nibabel as nib
    from nilearn.image import check_niimg_3d

    if isinstance(img, (str, Path)) and str(img).endswith((".gii", ".gii.gz", ".dscalar.nii",
                                                           ".dtseries.nii")):
        return None
    if isinstance(img, (str, Path)):
        img = nib.load(img)
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        return None
    try:
        return check_niimg_3d(img)
    except (TypeError, ValueError):
        return None


def _flat_values(img):
    """All values of a map of any kind (NIfTI, GIFTI, CIFTI, SurfaceImage), or None."""
    import nibabel as nib

    try:
        if isinstance(img, (str, Path)):
            img = nib.load(img)
        if isinstance(img, nib.GiftiImage):
            return np.concatenate([np.ravel(d.data) for d in img.darrays])
        if hasattr(img, "data") and hasattr(img.data, "parts"):  # nilearn SurfaceImage
            return np.concatenate([np.ravel(v) for v in img.data.parts.values()])
        return np.ravel(np.asanyarray(img.dataobj))
    except (TypeError, ValueError, AttributeError, OSError):
        return None


def _non_volume_sections(designs, contrasts, z_maps, mask_img, parameters, methods_text,
                         versions):
    weights = {}
    for name, definition in contrasts.items():
        try:
            weights[name] = contrast_weights_per_run(definition, designs)
        except ContrastError as exc:
            raise ContrastError(f"Contrast {name!r}: {exc}") from exc
    warnings_found = []
    design_html = _design_section(designs, weights, warnings_found)
    mask_values = _flat_values(mask_img)
    rows = [(key, _format_value(value)) for key, value in dict(parameters or {}).items()]
    rows += [("number of runs", str(len(designs))),
             ("scans per run", ", ".join(str(len(d)) for d in designs))]
    if mask_values is not None:
        rows.append(("elements in mask", f"{int(np.count_nonzero(mask_values)):,}"))
    params = "".join(f"<tr><th scope='row'>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    note = ("<p class='note'>The maps are surface or CIFTI data: slices, glass brains and "
            "cluster tables (volume tools) are not drawn.</p>")
    stats = []
    for name in z_maps:
        values = _flat_values(z_maps[name])
        extremes = ("" if values is None or not np.isfinite(values).any() else
                    f" Largest z: {np.nanmax(values):.3f}; smallest z: {np.nanmin(values):.3f}.")
        stats.append(f"<section class='contrast'><h3>{_e(name)}</h3><p>Definition: "
                     f"<code>{_e(_format_definition(contrasts[name]))}</code>.{_e(extremes)}"
                     "</p></section>")
    return [
        ("parameters", "Model", f"<table class='params'><tbody>{params}</tbody></table>"),
        ("design", "Design matrices", design_html),
        ("contrasts", "Statistical maps", note + "".join(stats)),
        ("methods", "Methods", _methods_section(methods_text)),
        ("versions", "Software versions", _versions_section(versions)),
    ], warnings_found


def _use_agg():
    """Draw off-screen: choose Agg unless pyplot is already in use (e.g. a notebook)."""
    if "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def _figure_png(figure, dpi=100, tight=True) -> str:
    """Base64 PNG of a figure (no metadata, so identical inputs give identical bytes).

    ``tight`` crops to the drawn content, which costs a second drawing; nilearn's slicer
    figures (stat maps, mask) already fill their canvas and skip it.
    """
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # tight-layout notes
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight" if tight else None,
                       metadata={"Software": None})
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _contrast_png(name, weights, design, run):
    from nilearn.plotting import plot_contrast_matrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            ax = plot_contrast_matrix(weights, design, colorbar=True)
        except (ValueError, KeyError) as exc:
            raise ContrastError(
                f"Contrast {name!r} cannot be drawn on the design of run {run} "
                f"(columns {list(design.columns)}): {exc}"
            ) from exc
    ax.set_xlabel(name)
    ax.figure.set_figheight(2)
    return _figure_png(ax.figure)


def _correlation_png(design):
    from nilearn.plotting import plot_design_matrix_correlation

    kept = [c for c in design.columns if not _is_nuisance(c)]
    if len(kept) < 2:
        return None
    side = min(2.5 + 0.45 * len(kept), 11.0)
    ax = plot_design_matrix_correlation(design, figure=(side + 1.0, side))
    figure = ax.figure if hasattr(ax, "figure") else ax.axes.figure
    return _figure_png(figure)


def _stat_map_png(result, bg, *, plot_type, cut_coords, display_mode, title):
    """nilearn's report figure: diverging map when two-sided, Reds/Blues otherwise."""
    from matplotlib import pyplot as plt
    from nilearn.plotting import plot_glass_brain, plot_stat_map

    data = np.nan_to_num(np.asanyarray(result.thresholded_img.dataobj, dtype=float))
    cmap, symmetric, vmin, vmax = "RdBu_r", True, None, None
    if not result.two_sided:
        symmetric, vmin, vmax = False, float(data.min()), float(data.max())
        if vmin >= 0:
            vmin, cmap = 0.0, "Reds"
        elif vmax <= 0:
            vmax, cmap = 0.0, "Blues_r"
    # One row of cuts reads best wide and low; ortho and glass views need more height.
    figsize = (14.0, 3.0) if display_mode in ("x", "y", "z") else (14.0, 4.0)
    if display_mode == "ortho":
        figsize = (10.0, 3.6)
    figure = plt.figure(figsize=figsize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if plot_type == "slice":
            display = plot_stat_map(
                result.thresholded_img, figure=figure, bg_img=bg, cut_coords=cut_coords,
                display_mode=display_mode, cmap=cmap, symmetric_cbar=symmetric,
                vmin=vmin, vmax=vmax, draw_cross=False, threshold=abs(result.threshold),
                title=title,
            )
        else:
            display = plot_glass_brain(
                result.thresholded_img, figure=figure, display_mode=display_mode, plot_abs=False,
                symmetric_cbar=symmetric, cmap=cmap, vmin=vmin, vmax=vmax,
                threshold=abs(result.threshold), title=title,
            )
    png = _figure_png(figure, tight=False)
    display.close()
    return png


# ----------------------------------------------------------------------------------------
# Checks and warnings
# ----------------------------------------------------------------------------------------
def _check_designs(design_matrices):
    if isinstance(design_matrices, pd.DataFrame):
        design_matrices = [design_matrices]
    designs = list(design_matrices or [])
    if not designs:
        raise ParameterError("design_matrices is empty: the report needs one per run.")
    for run, design in enumerate(designs, start=1):
        if not isinstance(design, pd.DataFrame):
            raise ParameterError(
                f"Design matrix of run {run} is a {type(design).__name__}; expected a "
                "pandas DataFrame with named columns."
            )
    return designs


def _check_dims(report_dims):
    try:
        width, height = (int(v) for v in report_dims)
    except (TypeError, ValueError) as exc:
        raise ParameterError(
            f"report_dims must be (width, height) in pixels; got {report_dims!r}.") from exc
    if width <= 0 or height <= 0:
        raise ParameterError(f"report_dims must be positive; got {report_dims!r}.")
    return width, height


def _design_warnings(design, run):
    """Rank deficiency and highly correlated regressors of one run."""
    found = []
    values = design.to_numpy(dtype=float)
    rank = int(np.linalg.matrix_rank(values))
    if rank < values.shape[1]:
        found.append(
            f"Run {run}: the design matrix is rank deficient (rank {rank} for "
            f"{values.shape[1]} columns); some contrasts are not estimable."
        )
    varying = [c for c in design.columns if np.ptp(design[c].to_numpy(dtype=float)) > 0]
    if len(varying) > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.corrcoef(design[varying].to_numpy(dtype=float), rowvar=False)
        rows, cols = np.triu_indices(len(varying), k=1)
        for i, j in zip(rows, cols, strict=True):
            if abs(corr[i, j]) >= HIGH_CORRELATION:
                found.append(
                    f"Run {run}: regressors {varying[i]} and {varying[j]} are highly "
                    f"correlated (r = {corr[i, j]:.3f}); their separate effects are "
                    "poorly estimated."
                )
    return found


def _is_nuisance(column):
    return column == "constant" or str(column).startswith("drift")


# ----------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------
def _background(bg_img):
    if isinstance(bg_img, str) and bg_img == "MNI152TEMPLATE":
        from nilearn.plotting.image.utils import MNI152TEMPLATE

        return MNI152TEMPLATE
    if bg_img is None or bg_img is False or (isinstance(bg_img, str) and bg_img == ""):
        return None
    if isinstance(bg_img, (str, Path)):
        from nilearn.image import load_img

        return load_img(bg_img)
    return bg_img


def _name_contrasts(contrasts):
    """nilearn's accepted ``contrasts`` forms -> ordered dict name -> definition."""
    if contrasts is None:
        return {}
    if isinstance(contrasts, dict):
        return dict(contrasts)
    if isinstance(contrasts, (str, np.ndarray)):
        contrasts = [contrasts]
    named = {}
    for i, definition in enumerate(contrasts):
        name = definition if isinstance(definition, str) else f"contrast_{i}"
        named[name] = definition
    return named


def _split_stat_type(definition):
    if isinstance(definition, dict):
        return definition.get("def"), definition.get("stat_type")
    return definition, None


def _format_definition(definition):
    """Text of a definition, the same whether weights came as lists, tuples or arrays."""
    definition, _ = _split_stat_type(definition)
    if isinstance(definition, str):
        return definition
    try:
        return json.dumps(np.asarray(definition, dtype=float).tolist())
    except (TypeError, ValueError):  # one definition per run, of different kinds
        return "; ".join(f"run {run}: {_format_definition(item)}"
                         for run, item in enumerate(definition, start=1))


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _format_value(value):
    value = _jsonable(value)
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value)


def _cluster_table_html(table, name, n_clusters):
    if table.empty:
        return ("<p class='note cluster-table-empty'>No cluster: nothing survives the "
                "threshold.</p>")
    head = "".join(f"<th scope='col'>{_e(c)}</th>" for c in table.columns)
    rows = []
    for _, row in table.iterrows():
        cells = []
        for column in table.columns:
            value = row[column]
            if column in ("X", "Y", "Z"):
                text = f"{float(value):.1f}"
            elif column == "Peak Stat":
                text = f"{float(value):.3f}"
            elif column.startswith("Cluster Size"):
                text = "" if value in ("", None) or pd.isna(value) else f"{float(value):g}"
            elif isinstance(value, (int, float, np.number)) and float(value).is_integer():
                text = str(int(value))  # nilearn's IDs turn float when a column is numeric
            else:
                text = str(value)
            cells.append(f"<td>{_e(text)}</td>")
        sub = " class='subpeak'" if str(row["Cluster ID"])[-1:].isalpha() else ""
        rows.append(f"<tr{sub}>{''.join(cells)}</tr>")
    n_shown = int(sum(not str(cid)[-1:].isalpha() for cid in table["Cluster ID"]))
    shown = ("" if n_shown == n_clusters else
             f"<p class='note'>The {n_shown} clusters with the highest peaks of "
             f"{n_clusters:,} are listed.</p>")
    return (f"{shown}<div class='table-wrap'><table class='cluster-table' "
            f"data-contrast='{_e(name)}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></div>"
            "<p class='note'>Coordinates are world (scanner or template) millimetres of the "
            "image affine; sub-peaks (IDs with letters) are at least the minimum distance "
            "apart.</p>")


def _img(png, alt, css_class, *, caption=None, data=None):
    attrs = "".join(f" data-{k}='{_e(v)}'" for k, v in (data or {}).items())
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return (f"<figure class='{css_class}'{attrs}><img alt='{_e(alt)}' "
            f"src='data:image/png;base64,{png}'>{cap}</figure>")


def _warning_list(texts):
    if not texts:
        return ""
    return "<div class='warning'>" + "".join(f"<p>⚠ {_e(t)}</p>" for t in texts) + "</div>"


def _e(text):
    return html.escape(str(text), quote=True)


_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
margin:0;color:#1d1d1f;background:#f4f5f7;line-height:1.45}
header{background:#243447;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:1.6em}header p{margin:4px 0 0;opacity:.8}
nav{background:#fff;border-bottom:1px solid #d8dbe0;padding:8px 28px;position:sticky;top:0;
z-index:2}
nav a{margin-right:18px;color:#1f5fa8;text-decoration:none;font-weight:600}
main{margin:0 auto;padding:12px 28px 40px}
section.top{background:#fff;border:1px solid #d8dbe0;border-radius:6px;padding:6px 20px 18px;
margin:18px 0}
h2{border-bottom:2px solid #243447;padding-bottom:4px}
h3{margin-bottom:6px}
.row{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:8px 0;background:#fff}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#555;margin-top:4px}
figure.design-matrix img{max-height:560px;width:auto}
figure.correlation-matrix img{max-height:420px;width:auto}
figure.contrast-weights img{max-height:180px;width:auto}
figure.stat-map img{width:100%;max-width:1400px}
.table-wrap{max-height:520px;overflow:auto;display:inline-block;border:1px solid #d8dbe0}
.table-wrap thead th{position:sticky;top:0}
table.details{margin:6px 0}
table{border-collapse:collapse;font-size:.92em;background:#fff}
th,td{border:1px solid #d8dbe0;padding:4px 10px;text-align:left}
thead th{background:#e9edf2}
table.cluster-table td{text-align:right;font-variant-numeric:tabular-nums}
table.cluster-table tr.subpeak td{color:#555}
.warning{background:#fff4d6;border:1px solid #e0b44a;border-left:6px solid #d99a00;
border-radius:4px;padding:6px 14px;margin:10px 0}
.warning p{margin:4px 0}
.note{color:#555;font-size:.9em}
code{background:#eef1f4;padding:1px 4px;border-radius:3px}
"""


def _page(title, sections, warnings_found, *, width, height):
    nav = "".join(f"<a href='#{anchor}'>{_e(label)}</a>" for anchor, label, _ in sections)
    summary = ""
    if warnings_found:
        items = "".join(f"<p>⚠ <a href='#{a}'>{_e(t)}</a></p>" for a, t in warnings_found)
        summary = (f"<div class='warning' id='warnings'><strong>{len(warnings_found)} "
                   f"warning(s) worth a look</strong>{items}</div>")
    body = "".join(
        f"<section class='top' id='{anchor}'><h2>{_e(label)}</h2>{content}</section>"
        for anchor, label, content in sections
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        # Nothing may load from elsewhere: only inline styles and data: images.
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}main{{max-width:{width}px}}</style></head>"
        f"<body data-report-width='{width}' data-report-height='{height}'>"
        f"<header><h1>{_e(title)}</h1><p>First-level GLM report · glmflow</p></header>"
        f"<nav>{nav}</nav><main>{summary}{body}</main></body></html>\n"
    )


def _model_parameters(model):
    """A nilearn-style model's parameters, through :func:`model_parameters`."""
    params = model.get_params() if hasattr(model, "get_params") else {}
    return model_parameters(**{k: v for k, v in params.items() if k in REPORT_PARAMETERS})
