"""Surface runs (nilearn ``SurfaceImage``) in :class:`glmflow.model.FirstLevelModel`.

The facade's volume path is kept; for ``SurfaceImage`` runs these helpers replace its
four volume-specific steps: checking the runs, writing them (and the mask and mesh) to the
input folder as GIFTI, building ``init_surface_first_level_wf``, and reading the outputs
back into nilearn's fitted attributes with a ``SurfaceMasker`` (so that
``compute_contrast`` returns ``SurfaceImage`` maps, as nilearn does).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn.utils.validation import check_is_fitted

from glmflow.core.errors import ImageError, MaskError, ParameterError


def is_surface_input(run_imgs):
    """True when ``run_imgs`` is a ``SurfaceImage`` or a list starting with one."""
    from nilearn.surface import SurfaceImage

    if isinstance(run_imgs, SurfaceImage):
        return True
    return (isinstance(run_imgs, (list, tuple)) and len(run_imgs) > 0
            and isinstance(run_imgs[0], SurfaceImage))


def is_surface_model(estimator):
    """True for a facade fitted on surface runs (its masker is a ``SurfaceMasker``)."""
    from nilearn.maskers import SurfaceMasker

    return isinstance(getattr(estimator, "masker_", None), SurfaceMasker)


def check_surface_runs(run_imgs):
    """``[(SurfaceImage, None)]``: 2D surface runs on one mesh (the facade's run format)."""
    from nilearn.surface import SurfaceImage

    if isinstance(run_imgs, SurfaceImage):
        run_imgs = [run_imgs]
    runs = []
    for index, img in enumerate(run_imgs):
        if not isinstance(img, SurfaceImage):
            raise ImageError(
                f"run_imgs[{index}] is a {type(img).__name__}; when the first run is a "
                "SurfaceImage all runs must be SurfaceImage objects.")
        if len(img.shape) != 2:
            raise ImageError(
                f"run_imgs[{index}] has shape {img.shape}: a surface run must be 2D "
                "(n_vertices, n_scans).")
        parts = {hemi: part.n_vertices for hemi, part in img.mesh.parts.items()}
        first = {hemi: part.n_vertices for hemi, part in run_imgs[0].mesh.parts.items()}
        if parts != first:
            raise ImageError(
                f"run_imgs[{index}] is on a mesh with {parts} vertices; run_imgs[0] on "
                f"{first}. All runs must share one mesh.")
        runs.append((img, None))
    return runs


def n_scans(runs):
    return [int(img.shape[1]) for img, _ in runs]


def _digest(img):
    digest = hashlib.sha1()
    for hemi, data in img.data.parts.items():
        data = np.ascontiguousarray(data)
        digest.update(f"{hemi}{data.shape}{data.dtype.str}".encode())
        digest.update(data.tobytes())
    return digest.hexdigest()[:16]


def _stem(folder, stem, img, hashed):
    return Path(folder) / (f"{stem}_{_digest(img)}" if hashed else stem)


def given_masker(estimator):
    """The fitted ``SurfaceMasker`` given as ``mask_img``, or None."""
    from nilearn.maskers import SurfaceMasker

    mask = estimator.mask_img
    if not isinstance(mask, SurfaceMasker):
        return None
    try:
        check_is_fitted(mask)
    except Exception as exc:
        raise MaskError(
            "The SurfaceMasker given as mask_img must be fitted; call its fit() first.") from exc
    return mask


def smoothing(estimator):
    """The smoothing FWHM: the given masker's, else the model's."""
    masker = given_masker(estimator)
    return masker.smoothing_fwhm if masker is not None else estimator.smoothing_fwhm


def write_inputs(estimator, folder, runs, *, hashed):
    """Write the runs, the mask and (for smoothing) the mesh as GIFTI files.

    Returns
    -------
    bold_files : list of [left, right]
    mask_files : [left, right] or None (the workflow then computes nilearn's default mask)
    mesh_files : [left, right] or None
    """
    from nilearn.surface import SurfaceImage

    from glmflow.core.surface import save_mesh, save_surface_image

    folder = Path(folder)
    bold_files = [save_surface_image(img, _stem(folder, f"run-{i + 1}_bold", img, hashed))
                  for i, (img, _) in enumerate(runs)]
    first = runs[0][0]
    mask = estimator.mask_img
    masker = given_masker(estimator)
    if masker is not None:
        mask = masker.mask_img_
    if mask is None:
        mask_files = None
    else:
        if mask is False:
            mask = SurfaceImage(mesh=first.mesh, data={
                hemi: np.ones(part.n_vertices, np.float32)
                for hemi, part in first.mesh.parts.items()})
        if not isinstance(mask, SurfaceImage):
            raise MaskError(
                "With surface runs, mask_img must be None, False, a SurfaceImage or a fitted "
                f"SurfaceMasker; got {type(mask).__name__}.")
        mask_files = save_surface_image(mask, _stem(folder, "mask", mask, hashed))
    mesh_files = None
    if smoothing(estimator):
        mesh_files = save_mesh(first.mesh, folder / "mesh")
    return bold_files, mask_files, mesh_files


def init_workflow(estimator, params, mesh_files):
    """``init_surface_first_level_wf`` set up as the facade's volume workflow is."""
    from glmflow.workflows.surface import init_surface_first_level_wf

    fwhm = smoothing(estimator)
    if params.get("target_affine") is not None or params.get("target_shape") is not None:
        raise ParameterError("target_affine/target_shape do not apply to surface runs.")
    workflow = init_surface_first_level_wf(
        t_r=float(estimator.t_r) if estimator.t_r is not None else 1.0,
        contrasts={"_unused": [1.0]},
        mesh=mesh_files,
        smoothing_fwhm=None if fwhm is None else float(fwhm),
        signal_scaling=params["signal_scaling"],
        standardize=estimator.standardize,
        noise_model=estimator.noise_model,
        minimize_memory=bool(estimator.minimize_memory),
        random_state=None if estimator.random_state is None else int(estimator.random_state),
    )
    workflow.remove_nodes([workflow.get_node("contrast")])
    estimator.methods_text = getattr(workflow, "__desc__", None)
    return workflow


def set_inputs(workflow, bold_files, design_files, mask_files, sample_mask_files):
    node = workflow.get_node("inputnode")
    node.inputs.bold_files = bold_files
    node.inputs.design_files = design_files
    if mask_files is not None:
        node.inputs.mask_files = mask_files
    if sample_mask_files is not None:
        node.inputs.sample_mask_files = sample_mask_files


def load_outputs(estimator, outputs, designs, masks, runs):
    """Read the surface workflow's outputs into nilearn's fitted attributes."""
    from nilearn.maskers import SurfaceMasker
    from nilearn.surface import SurfaceImage

    from glmflow.core.glm import load_model
    from glmflow.core.surface import load_mask, read_maps, unmask
    from glmflow.model import _voxel_labels

    geometry = load_mask(outputs["mask_files"])
    mesh = runs[0][0].mesh
    estimator.model_files_ = list(outputs["model_files"])
    estimator.models_ = [load_model(path) for path in estimator.model_files_]
    estimator.design_matrices_ = [
        design if masks is None else design.iloc[masks[index], :]
        for index, design in enumerate(designs)]
    mask_img = SurfaceImage(mesh=mesh, data=unmask(geometry.mask[geometry.mask], geometry))
    masker = SurfaceMasker(mask_img=mask_img, smoothing_fwhm=smoothing(estimator),
                           t_r=estimator.t_r, memory_level=estimator.memory_level)
    masker.standardize = estimator.standardize_
    estimator.masker_ = masker.fit()
    estimator.n_elements_ = int(estimator.masker_.n_elements_)
    estimator.labels_ = [_voxel_labels(model) for model in estimator.models_]
    estimator._results = None
    if not estimator.minimize_memory:
        estimator._residuals = [read_maps(p, geometry) for p in outputs["residuals_files"]]
        estimator._predicted = [read_maps(p, geometry) for p in outputs["predicted_files"]]
        estimator._r_square = [read_maps(p, geometry) for p in outputs["r_square_files"]]
