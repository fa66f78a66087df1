"""CIFTI-2: dense time series in, dense scalar maps out, cortex and subcortical structures."""

import nibabel as nib
import numpy as np
import pytest
from nibabel.cifti2 import BrainModelAxis, SeriesAxis

from glmflow.core.errors import MaskError, ParameterError
from glmflow.core.glm import load_model
from glmflow.core.surface import (
    SurfaceGeometry,
    brain_models_from_json,
    brain_models_to_json,
    compute_surface_mask,
    load_masked_surface_run,
)
from glmflow.workflows.surface import init_surface_first_level_wf

from .conftest import EVENTS, N_SCANS, T_R, ar1_noise, regressors
from .test_surface_workflow import run_wf

NAN_INDEX = 7  # a grayordinate with a NaN in run 2: nilearn's rule drops it from the mask


def brain_models():
    """Two cortices (medial wall left out of the brain models) and two subcortical nuclei."""
    rng = np.random.default_rng(1)
    left = BrainModelAxis.from_surface(np.sort(rng.choice(400, 300, replace=False)), 400,
                                       "CortexLeft")
    right = BrainModelAxis.from_surface(np.sort(rng.choice(400, 250, replace=False)), 400,
                                        "CortexRight")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-10, -12, -8]
    thalamus = np.zeros((10, 12, 8), bool)
    thalamus[2:5, 3:6, 2:5] = True
    putamen = np.zeros((10, 12, 8), bool)
    putamen[6:9, 6:9, 4:6] = True
    return (left + right
            + BrainModelAxis.from_mask(thalamus, "ThalamusLeft", affine=affine)
            + BrainModelAxis.from_mask(putamen, "PutamenRight", affine=affine))


@pytest.fixture(scope="module")
def cifti_study(tmp_path_factory):
    axis = brain_models()
    a, b = regressors()
    structures = axis.name
    rng = np.random.default_rng(7)
    active_a = np.zeros(axis.size, bool)
    active_b = np.zeros(axis.size, bool)
    cortex_left = np.flatnonzero(structures == "CIFTI_STRUCTURE_CORTEX_LEFT")
    cortex_right = np.flatnonzero(structures == "CIFTI_STRUCTURE_CORTEX_RIGHT")
    active_a[cortex_left[40:70]] = True
    active_a[structures == "CIFTI_STRUCTURE_THALAMUS_LEFT"] = True
    active_b[cortex_right[100:120]] = True
    active_b[structures == "CIFTI_STRUCTURE_PUTAMEN_RIGHT"] = True
    folder = tmp_path_factory.mktemp("cifti")
    files = []
    for run in (1, 2):
        data = 1000 + 5.0 * ar1_noise(rng, (axis.size, N_SCANS))
        data[active_a] += 15.0 * a
        data[active_b] += 15.0 * b
        if run == 2:
            data[NAN_INDEX, 3] = np.nan
        header = nib.cifti2.Cifti2Header.from_axes(
            (SeriesAxis(0, T_R, N_SCANS, unit="second"), axis))
        img = nib.cifti2.Cifti2Image(data.T.astype(np.float32), header)
        img.nifti_header.set_intent("ConnDenseSeries")
        path = folder / f"sub-01_task-x_run-{run}_space-fsLR_den-91k_bold.dtseries.nii"
        nib.save(img, path)
        files.append(str(path))
    events = folder / "events.tsv"
    EVENTS.to_csv(events, sep="\t", index=False)
    return {"files": files, "events": str(events), "axis": axis, "a": active_a,
            "b": active_b}


def test_brain_model_axis_round_trips_through_json(cifti_study):
    import json

    axis = cifti_study["axis"]
    assert brain_models_from_json(json.loads(json.dumps(brain_models_to_json(axis)))) == axis


def test_cifti_workflow_recovers_activations(cifti_study, tmp_path):
    """a - b: cortex and subcortical activations found with the right sign, nothing else."""
    workflow = init_surface_first_level_wf(t_r=T_R, contrasts={"a - b": "a - b", "a": "a"})
    workflow.inputs.inputnode.bold_files = cifti_study["files"]
    workflow.inputs.inputnode.events_files = [cifti_study["events"]] * 2
    out = run_wf(workflow, tmp_path)
    (z_file,) = out["z_files"][0]
    assert z_file.endswith("contrast-aMinusB_stat-z_statmap.dscalar.nii")
    img = nib.load(z_file)
    assert img.header.get_axis(1) == cifti_study["axis"]
    assert isinstance(img.header.get_axis(0), nib.cifti2.ScalarAxis)
    assert img.nifti_header.get_intent()[0] == "ConnDenseScalar"
    z = np.asarray(img.dataobj)[0]
    a, b = cifti_study["a"], cifti_study["b"]
    assert z[NAN_INDEX] == 0  # masked out by the NaN
    keep = np.ones(z.size, bool)
    keep[NAN_INDEX] = False
    assert z[a].min() > 3.0 and z[b].max() < -3.0
    assert np.abs(z[~a & ~b & keep]).max() < 4.5
    assert np.abs(z[~a & ~b & keep]).mean() < 1.2
    structures = cifti_study["axis"].name
    for name, sign in (("CIFTI_STRUCTURE_THALAMUS_LEFT", 1), ("CIFTI_STRUCTURE_PUTAMEN_RIGHT", -1)):
        assert (sign * z[structures == name] > 3).all(), name
    # The mask is a dscalar too, and the model file carries the brain models.
    mask = np.asarray(nib.load(out["mask_files"][0]).dataobj)[0]
    assert mask.sum() == z.size - 1 and mask[NAN_INDEX] == 0
    model = load_model(out["model_files"][0])
    assert model.geometry == "cifti" and model.affine is None
    assert SurfaceGeometry.from_model(model).brain_models == cifti_study["axis"]


def test_cifti_fit_equals_nilearn_run_glm(cifti_study):
    """One CIFTI run through glmflow equals nilearn's run_glm + compute_contrast on its data."""
    from nilearn.glm.contrasts import compute_contrast as nl_contrast
    from nilearn.glm.first_level import mean_scaling, run_glm

    from glmflow.core.contrasts import compute_contrast
    from glmflow.core.design import make_design_matrix
    from glmflow.core.surface import fit_surface_run

    run = cifti_study["files"][0]
    geometry = compute_surface_mask([run])
    design = make_design_matrix(N_SCANS, t_r=T_R, events=EVENTS)
    model, _ = fit_surface_run(run, design, geometry, t_r=T_R, noise_model="ar1")
    got = compute_contrast(model, "a - b").maps["z_score"]

    data = np.asarray(nib.load(run).dataobj, dtype=np.float64)
    y, _ = mean_scaling(data, 0)
    labels, results = run_glm(y, design.to_numpy(), noise_model="ar1")
    weights = np.zeros(design.shape[1])
    weights[list(design.columns).index("a")] = 1
    weights[list(design.columns).index("b")] = -1
    expected = nl_contrast(labels, results, weights).z_score()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_cifti_errors(cifti_study):
    geometry = compute_surface_mask(cifti_study["files"][:1])
    with pytest.raises(ParameterError, match="wb_command"):
        load_masked_surface_run(cifti_study["files"][0], geometry, smoothing_fwhm=4.0)
    with pytest.raises(MaskError, match="elements"):
        compute_surface_mask(cifti_study["files"][:1], np.ones(10))
    with pytest.raises(MaskError, match="empty"):
        compute_surface_mask(cifti_study["files"][:1], np.zeros(geometry.mask.size))


def test_cifti_given_mask_dscalar(cifti_study, tmp_path):
    """A dscalar mask (here: putamen left out) is applied; maps are zero outside it."""
    from glmflow.core.surface import save_mask
    from glmflow.interfaces.surface import ComputeSurfaceMask

    geometry = compute_surface_mask(cifti_study["files"][:1])
    putamen = cifti_study["axis"].name == "CIFTI_STRUCTURE_PUTAMEN_RIGHT"
    geometry.mask = geometry.mask & ~putamen
    (mask_file,) = save_mask(geometry, tmp_path / "mask")
    again = compute_surface_mask(cifti_study["files"], mask_file)
    assert np.array_equal(again.mask, ~putamen)
    assert again.brain_models == cifti_study["axis"]
    node = ComputeSurfaceMask(bold_files=[[f] for f in cifti_study["files"]],
                              mask_files=mask_file)
    (tmp_path / "node").mkdir()
    result = node.run(cwd=str(tmp_path / "node"))
    written = np.asarray(nib.load(result.outputs.mask_files[0]).dataobj)[0]
    assert np.array_equal(written > 0, ~putamen)
    raw = load_masked_surface_run(cifti_study["files"][0], again)
    data = np.asarray(nib.load(cifti_study["files"][0]).dataobj)
    np.testing.assert_array_equal(raw, data[:, ~putamen].astype(np.float64))


def test_fit_node_with_sample_mask_equals_core(cifti_study, tmp_path):
    """FitSurfaceGLM with a scrubbing file gives the core fit's numbers."""
    from glmflow.core.design import make_design_matrix, save_design
    from glmflow.core.io import save_sample_mask
    from glmflow.core.surface import fit_surface_run, save_mask
    from glmflow.interfaces.surface import FitSurfaceGLM

    run = cifti_study["files"][0]
    geometry = compute_surface_mask([run])
    design = make_design_matrix(N_SCANS, t_r=T_R, events=EVENTS)
    keep = np.setdiff1d(np.arange(N_SCANS), [0, 1, 40])
    (mask_file,) = save_mask(geometry, tmp_path / "mask")
    node = FitSurfaceGLM(
        bold_file=run, mask_files=mask_file, t_r=T_R,
        design_file=save_design(design, tmp_path / "design.tsv"),
        sample_mask_file=save_sample_mask(keep, tmp_path / "keep.tsv"),
    )
    (tmp_path / "node").mkdir()
    model = load_model(node.run(cwd=str(tmp_path / "node")).outputs.model_file)
    expected, _ = fit_surface_run(run, design, geometry, t_r=T_R, sample_mask=keep)
    assert model.meta["n_scans"] == keep.size
    np.testing.assert_array_equal(model.betas, expected.betas)
    np.testing.assert_array_equal(model.dispersion, expected.dispersion)
