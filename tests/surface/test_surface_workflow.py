"""init_surface_first_level_wf on GIFTI pairs: .func.gii maps equal nilearn's on the same input."""

import nibabel as nib
import numpy as np
import pytest

from glmflow.workflows.outputs import collect_outputs
from glmflow.workflows.surface import as_run_lists, init_surface_first_level_wf

from .conftest import EVENTS, T_R


def run_wf(workflow, base_dir):
    workflow.base_dir = str(base_dir)
    graph = workflow.run(plugin="Linear")
    return collect_outputs(workflow, graph)


def read_pair(paths):
    return {hemi: np.asarray(nib.load(path).darrays[0].data)
            for hemi, path in zip(("left", "right"), paths, strict=True)}


def test_gifti_workflow_equals_nilearn(gifti_files, fsaverage5, tmp_path):
    """Two GIFTI runs, cortex mask, 8 mm surface smoothing, AR(1): |dz| < 1e-9 per vertex."""
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.surface import SurfaceImage

    contrasts = {"a - b": "a - b", "effects": {"def": [[1, 0], [0, 1]], "stat_type": "F"}}
    workflow = init_surface_first_level_wf(t_r=T_R, contrasts=contrasts, smoothing_fwhm=8.0,
                                           mesh="fsaverage5")
    workflow.inputs.inputnode.bold_files = gifti_files["bold"]
    workflow.inputs.inputnode.events_files = gifti_files["events"]
    workflow.inputs.inputnode.mask_files = gifti_files["mask"]
    out = run_wf(workflow, tmp_path)

    imgs = [SurfaceImage(mesh=fsaverage5, data=dict(zip(("left", "right"), run, strict=True)))
            for run in gifti_files["bold"]]
    mask = SurfaceImage(mesh=fsaverage5, data=dict(zip(("left", "right"), gifti_files["mask"],
                                                       strict=True)))
    reference = FirstLevelModel(t_r=T_R, mask_img=mask, smoothing_fwhm=8.0).fit(
        imgs, events=[EVENTS, EVENTS])

    assert out["contrast_names"] == ["a - b", "effects"]
    assert out["stat_types"] == ["t", "F"]
    for index, (name, definition, stat_type) in enumerate(
        (("a - b", "a - b", None), ("effects", np.eye(2), "F"))
    ):
        z_pair = out["z_files"][index]
        assert [p.split("/")[-1] for p in z_pair] == [
            f"hemi-{h}_contrast-{'aMinusB' if index == 0 else 'effects'}_stat-z_statmap.func.gii"
            for h in ("L", "R")
        ]
        expected = reference.compute_contrast(definition, stat_type=stat_type,
                                              output_type="all")
        for field, key in (("z_files", "z_score"), ("stat_files", "stat"),
                           ("p_files", "p_value"), ("effect_files", "effect_size"),
                           ("variance_files", "effect_variance")):
            got = read_pair(out[field][index])
            for hemi in ("left", "right"):
                want = np.asarray(expected[key].data.parts[hemi])
                want = want[:, 0] if want.ndim == 2 else want  # F effect: first row
                scale = max(1.0, np.abs(want).max())
                np.testing.assert_allclose(got[hemi], want, rtol=0, atol=1e-9 * scale,
                                           err_msg=f"{name} {key} {hemi}")
    # The mask went through as given: medial wall out.
    mask_pair = read_pair(out["mask_files"])
    assert mask_pair["left"].dtype == np.float32
    assert mask_pair["left"].sum() == np.asarray(mask.data.parts["left"]).sum()
    gii = nib.load(out["z_files"][0][0])
    assert gii.meta["AnatomicalStructurePrimary"] == "CortexLeft"
    assert gii.darrays[0].intent == nib.nifti1.intent_codes["NIFTI_INTENT_ZSCORE"]


def test_minimize_memory_false_writes_gifti_series(gifti_files, tmp_path):
    workflow = init_surface_first_level_wf(t_r=T_R, contrasts={"a": "a"}, noise_model="ols",
                                           minimize_memory=False, gifti_float32=True)
    workflow.inputs.inputnode.bold_files = gifti_files["bold"][:1]
    workflow.inputs.inputnode.events_files = gifti_files["events"][:1]
    workflow.inputs.inputnode.mask_files = gifti_files["mask"]
    out = run_wf(workflow, tmp_path)
    residuals = nib.load(out["residuals_files"][0][0])
    predicted = nib.load(out["predicted_files"][0][0])
    assert len(residuals.darrays) == len(predicted.darrays) == 80
    r2 = read_pair(out["r_square_files"][0])
    inside = read_pair(out["mask_files"])["left"] > 0
    assert (r2["left"][inside] >= 0).all() and (r2["left"][inside] <= 1).all()
    assert not r2["left"][~inside].any()
    # gifti_float32: standard-conforming GIFTI (float32) statistical maps.
    z = nib.load(out["z_files"][0][1])
    assert z.darrays[0].datatype == nib.nifti1.data_type_codes["float32"]
    assert z.darrays[0].data.dtype == np.float32 and np.abs(z.darrays[0].data).max() > 3


def test_run_lists():
    assert as_run_lists(["a.dtseries.nii"]) == [["a.dtseries.nii"]]
    assert as_run_lists([["l.func.gii", "r.func.gii"]]) == [["l.func.gii", "r.func.gii"]]
    with pytest.raises(ValueError, match="pairs"):
        as_run_lists(["l.func.gii"])
