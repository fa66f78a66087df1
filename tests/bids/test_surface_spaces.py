"""``glmflow ... --space fsaverage5 | fsLR``: fMRIPrep's surface outputs through the BIDS app.

The derivatives tree is fMRIPrep's layout for surface outputs: GIFTI pairs
``*_hemi-{L,R}_space-fsaverage5_bold.func.gii`` (simulated on nilearn's bundled fsaverage5
mesh, no download) and CIFTI-2 ``*_space-fsLR_den-91k_bold.dtseries.nii`` (a small
brain-model axis, as in ``tests/surface``), next to the confounds table the volume runs share.
The GIFTI maps are compared with nilearn's FirstLevelModel on the same SurfaceImage runs.
"""

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.cifti2 import SeriesAxis

from glmflow.bids.layout import collect_runs, parse_surface_space, space_kind
from glmflow.cli.bids_app import main
from glmflow.core.errors import InputFileError, ParameterError

from .conftest import confounds_json, fmriprep_confounds

pytestmark = pytest.mark.slow

T_R = 2.0
N_SCANS = 80
START_TIME = 1.0  # in fMRIPrep's sidecars: slice_time_ref = 0.5
SPACE = "fsaverage5"
EVENTS = pd.DataFrame({
    "onset": [10.0, 40.0, 70.0, 100.0, 130.0],
    "duration": [10.0, 10.0, 10.0, 10.0, 10.0],
    "trial_type": ["a", "b", "a", "b", "a"],
})
STATS = ("effect", "variance", "t", "z", "p")


def _ar1(rng, shape, rho=0.3):
    white = rng.standard_normal(shape)
    out = np.empty(shape)
    out[..., 0] = white[..., 0]
    for t in range(1, shape[-1]):
        out[..., t] = rho * out[..., t - 1] + white[..., t]
    return out


def _regressors():
    from nilearn.glm.first_level import make_first_level_design_matrix

    design = make_first_level_design_matrix(np.arange(N_SCANS) * T_R, EVENTS,
                                            drift_model=None)
    return design["a"].to_numpy(), design["b"].to_numpy()


def _raw_dataset(root, runs=(1, 2)):
    raw = root / "raw"
    func = raw / "sub-01" / "func"
    func.mkdir(parents=True)
    (raw / "dataset_description.json").write_text(json.dumps(
        {"Name": "surface test", "BIDSVersion": "1.9.0"}))
    # the TR by inheritance from the top level; slice timing per run
    (raw / "task-x_bold.json").write_text(json.dumps({"RepetitionTime": T_R,
                                                      "TaskName": "x"}))
    for run in runs:
        EVENTS.to_csv(func / f"sub-01_task-x_run-{run}_events.tsv", sep="\t", index=False)
        (func / f"sub-01_task-x_run-{run}_bold.json").write_text(json.dumps(
            {"SliceTiming": [0.0, 0.5, 1.0, 1.5]}))
    return raw


def _derivatives(root, runs=(1, 2)):
    deriv = root / "fmriprep"
    func = deriv / "sub-01" / "func"
    func.mkdir(parents=True)
    (deriv / "dataset_description.json").write_text(json.dumps({
        "Name": "fMRIPrep", "BIDSVersion": "1.4.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.0"}]}))
    for run in runs:
        # one table per run, shared by its volume and surface outputs
        table = fmriprep_confounds(N_SCANS, t_r=T_R, seed=run, n_nonsteady=1,
                                   spikes=(30,) if run == 2 else ())
        conf = func / f"sub-01_task-x_run-{run}_desc-confounds_timeseries.tsv"
        table.to_csv(conf, sep="\t", index=False, na_rep="n/a")
        conf.with_suffix(".json").write_text(json.dumps(confounds_json(table)))
    return deriv, func


@pytest.fixture(scope="module")
def fsaverage5():
    from nilearn.datasets import load_fsaverage

    return load_fsaverage("fsaverage5")["pial"]


@pytest.fixture(scope="module")
def gifti_tree(tmp_path_factory, fsaverage5):
    """Two runs of GIFTI pairs (float32, medial wall at zero) + a cortex mask pair.

    ``a`` activates a patch of the left hemisphere, ``b`` one of the right.
    """
    root = tmp_path_factory.mktemp("surface_bids")
    raw = _raw_dataset(root)
    deriv, func = _derivatives(root)
    a, b = _regressors()
    rng = np.random.default_rng(3)
    cortex, active = {}, {}
    for hemi, centre in (("left", 2000), ("right", 5000)):
        coords = fsaverage5.parts[hemi].coordinates
        cortex[hemi] = np.abs(coords[:, 0]) >= 12  # a stand-in medial wall near the midline
        active[hemi] = (np.linalg.norm(coords - coords[centre], axis=1) < 15) & cortex[hemi]
    runs = {}
    for run in (1, 2):
        pair = []
        for hemi, label, reg in (("left", "L", a), ("right", "R", b)):
            n = fsaverage5.parts[hemi].n_vertices
            data = 100 + 2.0 * _ar1(rng, (n, N_SCANS))
            data[active[hemi]] += 3.0 * reg
            data[~cortex[hemi]] = 0.0
            img = nib.gifti.GiftiImage(darrays=[
                nib.gifti.GiftiDataArray(np.ascontiguousarray(col, dtype=np.float32),
                                         datatype="NIFTI_TYPE_FLOAT32")
                for col in data.T])
            path = func / f"sub-01_task-x_run-{run}_hemi-{label}_space-{SPACE}_bold.func.gii"
            nib.save(img, path)
            path.with_name(path.name.replace(".func.gii", ".json")).write_text(json.dumps(
                {"RepetitionTime": T_R, "StartTime": START_TIME, "SliceTimingCorrected": True}))
            pair.append(path)
        runs[run] = pair
    masks = []
    for hemi, label in (("left", "L"), ("right", "R")):
        path = root / f"cortex_hemi-{label}.func.gii"
        nib.save(nib.gifti.GiftiImage(darrays=[nib.gifti.GiftiDataArray(
            cortex[hemi].astype(np.float32), datatype="NIFTI_TYPE_FLOAT32")]), path)
        masks.append(path)
    # a volume run next to them: the surface query must not pick it up
    (func / "sub-01_task-x_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz").touch()
    return {"root": root, "raw": raw, "deriv": deriv, "runs": runs, "masks": masks,
            "active": active, "cortex": cortex}


@pytest.fixture(scope="module")
def gifti_result(gifti_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("surface_out") / "glmflow"
    argv = [str(gifti_tree["raw"]), str(out), "participant",
            "--derivatives", str(gifti_tree["deriv"]), "--space", SPACE,
            "--surface-mask", *map(str, gifti_tree["masks"]), "--smoothing-fwhm", "6",
            "--plugin", "Linear", "-q", "-w", str(tmp_path_factory.mktemp("surface_work"))]
    code = main(argv)
    return out, code


def _nilearn_reference(gifti_tree, fsaverage5, run):
    """FirstLevelModel on the same SurfaceImage run, confounds from nilearn's loader."""
    from nilearn.glm.first_level import FirstLevelModel
    from nilearn.interfaces.fmriprep import load_confounds
    from nilearn.surface import SurfaceImage

    left, right = (str(p) for p in gifti_tree["runs"][run])
    img = SurfaceImage(mesh=fsaverage5, data={"left": left, "right": right})
    mask = SurfaceImage(mesh=fsaverage5, data={
        "left": str(gifti_tree["masks"][0]), "right": str(gifti_tree["masks"][1])})
    # nilearn finds the run's confounds table from the GIFTI pair's name
    confounds, sample_mask = load_confounds([left, right], strategy=("motion", "wm_csf"))
    model = FirstLevelModel(t_r=T_R, slice_time_ref=START_TIME / T_R, mask_img=mask,
                            smoothing_fwhm=6.0, noise_model="ar1", hrf_model="glover",
                            drift_model="cosine", high_pass=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(img, events=EVENTS, confounds=confounds, sample_masks=sample_mask)
    return model, sample_mask


def _prefix(run, hemi=None):
    hemi = f"_hemi-{hemi}" if hemi else ""
    return f"sub-01_task-x_run-{run}{hemi}_space-{SPACE}"


def test_gifti_outputs_are_named_per_hemisphere(gifti_result):
    out, code = gifti_result
    assert code == 0
    names = {p.name for p in (out / "sub-01" / "func").iterdir()}
    expected = set()
    for run in (1, 2):
        for hemi in ("L", "R"):
            pre = _prefix(run, hemi)
            for contrast in ("a", "b"):
                for stat in STATS:
                    expected |= {f"{pre}_contrast-{contrast}_stat-{stat}_statmap.func.gii",
                                 f"{pre}_contrast-{contrast}_stat-{stat}_statmap.json"}
            expected |= {f"{pre}_mask.func.gii", f"{pre}_stat-rsquared_statmap.func.gii",
                         f"{pre}_stat-errorts_statmap.func.gii"}
        expected |= {f"{_prefix(run)}_design.tsv", f"{_prefix(run)}_design.json",
                     f"{_prefix(run)}_report.html"}
    assert names == expected  # no cluster tables on surfaces
    assert "sub-01_task-x_run-1_hemi-L_space-fsaverage5_contrast-a_stat-z_statmap.func.gii" \
        in names
    assert not list(out.rglob(".*"))  # atomic writes: no temporary file left


@pytest.mark.parametrize("run", [1, 2])
def test_gifti_z_maps_equal_nilearn(gifti_result, gifti_tree, fsaverage5, run):
    out, _ = gifti_result
    model, _ = _nilearn_reference(gifti_tree, fsaverage5, run)
    func = out / "sub-01" / "func"
    for contrast in ("a", "b"):
        maps = model.compute_contrast(contrast, output_type="all")
        for key, stat in (("z_score", "z"), ("stat", "t"), ("effect_size", "effect"),
                          ("p_value", "p")):
            for hemi, label in (("left", "L"), ("right", "R")):
                path = func / f"{_prefix(run, label)}_contrast-{contrast}_stat-{stat}_statmap.func.gii"
                ours = np.asarray(nib.load(path).darrays[0].data, dtype=np.float64)
                want = np.asarray(maps[key].data.parts[hemi], dtype=np.float64)
                scale = max(1.0, np.abs(want).max())
                np.testing.assert_allclose(ours, want, rtol=0, atol=1e-9 * scale,
                                           err_msg=f"run {run} {contrast} {stat} {hemi}")
    # and the activations are where they were put: a on the left, b on the right
    z_a = nib.load(func / f"{_prefix(run, 'L')}_contrast-a_stat-z_statmap.func.gii")
    z_a = np.asarray(z_a.darrays[0].data)
    assert z_a[gifti_tree["active"]["left"]].mean() > 3
    assert not z_a[~gifti_tree["cortex"]["left"]].any()  # outside the given mask: 0


def test_gifti_sidecars_and_design(gifti_result, gifti_tree, fsaverage5):
    out, _ = gifti_result
    model, sample_mask = _nilearn_reference(gifti_tree, fsaverage5, 2)
    func = out / "sub-01" / "func"
    meta = json.loads((func / f"{_prefix(2, 'R')}_contrast-b_stat-t_statmap.json").read_text())
    assert meta["StatisticType"] == "t"
    assert meta["SliceTimeRef"] == 0.5 and "StartTime" in meta["SliceTimeRefSource"]
    assert meta["RepetitionTime"] == T_R
    assert meta["Confounds"]["Strategy"]["strategy"] == ["motion", "wm_csf"]
    assert meta["Confounds"]["Source"].endswith(
        "sub-01_task-x_run-2_desc-confounds_timeseries.tsv")
    excluded = sorted(set(range(N_SCANS)) - set(sample_mask.tolist()))
    assert meta["VolumesExcluded"] == excluded and excluded[0] == 0  # non-steady state
    rank = np.linalg.matrix_rank(model.design_matrices_[0].to_numpy())
    assert meta["DegreesOfFreedom"] == len(sample_mask) - rank
    assert meta["SmoothingFWHM"] == 6.0
    assert [p.rsplit("/", 1)[1] for p in meta["Sources"]["bold"]] == [
        f"{_prefix(2, h)}_bold.func.gii" for h in ("L", "R")]
    assert len(meta["Sources"]["mask"]) == 2
    design = pd.read_csv(func / f"{_prefix(2)}_design.tsv", sep="\t")
    np.testing.assert_allclose(design.iloc[sample_mask].to_numpy(),
                               model.design_matrices_[0].to_numpy(), rtol=0, atol=1e-12)
    # the mask written is the one given; R-square within [0, 1] inside it
    mask = np.asarray(nib.load(func / f"{_prefix(2, 'L')}_mask.func.gii").darrays[0].data)
    assert np.array_equal(mask > 0, gifti_tree["cortex"]["left"])
    r2 = nib.load(func / f"{_prefix(2, 'L')}_stat-rsquared_statmap.func.gii").darrays[0].data
    assert 0 <= r2[mask > 0].min() and r2[mask > 0].max() <= 1
    errorts = nib.load(func / f"{_prefix(2, 'R')}_stat-errorts_statmap.func.gii")
    assert len(errorts.darrays) == len(sample_mask)
    report = (func / f"{_prefix(2)}_report.html").read_text()
    assert "surface or CIFTI" in report
    assert f"{int(sum(c.sum() for c in gifti_tree['cortex'].values())):,}" in report


# ------------------------------------------------------------------------------- CIFTI
def _brain_models():
    from nibabel.cifti2 import BrainModelAxis

    rng = np.random.default_rng(1)
    left = BrainModelAxis.from_surface(np.sort(rng.choice(400, 300, replace=False)), 400,
                                       "CortexLeft")
    right = BrainModelAxis.from_surface(np.sort(rng.choice(400, 250, replace=False)), 400,
                                        "CortexRight")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    thalamus = np.zeros((10, 12, 8), bool)
    thalamus[2:5, 3:6, 2:5] = True
    return left + right + BrainModelAxis.from_mask(thalamus, "ThalamusLeft", affine=affine)


@pytest.fixture(scope="module")
def cifti_tree(tmp_path_factory):
    """One fsLR run: a activates part of the left cortex and the thalamus, b the right
    cortex; one grayordinate has a NaN (nilearn's rule leaves it out of the mask)."""
    root = tmp_path_factory.mktemp("cifti_bids")
    raw = _raw_dataset(root, runs=(1,))
    deriv, func = _derivatives(root, runs=(1,))
    axis = _brain_models()
    a, b = _regressors()
    structures = axis.name
    left = np.flatnonzero(structures == "CIFTI_STRUCTURE_CORTEX_LEFT")
    right = np.flatnonzero(structures == "CIFTI_STRUCTURE_CORTEX_RIGHT")
    active_a = np.zeros(axis.size, bool)
    active_a[left[40:70]] = True
    active_a[structures == "CIFTI_STRUCTURE_THALAMUS_LEFT"] = True
    active_b = np.zeros(axis.size, bool)
    active_b[right[100:120]] = True
    data = 1000 + 5.0 * _ar1(np.random.default_rng(7), (axis.size, N_SCANS))
    data[active_a] += 15.0 * a
    data[active_b] += 15.0 * b
    data[5, 3] = np.nan
    header = nib.cifti2.Cifti2Header.from_axes(
        (SeriesAxis(0, T_R, N_SCANS, unit="second"), axis))
    img = nib.cifti2.Cifti2Image(data.T.astype(np.float32), header)
    img.nifti_header.set_intent("ConnDenseSeries")
    bold = func / "sub-01_task-x_run-1_space-fsLR_den-91k_bold.dtseries.nii"
    nib.save(img, bold)
    bold.with_name(bold.name.replace(".dtseries.nii", ".json")).write_text(json.dumps(
        {"RepetitionTime": T_R, "StartTime": START_TIME, "SliceTimingCorrected": True}))
    return {"raw": raw, "deriv": deriv, "bold": bold, "axis": axis, "a": active_a,
            "b": active_b}


def test_cifti_space_recovers_activations(cifti_tree, tmp_path):
    out = tmp_path / "out"
    code = main([str(cifti_tree["raw"]), str(out), "participant",
                 "--derivatives", str(cifti_tree["deriv"]), "--space", "fsLR",
                 "--no-model-maps", "--plugin", "Linear", "-q", "-w", str(tmp_path / "work")])
    assert code == 0
    func = out / "sub-01" / "func"
    pre = "sub-01_task-x_run-1_space-fsLR_den-91k"
    expected = {f"{pre}_contrast-{c}_stat-{s}_statmap.{e}" for c in ("a", "b") for s in STATS
                for e in ("dscalar.nii", "json")}
    expected |= {f"{pre}_design.tsv", f"{pre}_design.json", f"{pre}_mask.dscalar.nii",
                 f"{pre}_report.html"}
    assert {p.name for p in func.iterdir()} == expected
    z_img = nib.load(func / f"{pre}_contrast-a_stat-z_statmap.dscalar.nii")
    assert z_img.header.get_axis(1) == cifti_tree["axis"]
    z_a = np.asarray(z_img.dataobj)[0]
    z_b = np.asarray(nib.load(func / f"{pre}_contrast-b_stat-z_statmap.dscalar.nii").dataobj)[0]
    a, b = cifti_tree["a"], cifti_tree["b"]
    assert z_a[a].min() > 3 and z_b[b].min() > 3
    rest = ~a & ~b
    rest[5] = False
    assert np.abs(z_a[rest]).mean() < 1.2 and np.abs(z_b[rest]).mean() < 1.2
    thalamus = cifti_tree["axis"].name == "CIFTI_STRUCTURE_THALAMUS_LEFT"
    assert (z_a[thalamus] > 3).all()
    mask = np.asarray(nib.load(func / f"{pre}_mask.dscalar.nii").dataobj)[0]
    assert mask[5] == 0 and mask.sum() == mask.size - 1  # the NaN grayordinate is out
    assert z_a[5] == 0
    meta = json.loads((func / f"{pre}_contrast-a_stat-z_statmap.json").read_text())
    assert meta["SliceTimeRef"] == 0.5 and meta["VolumesExcluded"] == [0]


def test_cifti_options_are_checked(cifti_tree, tmp_path, capsys):
    base = [str(cifti_tree["raw"]), str(tmp_path / "out"), "participant",
            "--derivatives", str(cifti_tree["deriv"])]
    assert main([*base, "--space", "fsLR", "--smoothing-fwhm", "4"]) == 1
    assert "wb_command" in capsys.readouterr().err
    assert main([*base, "--space", "fsLR", "--surface-mask", str(cifti_tree["bold"])]) == 1
    assert "one .dscalar.nii" in capsys.readouterr().err
    assert main([*base, "--space", "MNI152NLin2009cAsym",
                 "--surface-mask", str(cifti_tree["bold"])]) == 1
    assert "volume space" in capsys.readouterr().err
    assert main([*base, "--space", "fsLR:den-170k"]) == 1
    err = capsys.readouterr().err
    assert "den=170k" in err and "space-fsLR task-x" in err


# ------------------------------------------------------------------------------ layout
def test_surface_space_parsing():
    assert space_kind("fsaverage5") == "gifti" and space_kind("fsnative") == "gifti"
    assert space_kind("fsLR:den-91k") == "cifti"
    assert space_kind("MNI152NLin2009cAsym:res-2") == "volume"
    assert parse_surface_space("fsLR:den-91k") == ("fsLR", "cifti", "91k")
    assert parse_surface_space("fsaverage5") == ("fsaverage5", "gifti", None)
    with pytest.raises(ParameterError, match="den-"):
        parse_surface_space("fsaverage5:den-10k")


def test_collect_surface_runs(gifti_tree, cifti_tree, tmp_path):
    runs = collect_runs(gifti_tree["raw"], gifti_tree["deriv"], space=SPACE, run="2")
    assert len(runs) == 1
    run = runs[0]
    assert run.kind == "gifti" and run.mask is None
    assert [p.name for p in run.bold_files] == [f"{_prefix(2, h)}_bold.func.gii"
                                                for h in ("L", "R")]
    assert run.entities == {"sub": "01", "task": "x", "run": "2"}
    assert run.output_entities == {"sub": "01", "task": "x", "run": "2", "space": SPACE}
    assert run.confounds.name == "sub-01_task-x_run-2_desc-confounds_timeseries.tsv"
    assert run.events.name == "sub-01_task-x_run-2_events.tsv"
    assert run.metadata["RepetitionTime"] == T_R and run.metadata["StartTime"] == START_TIME
    (cifti,) = collect_runs(cifti_tree["raw"], cifti_tree["deriv"], space="fsLR")
    assert cifti.kind == "cifti" and cifti.den == "91k"
    assert cifti.output_entities["den"] == "91k"

    # a lone hemisphere is an error, not half an analysis
    import shutil

    deriv = tmp_path / "fmriprep"
    shutil.copytree(gifti_tree["deriv"], deriv)
    (deriv / "sub-01" / "func" / f"{_prefix(1, 'R')}_bold.func.gii").unlink()
    with pytest.raises(InputFileError, match="no other hemisphere"):
        collect_runs(gifti_tree["raw"], deriv, space=SPACE)
    # two densities of one run: choose one
    func = deriv / "sub-01" / "func"
    shutil.copy(cifti_tree["bold"], func / "sub-01_task-x_run-1_space-fsLR_den-91k_bold.dtseries.nii")
    shutil.copy(cifti_tree["bold"], func / "sub-01_task-x_run-1_space-fsLR_den-170k_bold.dtseries.nii")
    with pytest.raises(InputFileError, match="fsLR:den-"):
        collect_runs(gifti_tree["raw"], deriv, space="fsLR")
    assert len(collect_runs(gifti_tree["raw"], deriv, space="fsLR:den-170k")) == 1
    with pytest.raises(InputFileError, match="--output-spaces fsaverage6"):
        collect_runs(gifti_tree["raw"], tmp_path, space="fsaverage6")


def test_embedded_cifti_workflow_without_mask_input(cifti_tree, tmp_path):
    """init_bids_first_level_wf on a CIFTI run, inputnode.mask_files left unset (nilearn's
    finite-values rule), no sink: the outputnode's z map equals the command's."""
    from glmflow.workflows.bids import init_bids_first_level_wf
    from glmflow.workflows.outputs import collect_outputs

    (run,) = collect_runs(cifti_tree["raw"], cifti_tree["deriv"], space="fsLR")
    wf = init_bids_first_level_wf(space_kind="cifti", report=False, model_maps=False)
    wf.inputs.inputnode.bold_files = [[str(run.bold)]]
    wf.inputs.inputnode.confounds_files = [str(run.confounds)]
    wf.inputs.inputnode.events_files = [str(run.events)]
    wf.inputs.inputnode.metadata = [run.metadata]
    wf.base_dir = str(tmp_path / "work")
    out = collect_outputs(wf, wf.run(plugin="Linear"))
    assert out["contrast_names"] == ["a", "b"]
    (z_file,) = out["z_files"][0]
    z = np.asarray(nib.load(z_file).dataobj)[0]
    cli = tmp_path / "cli"
    assert main([str(cifti_tree["raw"]), str(cli), "participant", "--derivatives",
                 str(cifti_tree["deriv"]), "--space", "fsLR", "--no-report", "--no-model-maps",
                 "--plugin", "Linear", "-q", "-w", str(tmp_path / "work2")]) == 0
    written = cli / "sub-01" / "func" / (
        "sub-01_task-x_run-1_space-fsLR_den-91k_contrast-a_stat-z_statmap.dscalar.nii")
    np.testing.assert_array_equal(z, np.asarray(nib.load(written).dataobj)[0])
    assert z[cifti_tree["a"]].min() > 3
    with pytest.raises(ParameterError, match="space_kind"):
        init_bids_first_level_wf(space_kind="surface")


def test_help_explains_surface_spaces():
    from glmflow.cli.bids_app import build_parser

    text = build_parser().format_help()
    for word in ("--surface-mask", "fsaverage5", "fsnative", "fsLR:den-91k", "hemi-L",
                 ".dtseries.nii", ".dscalar.nii", ".func.gii", "nilearn's rule",
                 "no cluster tables"):
        assert word in text, word


def test_fsnative_smoothing_uses_the_subjects_pial_surfaces(tmp_path):
    from argparse import Namespace
    from pathlib import Path

    from glmflow.bids.layout import RunFiles
    from glmflow.cli.bids_app import _surface_mesh

    run = RunFiles(entities={"sub": "01", "task": "x"}, bold=Path("l.func.gii"), mask=None,
                   confounds=Path("c.tsv"), events=Path("e.tsv"), space="fsnative",
                   kind="gifti")
    args = Namespace(derivatives=tmp_path, smoothing_fwhm=5.0)
    with pytest.raises(InputFileError, match="pial surfaces"):
        _surface_mesh(run, args)
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    for hemi in ("R", "L"):
        (anat / f"sub-01_hemi-{hemi}_pial.surf.gii").touch()
    assert [Path(p).name for p in _surface_mesh(run, args)] == [
        "sub-01_hemi-L_pial.surf.gii", "sub-01_hemi-R_pial.surf.gii"]
    assert _surface_mesh(run, Namespace(derivatives=tmp_path, smoothing_fwhm=None)) is None
    template = RunFiles(entities=run.entities, bold=run.bold, mask=None, confounds=run.confounds,
                        events=run.events, space="fsaverage5", kind="gifti")
    assert _surface_mesh(template, args) == "fsaverage5"
