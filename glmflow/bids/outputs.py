"""Write a run-level analysis as BIDS derivatives (atomically), with its sidecars.

Names follow nilearn's ``save_glm_to_bids`` where it has one, prefixed with the run's
entities and space::

    sub-01_task-auditory_space-MNI152NLin2009cAsym_contrast-listening_stat-z_statmap.nii.gz
    ..._contrast-listening_stat-{effect,variance,t|F,z,p}_statmap.nii.gz (+ .json)
    ..._contrast-listening_clusters.tsv (+ .json)
    ..._design.tsv (+ .json), ..._mask.nii.gz, ..._stat-rsquared_statmap.nii.gz,
    ..._stat-errorts_statmap.nii.gz, ..._report.html

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
    """Entities used to name a run's outputs: the raw ones plus ``space``/``res``."""
    try:
        entities = parse_bids_filename(bold_file).entities
    except InputFileError as exc:
        raise InputFileError(
            f"Cannot name the outputs of {bold_file}: its name is not a BIDS name. Connect "
            "inputnode.entities (one dict per run, e.g. {'sub': '01', 'task': 'x'})."
        ) from exc
    keep = {k: v for k, v in entities.items() if k not in DERIVATIVE_ENTITIES}
    for key in ("space", "res"):
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
        The workflow's design TSV (with a ``frame_time`` column) and analysis mask.
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
        "Sources": {k: str(v) for k, v in sources.items() if v},
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
    written.append(copy_file(mask_file, name({}, "mask", ".nii.gz"), overwrite=overwrite))
    if r_square_file:
        written.append(copy_file(r_square_file, name({"stat": "rsquared"}, "statmap", ".nii.gz"),
                                 overwrite=overwrite))
    if residuals_file:
        written.append(copy_file(residuals_file, name({"stat": "errorts"}, "statmap", ".nii.gz"),
                                 overwrite=overwrite))

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
            target = name({"contrast": label, "stat": stat}, "statmap", ".nii.gz")
            written.append(copy_file(estimate[field], target, overwrite=overwrite))
            written.append(save_json({
                **common,
                "Contrast": definition,
                "StatisticType": stat,
                "DegreesOfFreedom": estimate["dof"],
            }, folder / target.name.replace(".nii.gz", ".json"), overwrite=overwrite))
        if clusters:
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
