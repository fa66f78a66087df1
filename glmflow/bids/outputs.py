"""Write a run-level analysis as BIDS derivatives (atomically), with its sidecars.

Names follow nilearn's ``save_glm_to_bids`` where it has one, prefixed with the run's
entities and space::

    sub-01_task-auditory_space-MNI152NLin2009cAsym_contrast-listening_stat-z_statmap.nii.gz
    ..._contrast-listening_stat-{effect,variance,t|F,z,p}_statmap.nii.gz (+ .json)
    ..._contrast-listening_clusters.tsv (+ .json)
    ..._design.tsv (+ .json), ..._mask.nii.gz, ..._stat-rsquared_statmap.nii.gz,
    ..._stat-errorts_statmap.nii.gz, ..._report.html

Surface runs keep the format of their maps: a GIFTI pair gives two files per map,
``..._hemi-L_space-fsaverage5_contrast-listening_stat-z_statmap.func.gii`` and its ``hemi-R``
counterpart (each with its JSON sidecar); CIFTI gives ``.dscalar.nii`` maps (residuals as
``.dtseries.nii``), e.g. ``..._space-fsLR_den-91k_contrast-listening_stat-z_statmap.dscalar.nii``.
The design, its sidecar and the report carry no ``hemi-`` entity; there are no cluster tables
(a volume tool).

Unlike nilearn's, the R-square and residual maps are written under the default
``minimize_memory=True`` too, and every file goes to a temporary name first and is renamed
into place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from glmflow import __version__
from glmflow.bids.layout import DERIVATIVE_ENTITIES, build_name, parse_bids_filename
from glmflow.core.errors import InputFileError
from glmflow.core.io import atomic_path, bids_label, save_json, save_tsv

STAT_FIELDS = (
    ("effect", "effect_file"),
    ("variance", "variance_file"),
    (None, "stat_file"),  # t or F
    ("z", "z_file"),
    ("p", "p_file"),
)


def run_entities_from_bold(bold_file) -> dict:
    """Entities used to name a run's outputs: the raw ones plus ``space``/``res``/``den``.

    ``bold_file`` may be a surface run (a ``[left, right]`` GIFTI pair: ``hemi`` is dropped).
    """
    if not isinstance(bold_file, (str, Path)):
        bold_file = list(bold_file)[0]
    try:
        entities = parse_bids_filename(bold_file).entities
    except InputFileError as exc:
        raise InputFileError(
            f"Cannot name the outputs of {bold_file}: its name is not a BIDS name. Connect "
            "inputnode.entities (one dict per run, e.g. {'sub': '01', 'task': 'x'})."
        ) from exc
    keep = {k: v for k, v in entities.items() if k not in DERIVATIVE_ENTITIES}
    for key in ("space", "res", "den"):
        if key in entities:
            keep[key] = entities[key]
    return keep


def subject_folder(output_dir, entities) -> Path:
    folder = Path(output_dir) / f"sub-{entities['sub']}"
    if entities.get("ses"):
        folder = folder / f"ses-{entities['ses']}"
    return folder / "func"


def software_versions() -> dict:
    import nibabel
    import nilearn
    import numpy
    import scipy

    return {"glmflow": __version__, "nilearn": nilearn.__version__,
            "nibabel": nibabel.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__}


def write_dataset_description(output_dir, *, source_datasets=(), command=None,
                              overwrite=True):
    """``dataset_description.json`` with ``GeneratedBy`` and ``SourceDatasets``."""
    generated = {"Name": "glmflow", "Version": __version__,
                 "Description": "First-level GLM (nilearn FirstLevelModel semantics)"}
    if command:
        generated["CommandLine"] = command
    description = {
        "Name": "glmflow first-level statistics",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": Path(p).resolve().as_uri()} for p in source_datasets],
    }
    path = Path(output_dir) / "dataset_description.json"
    return save_json(description, path, overwrite=overwrite)


#: Extensions of the maps the workflows write, longest first.
MAP_EXTENSIONS = (".dscalar.nii", ".dtseries.nii", ".func.gii", ".shape.gii", ".nii.gz",
                  ".nii", ".gii")


def map_extension(path) -> str:
    """``.nii.gz`` for NIfTI (volume outputs are always written compressed), else the
    file's own multi-part extension (``.func.gii``, ``.dscalar.nii``, ``.dtseries.nii``)."""
    name = Path(path).name
    extension = next((ext for ext in MAP_EXTENSIONS if name.endswith(ext)), None)
    if extension is None:
        raise InputFileError(f"{path}: not a NIfTI, GIFTI or CIFTI file name.")
    return ".nii.gz" if extension in (".nii", ".nii.gz") else extension


def is_volume_map(files) -> bool:
    files = [files] if isinstance(files, (str, Path)) else list(files)
    return len(files) == 1 and map_extension(files[0]) == ".nii.gz"


def map_targets(source, name, extra, suffix):
    """``(source, target)`` pairs of one map: a file, or a ``[left, right]`` GIFTI pair.

    ``name(entities, suffix, extension)`` builds a target path; a GIFTI pair gets
    ``hemi-L`` / ``hemi-R`` (from the source names when they say, else the order).
    """
    files = [source] if isinstance(source, (str, Path)) else list(source)
    if len(files) == 1:
        return [(str(files[0]), name(extra, suffix, map_extension(files[0])))]
    if len(files) != 2 or not all(map_extension(f).endswith(".gii") for f in files):
        raise InputFileError(
            f"A map is one file or a [left, right] GIFTI pair; got {[str(f) for f in files]}."
        )
    pairs = []
    for position, path in enumerate(files):
        label = Path(path).name
        hemi = ("L" if "hemi-L" in label else "R" if "hemi-R" in label
                else ("L", "R")[position])
        pairs.append((str(path), name({**extra, "hemi": hemi}, suffix, map_extension(path))))
    if pairs[0][1] == pairs[1][1]:
        raise InputFileError(f"Both files of {files} are the same hemisphere.")
    return pairs


def sidecar_path(target) -> Path:
    """``x_statmap.func.gii`` → ``x_statmap.json`` (whatever the multi-part extension)."""
    target = Path(target)
    return target.with_name(target.name.split(".")[0] + ".json")


def copy_file(source, target, *, overwrite=True):
    with atomic_path(target, overwrite=overwrite) as tmp:
        shutil.copyfile(source, tmp)
    return str(target)


def write_run(output_dir, entities: dict, *, design_file, mask_file, provenance: dict,
              contrasts: list, estimates: list, r_square_file=None, residuals_file=None,
              analysis: dict, sources: dict, clusters=True, overwrite=True) -> list[str]:
    """Write one run's outputs; return the paths written.

    Parameters
    ----------
    entities : dict
        From :func:`run_entities_from_bold`.
    design_file, mask_file : path
        The workflow's design TSV (with a ``frame_time`` column) and analysis mask (a
        ``[left, right]`` GIFTI pair on surfaces; the map files likewise).
    provenance : dict
        From :func:`glmflow.bids.run.prepare_run`.
    contrasts : list of dict
        The run's contrast definitions (``name``, ``conditions``, ``weights``, ``stat_type``,
        ``matrix``).
    estimates : list of dict
        One per contrast, same order: ``stat_type``, ``dof`` and the five map files
        (``effect_file``, ``variance_file``, ``stat_file``, ``z_file``, ``p_file``).
    analysis : dict
        Fit options recorded in every sidecar (noise model, smoothing, ...).
    sources : dict
        Input files (``bold``, ``mask``, ``events``, ``confounds``).
    """
    from glmflow.core.design import load_design

    folder = subject_folder(output_dir, entities)
    written = []
    design = load_design(design_file)
    common = {
        "Software": software_versions(),
        "Model": provenance["Model"],
        "RepetitionTime": provenance["RepetitionTime"],
        "SliceTimeRef": provenance["SliceTimeRef"],
        "SliceTimeRefSource": provenance["SliceTimeRefSource"],
        "HRF": provenance["HRF"],
        "DriftModel": provenance["DriftModel"],
        "DriftModelNote": provenance["DriftModelNote"],
        "Confounds": provenance["Confounds"],
        "VolumesExcluded": provenance["VolumesExcluded"],
        "NumberOfVolumes": provenance["NumberOfVolumes"],
        "Sources": {k: [str(p) for p in v] if isinstance(v, (list, tuple)) else str(v)
                    for k, v in sources.items() if v},
        **analysis,
    }

    def name(extra, suffix, extension):
        return folder / build_name({**entities, **extra}, suffix, extension)

    design_tsv = name({}, "design", ".tsv")
    written.append(save_tsv(design.reset_index(drop=True), design_tsv, overwrite=overwrite))
    written.append(save_json({
        **common,
        "FrameTimes": [float(t) for t in design.index],
        "Columns": list(design.columns),
        "EventVariables": provenance["EventVariables"],
    }, design_tsv.with_suffix(".json"), overwrite=overwrite))
    copies = map_targets(mask_file, name, {}, "mask")
    if r_square_file:
        copies += map_targets(r_square_file, name, {"stat": "rsquared"}, "statmap")
    if residuals_file:
        copies += map_targets(residuals_file, name, {"stat": "errorts"}, "statmap")
    written += [copy_file(source, target, overwrite=overwrite) for source, target in copies]

    for contrast, estimate in zip(contrasts, estimates, strict=True):
        label = bids_label(contrast["name"])
        definition = {
            "Name": contrast["name"],
            "ConditionList": contrast["conditions"],
            "Weights": contrast["weights"],
            "Test": estimate["stat_type"],
            "DesignColumns": list(design.columns),
            "ContrastMatrix": contrast["matrix"],
        }
        for stat, field in STAT_FIELDS:
            stat = stat or estimate["stat_type"]
            for source, target in map_targets(estimate[field], name,
                                              {"contrast": label, "stat": stat}, "statmap"):
                written.append(copy_file(source, target, overwrite=overwrite))
                written.append(save_json({
                    **common,
                    "Contrast": definition,
                    "StatisticType": stat,
                    "DegreesOfFreedom": estimate["dof"],
                }, sidecar_path(target), overwrite=overwrite))
        # cluster tables need a volume (nilearn's get_clusters_table)
        if clusters and is_volume_map(estimate["z_file"]):
            written += _write_clusters(name({"contrast": label}, "clusters", ".tsv"),
                                       estimate["z_file"], mask_file, overwrite=overwrite)
    return written


#: nilearn's report/save_glm_to_bids defaults for the cluster tables; the table keeps the
#: clusters with the highest peaks (its first rows are nilearn's, see core.thresholds).
CLUSTER_OPTIONS = {"height_control": "fpr", "alpha": 0.001, "cluster_threshold": 0,
                   "min_distance": 8.0, "two_sided": False, "max_clusters": 50}


def _write_clusters(tsv, z_file, mask_file, *, overwrite):
    from glmflow.core.thresholds import cluster_table, threshold_map

    result = threshold_map(
        z_file, mask_file, alpha=CLUSTER_OPTIONS["alpha"],
        height_control=CLUSTER_OPTIONS["height_control"],
        cluster_threshold=CLUSTER_OPTIONS["cluster_threshold"],
        two_sided=CLUSTER_OPTIONS["two_sided"],
    )
    table, n_clusters = cluster_table(result, min_distance=CLUSTER_OPTIONS["min_distance"],
                                      max_clusters=CLUSTER_OPTIONS["max_clusters"])
    meta = {
        "Height control": CLUSTER_OPTIONS["height_control"],
        "alpha": CLUSTER_OPTIONS["alpha"],
        "Threshold (computed)": result.threshold,
        "Cluster size threshold (voxels)": CLUSTER_OPTIONS["cluster_threshold"],
        "Minimum distance (mm)": CLUSTER_OPTIONS["min_distance"],
        "Number of clusters": n_clusters,
        "Clusters listed": min(n_clusters, CLUSTER_OPTIONS["max_clusters"]),
    }
    return [save_tsv(table, tsv, overwrite=overwrite),
            save_json(meta, tsv.with_suffix(".json"), overwrite=overwrite)]


def read_json(path):
    return json.loads(Path(path).read_text())
