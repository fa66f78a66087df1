"""Surface (GIFTI pairs, ``SurfaceImage``) and CIFTI-2 runs: masking, smoothing, map writing.

A surface run is a pair of GIFTI time series (left, right hemisphere), a nilearn
``SurfaceImage`` or a CIFTI-2 dense time series (``.dtseries.nii``). Each is read through a
vertex (or grayordinate) mask to a raw ``(n_scans, n_elements)`` array whose values, dtype
(float64) and layout (left vertices then right, each in vertex order) are exactly those of
nilearn's ``SurfaceMasker.transform`` before cleaning, so the GLM numbers equal nilearn's.

Smoothing is nilearn's: non-finite values set to zero, then ``n`` iterations of averaging
each vertex (weight 1/2) with the mean of its mesh neighbours (weight 1/2), with ``n``
mapped from the FWHM and the mesh's mean vertex area by FreeSurfer's rule
(``nilearn.image.smooth_img`` on a ``SurfaceImage``). It acts on whole hemispheres, before
masking, as nilearn's masker does.

Maps go back out as one GIFTI per hemisphere (``.func.gii``, float64), a ``SurfaceImage``
or a CIFTI-2 dense scalar file (``.dscalar.nii``) with the input's brain-model axis, so
cortical vertices and subcortical voxels keep their structure labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from glmflow.core.errors import ImageError, InputFileError, MaskError, ParameterError

#: Hemisphere part names (nilearn's), in data layout order.
HEMIS = ("left", "right")
#: GIFTI ``AnatomicalStructurePrimary`` and BIDS ``hemi-`` label of each part.
GIFTI_STRUCTURE = {"left": "CortexLeft", "right": "CortexRight"}
HEMI_LABEL = {"left": "L", "right": "R"}
CIFTI_SUFFIXES = (".dtseries.nii", ".dscalar.nii")
#: Scans smoothed at once (the smoothing acts on each scan separately; chunks bound memory).
SMOOTH_CHUNK = 64

#: nilearn output_type -> GIFTI intent of the written map.
INTENTS = {
    "effect_size": "NIFTI_INTENT_ESTIMATE",
    "effect_variance": "NIFTI_INTENT_NONE",
    "z_score": "NIFTI_INTENT_ZSCORE",
    "p_value": "NIFTI_INTENT_PVAL",
    "t": "NIFTI_INTENT_TTEST",
    "F": "NIFTI_INTENT_FTEST",
}


@dataclass
class SurfaceGeometry:
    """Where the in-mask elements of a surface or CIFTI analysis live.

    Attributes
    ----------
    kind : {"surface", "cifti"}
    parts : dict
        Part name -> number of elements, in layout order: ``{"left": n, "right": n}`` for
        surfaces, ``{"grayordinates": n}`` for CIFTI.
    mask : ndarray of bool, shape (sum of parts,)
        In-mask elements, parts concatenated.
    brain_models : nibabel.cifti2.BrainModelAxis or None
        The CIFTI brain-model axis (cortex vertices and subcortical voxels).
    """

    kind: str
    parts: dict
    mask: np.ndarray
    brain_models: object = None

    @property
    def n_elements(self):
        return int(self.mask.sum())

    def part_masks(self):
        """Yield ``(part, part_mask)`` in layout order."""
        start = 0
        for part, size in self.parts.items():
            yield part, self.mask[start:start + size]
            start += size

    def to_info(self):
        """JSON-serialisable description (the mask itself is stored separately)."""
        info = {"parts": dict(self.parts)}
        if self.brain_models is not None:
            info["brain_models"] = brain_models_to_json(self.brain_models)
        return info

    @classmethod
    def from_info(cls, kind, info, mask):
        """Inverse of :meth:`to_info`."""
        axis = info.get("brain_models")
        return cls(
            kind=kind,
            parts=dict(info["parts"]),
            mask=np.asarray(mask, bool),
            brain_models=None if axis is None else brain_models_from_json(axis),
        )

    @classmethod
    def from_model(cls, model):
        """The geometry a fitted :class:`glmflow.core.glm.RunModel` was fitted on."""
        kind = getattr(model, "geometry", "volume")
        if kind not in ("surface", "cifti"):
            raise ParameterError(
                f"This model was fitted on {kind} data; surface/CIFTI output needs a model "
                "fitted on surface or CIFTI runs."
            )
        return cls.from_info(kind, model.geometry_info, model.mask)


# --------------------------------------------------------------------------- input kinds


def is_cifti(path):
    """True for a CIFTI-2 dense file name (``.dtseries.nii`` / ``.dscalar.nii``)."""
    return isinstance(path, (str, Path)) and str(path).endswith(CIFTI_SUFFIXES)


def is_surface_image(obj):
    from nilearn.surface import SurfaceImage

    return isinstance(obj, SurfaceImage)


def run_kind(run):
    """``"surface"`` (GIFTI pair or SurfaceImage) or ``"cifti"``; else :class:`ImageError`."""
    if is_surface_image(run):
        return "surface"
    if isinstance(run, (list, tuple)) and len(run) == 1:
        run = run[0]
    if is_cifti(run):
        return "cifti"
    if isinstance(run, dict) or (isinstance(run, (list, tuple)) and len(run) == 2):
        return "surface"
    raise ImageError(
        "A surface run must be a nilearn SurfaceImage, a [left, right] pair of GIFTI files "
        f"or a CIFTI-2 .dtseries.nii file; got {_describe(run)}."
    )


def _describe(obj):
    if isinstance(obj, (str, Path)):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(_describe(o) for o in obj) + "]"
    return type(obj).__name__


def _gifti_pair(run):
    """``{"left": path, "right": path}`` from a pair, a dict or a list of two paths."""
    if isinstance(run, dict):
        pair = {hemi: run.get(hemi) for hemi in HEMIS}
    else:
        pair = dict(zip(HEMIS, run, strict=True))
    for hemi, path in pair.items():
        if path is None or not Path(path).is_file():
            raise InputFileError(f"The {hemi}-hemisphere GIFTI file {path} does not exist.")
    for hemi, other in (("left", "hemi-R"), ("right", "hemi-L")):
        if other in Path(pair[hemi]).name:
            raise ImageError(
                f"The {hemi}-hemisphere file {pair[hemi]} is named {other}: give the runs as "
                "[left, right] pairs."
            )
    return pair


def _load_gifti_data(path):
    """GIFTI data as nilearn loads it (``load_surf_data``), always 2D (n_vertices, n)."""
    from nilearn.surface import load_surf_data

    try:
        data = load_surf_data(str(path))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InputFileError(f"{path} is not a readable GIFTI data file: {exc}") from exc
    return data[:, None] if data.ndim == 1 else data


def _load_cifti(path):
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"The CIFTI file {path} does not exist.")
    try:
        img = nib.load(path)
        axis = img.header.get_axis(1)
    except Exception as exc:
        raise InputFileError(f"{path} is not a readable CIFTI-2 file: {exc}") from exc
    if not isinstance(axis, nib.cifti2.BrainModelAxis):
        raise ImageError(
            f"{path}: the second CIFTI axis is a {type(axis).__name__}; a dense file "
            "(.dtseries.nii) with a brain-model axis was expected."
        )
    return img, axis


def n_scans(run):
    """Number of scans (time points) of a surface or CIFTI run."""
    kind = run_kind(run)
    if is_surface_image(run):
        return 1 if len(run.shape) == 1 else int(run.shape[1])
    if kind == "cifti":
        img, _ = _load_cifti(run[0] if isinstance(run, (list, tuple)) else run)
        return int(img.shape[0])
    counts = {hemi: _load_gifti_data(p).shape[1] for hemi, p in _gifti_pair(run).items()}
    if counts["left"] != counts["right"]:
        raise ImageError(f"The hemispheres of {_describe(run)} have {counts} scans; they differ.")
    return counts["left"]


def load_run_parts(run):
    """Read a run: ``(kind, {part: (n_elements, n_scans) array}, brain_models, mesh)``.

    Arrays keep the stored dtype (as nilearn's ``SurfaceImage`` does); ``mesh`` is the
    ``SurfaceImage``'s mesh (else None); ``brain_models`` the CIFTI axis (else None).
    """
    kind = run_kind(run)
    if is_surface_image(run):
        parts = {hemi: (d[:, None] if d.ndim == 1 else d) for hemi, d in run.data.parts.items()}
        return kind, parts, None, run.mesh
    if kind == "cifti":
        img, axis = _load_cifti(run[0] if isinstance(run, (list, tuple)) else run)
        return kind, {"grayordinates": np.asarray(img.dataobj).T}, axis, None
    parts = {hemi: _load_gifti_data(path) for hemi, path in _gifti_pair(run).items()}
    if parts["left"].shape[1] != parts["right"].shape[1]:
        raise ImageError(
            f"The hemispheres of {_describe(run)} have {parts['left'].shape[1]} and "
            f"{parts['right'].shape[1]} scans; they must match."
        )
    return kind, parts, None, None


# --------------------------------------------------------------------------- meshes


def resolve_mesh(mesh, *, mesh_type="pial"):
    """A nilearn ``PolyMesh`` from a template name, a [left, right] pair of files or a mesh.

    Parameters
    ----------
    mesh : str, list, dict, PolyMesh or None
        ``"fsaverage5"`` (shipped with nilearn, no download), another nilearn fsaverage
        name, a pair of GIFTI surface files, or a ``PolyMesh``.
    mesh_type : str, default="pial"
        Which fsaverage surface (``pial``, ``white_matter``, ``inflated``, ``sphere``).
    """
    from nilearn.surface import PolyMesh

    if mesh is None or isinstance(mesh, PolyMesh):
        return mesh
    if isinstance(mesh, str) and not Path(mesh).exists():
        from nilearn.datasets import load_fsaverage

        try:
            return load_fsaverage(mesh)[mesh_type]
        except (KeyError, ValueError) as exc:
            raise ParameterError(
                f"mesh {mesh!r} / mesh_type {mesh_type!r}: not a nilearn fsaverage mesh "
                f"(e.g. 'fsaverage5' with mesh_type 'pial'): {exc}"
            ) from exc
    pair = dict(mesh) if isinstance(mesh, dict) else dict(zip(HEMIS, mesh, strict=True))
    for hemi, path in pair.items():
        if not Path(path).is_file():
            raise InputFileError(f"The {hemi}-hemisphere mesh file {path} does not exist.")
    return PolyMesh(**pair)


def fwhm_to_iterations(fwhm, mesh_part):
    """nilearn's (FreeSurfer's) FWHM -> number of neighbour-averaging iterations."""
    if not fwhm:
        return 0
    std_kernel = fwhm / math.sqrt(math.log(256.0))
    loaded = mesh_part.loaded() if hasattr(mesh_part, "loaded") else mesh_part
    coords, faces = loaded.coordinates, loaded.faces
    # Same arithmetic as nilearn's SurfaceMesh._area.
    v0, v1, v2 = coords[faces[:, 0]], coords[faces[:, 1]], coords[faces[:, 2]]
    cross = np.cross(v1 - v0, v2 - v0)
    area = np.sum(0.5 * np.sqrt(np.sum(cross**2, axis=1)))
    avg_vertex_area = area / loaded.n_vertices
    return math.floor(1.14 * (4 * math.pi * std_kernel**2) / (7 * avg_vertex_area) + 0.5)


def smoothing_operator(mesh_part):
    """The one-iteration smoothing matrix: 1/2 on the diagonal, 1/2 shared by neighbours."""
    from nilearn.surface.surface import compute_adjacency_matrix

    loaded = mesh_part.loaded() if hasattr(mesh_part, "loaded") else mesh_part
    matrix = compute_adjacency_matrix(loaded, values="ones")
    colsums = np.asarray(matrix.sum(axis=1)).flatten()
    matrix = matrix.multiply(0.5 / colsums[:, None])
    matrix.setdiag(0.5)
    return matrix


def smooth_part(data, mesh_part, fwhm, *, iterations=None):
    """Smooth one hemisphere's ``(n_vertices, n_scans)`` data as nilearn does.

    Non-finite values become 0 first. Scans are smoothed in chunks of
    :data:`SMOOTH_CHUNK`; each scan is independent, so the result is nilearn's.
    """
    data = np.array(data, copy=True)
    data[~np.isfinite(data)] = 0
    n_iter = fwhm_to_iterations(fwhm, mesh_part) if iterations is None else iterations
    if n_iter == 0:
        return data
    matrix = smoothing_operator(mesh_part)
    out = None
    for start in range(0, data.shape[1], SMOOTH_CHUNK):
        tmp = data[:, start:start + SMOOTH_CHUNK]
        for _ in range(n_iter):
            tmp = matrix.dot(tmp)
        tmp = np.asarray(tmp)
        if out is None:
            out = np.empty(data.shape, dtype=tmp.dtype)
        out[:, start:start + SMOOTH_CHUNK] = tmp
    return out


# --------------------------------------------------------------------------- masks


def _binarize_mask_parts(parts, what):
    """nilearn's ``SurfaceMasker`` rule: non-finite -> 0, then all columns non-zero."""
    out = {}
    for part, values in parts.items():
        values = np.array(values, dtype=float, copy=True)
        values = values[:, None] if values.ndim == 1 else values
        values[~np.isfinite(values)] = 0
        out[part] = values.astype(bool).all(axis=1)
    if not any(m.any() for m in out.values()):
        raise MaskError(f"The mask {what} is empty: no vertex/grayordinate left to analyse.")
    return out


def compute_surface_mask(runs, mask=None):
    """The analysis mask of surface or CIFTI runs, as a :class:`SurfaceGeometry`.

    Parameters
    ----------
    runs : list
        The runs: ``SurfaceImage`` objects, [left, right] GIFTI pairs or ``.dtseries.nii``
        files (one kind for all).
    mask : optional
        A given mask: a ``SurfaceImage``, a [left, right] GIFTI pair, a CIFTI
        ``.dscalar.nii``, or a dict/1D array of values; non-zero finite elements are in.
        Give one excluding the medial wall (e.g. FreeSurfer's cortex label). Without one,
        nilearn's rule: the elements finite in every scan of every run.
    """
    runs = list(runs)
    if not runs:
        raise ParameterError("No run given to compute the surface mask from.")
    # One run in memory at a time: only its shape, brain models and finite vertices are kept.
    kind = parts = axis = None
    finite = {}
    for index, run in enumerate(runs, start=1):
        run_kind_, run_parts, run_axis, _ = load_run_parts(run)
        found = {part: values.shape[0] for part, values in run_parts.items()}
        if kind is None:
            kind, parts, axis = run_kind_, found, run_axis
        elif run_kind_ != kind:
            raise ImageError(f"Runs mix surface and CIFTI data (run {index} is {run_kind_}, "
                             f"run 1 {kind}); use one kind.")
        elif found != parts or (axis is not None and run_axis != axis):
            raise ImageError(
                f"Run {index} has elements {found}; run 1 has {parts} (same mesh or brain "
                "models expected)."
            )
        if mask is None:  # nilearn's rule, in its float32 cast
            for part, values in run_parts.items():
                ok = np.isfinite(values.astype("float32")).all(axis=1)
                finite[part] = ok if part not in finite else finite[part] & ok
        del run_parts
    if mask is None:
        masks = finite
        if not any(m.any() for m in masks.values()):
            raise MaskError("Every vertex/grayordinate has non-finite values: nothing to analyse.")
    else:
        masks = _binarize_mask_parts(_mask_values(mask, kind, parts), _describe(mask))
    flat = np.concatenate([masks[part] for part in parts])
    return SurfaceGeometry(kind=kind, parts=parts, mask=flat, brain_models=axis)


def _mask_values(mask, kind, parts):
    if isinstance(mask, SurfaceGeometry):
        values = dict(zip(mask.parts, np.split(mask.mask, np.cumsum(list(mask.parts.values()))
                                               [:-1]), strict=True))
    elif is_surface_image(mask):
        values = dict(mask.data.parts)
    elif is_cifti(mask) or (isinstance(mask, (list, tuple)) and len(mask) == 1):
        path = mask[0] if isinstance(mask, (list, tuple)) else mask
        img, _ = _load_cifti(path)
        values = {"grayordinates": np.asarray(img.dataobj).T}
    elif isinstance(mask, np.ndarray) and kind == "cifti":
        values = {"grayordinates": mask}
    elif isinstance(mask, np.ndarray):
        values = dict(zip(parts, np.split(mask, np.cumsum(list(parts.values()))[:-1]),
                          strict=True))
    elif isinstance(mask, dict) and all(isinstance(v, np.ndarray) for v in mask.values()):
        values = dict(mask)
    else:
        values = {hemi: _load_gifti_data(path) for hemi, path in _gifti_pair(mask).items()}
    found = {part: np.shape(v)[0] for part, v in values.items()}
    if found != parts:
        raise MaskError(
            f"The mask {_describe(mask)} has elements {found}; the runs have {parts}."
        )
    return values


# --------------------------------------------------------------------------- masked runs


def load_masked_surface_run(run, geometry, *, smoothing_fwhm=None, mesh=None):
    """Read one run through the mask: a ``(n_scans, n_in_mask)`` float64 C-ordered array.

    The values equal ``SurfaceMasker(mask_img, smoothing_fwhm).fit().transform(img)`` of
    nilearn (before cleaning, which glmflow applies during the fit).

    Parameters
    ----------
    run : SurfaceImage, [left, right] GIFTI pair or .dtseries.nii path
    geometry : SurfaceGeometry
    smoothing_fwhm : float, optional
        Surface smoothing (FWHM in mm); needs the mesh (a ``SurfaceImage``'s own, or
        ``mesh``). Not available for CIFTI (smooth with ``wb_command -cifti-smoothing``).
    mesh : optional
        See :func:`resolve_mesh`; overrides a ``SurfaceImage``'s mesh.
    """
    kind, parts, axis, own_mesh = load_run_parts(run)
    if kind != geometry.kind:
        raise ImageError(f"The run {_describe(run)} is {kind} data; the mask is {geometry.kind}.")
    found = {part: values.shape[0] for part, values in parts.items()}
    if found != geometry.parts:
        raise ImageError(
            f"The run {_describe(run)} has elements {found}; the mask has {geometry.parts}."
        )
    if axis is not None and geometry.brain_models is not None and axis != geometry.brain_models:
        raise ImageError(f"The run {_describe(run)}'s brain models differ from the mask's.")
    if smoothing_fwhm:
        if kind == "cifti":
            raise ParameterError(
                "smoothing_fwhm is not available for CIFTI runs (cortex and subcortical "
                "voxels need different kernels); smooth them beforehand, e.g. with "
                "wb_command -cifti-smoothing, and give smoothing_fwhm=None."
            )
        mesh = resolve_mesh(mesh) if mesh is not None else own_mesh
        if mesh is None:
            raise ParameterError(
                "smoothing_fwhm on GIFTI runs needs the surface mesh: give mesh="
                "'fsaverage5' (or another template name) or a [left, right] pair of GIFTI "
                "surface files."
            )
        for hemi in parts:
            if mesh.parts[hemi].n_vertices != parts[hemi].shape[0]:
                raise ImageError(
                    f"The {hemi} mesh has {mesh.parts[hemi].n_vertices} vertices; the data "
                    f"have {parts[hemi].shape[0]}."
                )
            parts[hemi] = smooth_part(parts[hemi], mesh.parts[hemi], smoothing_fwhm)
    n_scans_ = next(iter(parts.values())).shape[1]
    out = np.empty((n_scans_, geometry.n_elements))
    start = 0
    for part, part_mask in geometry.part_masks():
        stop = start + int(part_mask.sum())
        out[:, start:stop] = parts[part][part_mask].T
        start = stop
    return out


# --------------------------------------------------------------------------- outputs


def unmask(values, geometry):
    """In-mask values -> ``{part: (n_elements,) or (n_elements, k) array}``, 0 outside."""
    values = np.asarray(values, dtype=np.float64)
    two_d = values.ndim == 2
    values = np.atleast_2d(values)  # (k, n_in_mask)
    if values.shape[1] != geometry.n_elements:
        raise ParameterError(
            f"{values.shape[1]} values given for {geometry.n_elements} in-mask elements."
        )
    out = {}
    start = 0
    for part, part_mask in geometry.part_masks():
        stop = start + int(part_mask.sum())
        full = np.zeros((part_mask.shape[0], values.shape[0]))
        full[part_mask] = values[:, start:stop].T
        out[part] = full if two_d else full[:, 0]
        start = stop
    return out


def gifti_image(data, hemi, *, intent="NIFTI_INTENT_NONE", dtype=np.float64):
    """A GIFTI functional image of one hemisphere (one data array per column)."""
    data = np.asarray(data, dtype=dtype)
    columns = data[:, None] if data.ndim == 1 else data
    meta = nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": GIFTI_STRUCTURE[hemi]})
    darrays = [
        nib.gifti.GiftiDataArray(np.ascontiguousarray(columns[:, k]), intent=intent,
                                 datatype=nib.nifti1.data_type_codes.niistring[np.dtype(dtype)])
        for k in range(columns.shape[1])
    ]
    return nib.gifti.GiftiImage(darrays=darrays, meta=meta)


def save_gifti(img, path, *, overwrite=True):
    """Write a GIFTI image atomically; float64 arrays are kept (nibabel's ``mode="force"``).

    The GIFTI standard lists uint8, int32 and float32 only; statistical maps are written
    in float64 so that they equal nilearn's to 1e-9 (nibabel and nilearn read them). Pass
    ``gifti_dtype=np.float32`` to :func:`save_maps` for strictly conforming files.
    """
    from glmflow.core.io import atomic_path

    with atomic_path(path, overwrite=overwrite) as tmp:
        img.to_filename(tmp, mode="force")
    return str(path)


def save_gifti_pair(values, geometry, stem, *, intent="NIFTI_INTENT_NONE", overwrite=True,
                    gifti_dtype=np.float64):
    """Write in-mask values as ``<dir>/hemi-L_<name>.func.gii`` and the right counterpart.

    Parameters
    ----------
    values : ndarray, shape (n_in_mask,) or (k, n_in_mask)
    geometry : SurfaceGeometry
    stem : str or Path
        ``folder/name``; each file is ``folder/hemi-{L,R}_name.func.gii``.

    Returns
    -------
    list of str
        ``[left, right]`` paths.
    """
    stem = Path(stem)
    paths = []
    for hemi, data in unmask(values, geometry).items():  # (n_vertices,) or (n_vertices, k)
        path = stem.parent / f"hemi-{HEMI_LABEL[hemi]}_{stem.name}.func.gii"
        img = gifti_image(data, hemi, intent=intent, dtype=gifti_dtype)
        paths.append(save_gifti(img, path, overwrite=overwrite))
    return paths


def dscalar_image(values, geometry, names):
    """A CIFTI-2 dense scalar image with the geometry's brain-model axis."""
    full = np.atleast_2d(unmask(values, geometry)["grayordinates"].T)  # (k, n)
    names = [names] if isinstance(names, str) else list(names)
    if len(names) != full.shape[0]:
        names = [f"{names[0]}_{k}" for k in range(full.shape[0])]
    header = nib.cifti2.Cifti2Header.from_axes(
        (nib.cifti2.ScalarAxis(names), geometry.brain_models)
    )
    img = nib.cifti2.Cifti2Image(full, header)
    img.nifti_header.set_intent("ConnDenseScalar")
    return img


def dtseries_image(values, geometry, *, t_r=1.0):
    """A CIFTI-2 dense time series (residuals, predicted) with the brain-model axis."""
    full = np.atleast_2d(unmask(values, geometry)["grayordinates"].T)
    header = nib.cifti2.Cifti2Header.from_axes(
        (nib.cifti2.SeriesAxis(0.0, float(t_r or 1.0), full.shape[0], unit="second"),
         geometry.brain_models)
    )
    img = nib.cifti2.Cifti2Image(full, header)
    img.nifti_header.set_intent("ConnDenseSeries")
    return img


def save_maps(values, geometry, stem, *, name="map", intent="NIFTI_INTENT_NONE",
              series=False, t_r=None, overwrite=True, gifti_dtype=np.float64):
    """Write in-mask values in the geometry's format; return the list of paths written.

    Surfaces: ``[hemi-L_<stem>.func.gii, hemi-R_<stem>.func.gii]``; CIFTI:
    ``[<stem>.dscalar.nii]`` (``.dtseries.nii`` with ``series=True``).
    """
    from glmflow.core.io import save_img

    if geometry.kind == "surface":
        return save_gifti_pair(values, geometry, stem, intent=intent, overwrite=overwrite,
                               gifti_dtype=gifti_dtype)
    if series:
        return [save_img(dtseries_image(values, geometry, t_r=t_r),
                         f"{stem}.dtseries.nii", overwrite=overwrite)]
    return [save_img(dscalar_image(values, geometry, name), f"{stem}.dscalar.nii",
                     overwrite=overwrite)]


def save_mask(geometry, stem):
    """Write the mask (1 in, 0 out) as a GIFTI pair or a dscalar; return the paths."""
    return save_maps(geometry.mask[geometry.mask].astype(float), geometry, stem, name="mask",
                     gifti_dtype=np.float32)


def load_mask(files, like_runs=None):
    """Read a mask written by :func:`save_mask` (list of paths) back to a geometry."""
    files = [files] if isinstance(files, (str, Path)) else list(files)
    if len(files) == 1 and is_cifti(files[0]):
        img, axis = _load_cifti(files[0])
        values = {"grayordinates": np.asarray(img.dataobj).T}
        masks = _binarize_mask_parts(values, files[0])
        return SurfaceGeometry("cifti", {"grayordinates": axis.size}, masks["grayordinates"],
                               axis)
    pair = _gifti_pair(files)
    masks = _binarize_mask_parts({h: _load_gifti_data(p) for h, p in pair.items()}, files)
    parts = {hemi: m.shape[0] for hemi, m in masks.items()}
    return SurfaceGeometry("surface", parts, np.concatenate([masks[h] for h in HEMIS]))


def to_surface_image(values, geometry, mesh):
    """In-mask values -> a nilearn ``SurfaceImage`` on ``mesh`` (as ``inverse_transform``)."""
    from nilearn.surface import SurfaceImage

    return SurfaceImage(mesh=resolve_mesh(mesh), data=unmask(values, geometry))


def save_surface_image(img, stem):
    """Write a ``SurfaceImage``'s data as a GIFTI pair, keeping its dtype (values exact).

    Returns ``[hemi-L_<stem>.func.gii, hemi-R_<stem>.func.gii]``.
    """
    stem = Path(stem)
    paths = []
    for hemi, data in img.data.parts.items():
        data = np.asarray(data)
        dtype = data.dtype if data.dtype.kind == "f" else np.float64
        path = stem.parent / f"hemi-{HEMI_LABEL[hemi]}_{stem.name}.func.gii"
        paths.append(save_gifti(gifti_image(data, hemi, dtype=dtype), path))
    return paths


def save_mesh(mesh, stem):
    """Write a ``PolyMesh`` as a GIFTI surface pair, coordinates' dtype kept (areas exact).

    Returns ``[hemi-L_<stem>.surf.gii, hemi-R_<stem>.surf.gii]``.
    """
    stem = Path(stem)
    paths = []
    for hemi, part in resolve_mesh(mesh).parts.items():
        loaded = part.loaded() if hasattr(part, "loaded") else part
        coords = np.asarray(loaded.coordinates)
        meta = nib.gifti.GiftiMetaData({"AnatomicalStructurePrimary": GIFTI_STRUCTURE[hemi]})
        img = nib.gifti.GiftiImage(meta=meta, darrays=[
            nib.gifti.GiftiDataArray(
                coords, intent="NIFTI_INTENT_POINTSET",
                datatype=nib.nifti1.data_type_codes.niistring[coords.dtype]),
            nib.gifti.GiftiDataArray(np.asarray(loaded.faces, np.int32),
                                     intent="NIFTI_INTENT_TRIANGLE", datatype="NIFTI_TYPE_INT32"),
        ])
        path = stem.parent / f"hemi-{HEMI_LABEL[hemi]}_{stem.name}.surf.gii"
        paths.append(save_gifti(img, path))
    return paths


def read_maps(paths, geometry):
    """Read maps written by :func:`save_maps` back to in-mask values ``(k, n_in_mask)``."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if geometry.kind == "cifti":
        full = {"grayordinates": np.asarray(nib.load(paths[0]).dataobj).T}
    else:
        full = {hemi: _load_gifti_data(path) for hemi, path in _gifti_pair(paths).items()}
    return np.concatenate(
        [full[part][part_mask].T for part, part_mask in geometry.part_masks()], axis=1
    )


# --------------------------------------------------------------------------- CIFTI axis JSON


def brain_models_to_json(axis):
    """A CIFTI brain-model axis as plain JSON data (structures run-length encoded)."""
    names, counts = [], []
    for name in axis.name:
        if names and names[-1] == name:
            counts[-1] += 1
        else:
            names.append(str(name))
            counts.append(1)
    return {
        "structures": [[n, c] for n, c in zip(names, counts, strict=True)],
        "vertex": axis.vertex.astype(int).tolist(),
        "voxel": axis.voxel.astype(int).tolist(),
        "nvertices": {str(k): int(v) for k, v in axis.nvertices.items()},
        "affine": None if axis.affine is None else np.asarray(axis.affine).tolist(),
        "volume_shape": None if axis.volume_shape is None else list(axis.volume_shape),
    }


def brain_models_from_json(data):
    """Inverse of :func:`brain_models_to_json`."""
    names = np.concatenate([[name] * count for name, count in data["structures"]])
    voxel = np.asarray(data["voxel"], dtype=int).reshape(-1, 3)
    has_volume = data["volume_shape"] is not None
    return nib.cifti2.BrainModelAxis(
        names,
        voxel=voxel,
        vertex=np.asarray(data["vertex"], dtype=int),
        affine=np.asarray(data["affine"]) if has_volume else None,
        volume_shape=tuple(data["volume_shape"]) if has_volume else None,
        nvertices=dict(data["nvertices"]),
    )


# --------------------------------------------------------------------------- fit


def fit_surface_run(run, design, geometry, *, smoothing_fwhm=None, mesh=None, **fit_kwargs):
    """Read one surface/CIFTI run through the mask and fit its GLM.

    Parameters
    ----------
    run, smoothing_fwhm, mesh
        As :func:`load_masked_surface_run`.
    design : pandas.DataFrame
    geometry : SurfaceGeometry
    **fit_kwargs
        Passed to :func:`glmflow.core.glm.fit_glm` (``noise_model``, ``t_r``,
        ``signal_scaling``, ``standardize``, ``sample_mask``, ``random_state``, ...).

    Returns
    -------
    model : RunModel
        With ``geometry`` ``"surface"`` or ``"cifti"`` and the geometry's description.
    outputs : FitOutputs or None
    """
    from glmflow.core.glm import fit_glm

    raw = load_masked_surface_run(run, geometry, smoothing_fwhm=smoothing_fwhm, mesh=mesh)
    return fit_glm(raw, design, mask_img=geometry.mask, geometry=geometry.kind,
                   geometry_info=geometry.to_info(), **fit_kwargs)
