"""Simulated surface runs on nilearn's bundled fsaverage5 mesh and a small CIFTI-2 file."""

import os
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")

T_R = 2.0
N_SCANS = 80
EVENTS = pd.DataFrame({
    "onset": [10, 40, 70, 100, 130],
    "duration": [10, 10, 10, 10, 10],
    "trial_type": ["a", "b", "a", "b", "a"],
})


@pytest.fixture(scope="session")
def fsaverage5():
    """nilearn's fsaverage5 pial mesh: shipped with nilearn, loaded without network."""
    from nilearn.datasets import load_fsaverage

    return load_fsaverage("fsaverage5")["pial"]


def regressors(n_scans=N_SCANS, t_r=T_R):
    from nilearn.glm.first_level import make_first_level_design_matrix

    frame_times = np.arange(n_scans) * t_r
    design = make_first_level_design_matrix(frame_times, EVENTS, drift_model=None)
    return design["a"].to_numpy(), design["b"].to_numpy()


def ar1_noise(rng, shape, rho=0.3):
    """AR(1) noise along the last axis."""
    white = rng.standard_normal(shape)
    out = np.empty(shape)
    out[..., 0] = white[..., 0]
    for t in range(1, shape[-1]):
        out[..., t] = rho * out[..., t - 1] + white[..., t]
    return out


def medial_wall(mesh_part):
    """A stand-in medial wall: the vertices nearest the midline (|x| < 12 mm)."""
    return np.abs(mesh_part.coordinates[:, 0]) < 12


def active_vertices(mesh_part, centre_index, radius=15.0):
    coords = mesh_part.coordinates
    return np.linalg.norm(coords - coords[centre_index], axis=1) < radius


@pytest.fixture(scope="session")
def surface_study(fsaverage5):
    """Two runs per hemisphere (float32, as fMRIPrep writes), medial wall at zero.

    Condition ``a`` activates a patch of the left hemisphere, ``b`` one of the right.
    """
    a, b = regressors()
    rng = np.random.default_rng(42)
    runs, truth = [], {}
    mask = {}
    for hemi, centre in (("left", 2000), ("right", 5000)):
        part = fsaverage5.parts[hemi]
        mask[hemi] = ~medial_wall(part)
        truth[hemi] = active_vertices(part, centre) & mask[hemi]
    for _ in range(2):
        data = {}
        for hemi, reg in (("left", a), ("right", b)):
            n = fsaverage5.parts[hemi].n_vertices
            values = 100 + 2.0 * ar1_noise(rng, (n, N_SCANS))
            values[truth[hemi]] += 3.0 * reg
            values[~mask[hemi]] = 0.0
            data[hemi] = values.astype(np.float32)
        runs.append(data)
    return {"runs": runs, "mask": mask, "truth": truth}


@pytest.fixture(scope="session")
def gifti_files(surface_study, tmp_path_factory):
    """The surface study written as GIFTI pairs, with a GIFTI mask pair and events TSVs."""
    from glmflow.core.surface import gifti_image

    folder = tmp_path_factory.mktemp("gifti")
    bold = []
    for index, run in enumerate(surface_study["runs"], start=1):
        pair = []
        for hemi, label in (("left", "L"), ("right", "R")):
            path = folder / f"sub-01_run-{index}_hemi-{label}_space-fsaverage5_bold.func.gii"
            img = nib.gifti.GiftiImage(darrays=[
                nib.gifti.GiftiDataArray(np.ascontiguousarray(col), datatype="NIFTI_TYPE_FLOAT32")
                for col in run[hemi].T
            ])
            nib.save(img, path)
            pair.append(str(path))
        bold.append(pair)
    masks = []
    for hemi, label in (("left", "L"), ("right", "R")):
        path = folder / f"hemi-{label}_desc-cortex_mask.func.gii"
        nib.save(gifti_image(surface_study["mask"][hemi], hemi, dtype=np.float32), path)
        masks.append(str(path))
    events = []
    for index in (1, 2):
        path = folder / f"sub-01_run-{index}_events.tsv"
        EVENTS.to_csv(path, sep="\t", index=False)
        events.append(str(path))
    return {"bold": bold, "mask": masks, "events": events}


def surface_image(mesh, data):
    from nilearn.surface import SurfaceImage

    return SurfaceImage(mesh=mesh, data=data)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield
