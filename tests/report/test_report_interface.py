"""GLMReport (files in, report out) and the workflow give the facade's report, byte for byte."""

import json
import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from glmflow.core.design import save_design
from glmflow.core.errors import ParameterError
from glmflow.core.io import save_img
from glmflow.core.report import model_parameters, report_from_model
from glmflow.interfaces.report import GLMReport, decode_contrasts, encode_contrasts

from .helpers import ReportReader, z_peak

CONTRASTS = {
    "a - b": "a - b",
    "b": [0.0, 1.0],
    "effects": {"def": [[1.0, 0.0], [0.0, 1.0]], "stat_type": "F"},
}
# the same contrasts in the forms nilearn's own compute_contrast takes
NILEARN_CONTRASTS = {
    "a - b": "a - b",
    "b": np.array([0.0, 1.0]),
    "effects": {"def": np.array([[1.0, 0.0], [0.0, 1.0]]), "stat_type": "F"},
}
WF_OPTIONS = {"hrf_model": "spm", "noise_model": "ar1", "drift_model": "cosine",
              "high_pass": 0.01}


def _facade_report(model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return report_from_model(model, NILEARN_CONTRASTS, title="sim", **kwargs).html


def test_contrasts_json_round_trip():
    decoded = decode_contrasts(encode_contrasts(CONTRASTS))
    assert list(decoded) == list(CONTRASTS)
    assert decoded["a - b"] == {"def": "a - b", "stat_type": None}
    np.testing.assert_array_equal(decoded["b"]["def"], [0.0, 1.0])
    assert decoded["effects"]["stat_type"] == "F"
    np.testing.assert_array_equal(decoded["effects"]["def"], np.eye(2))
    per_run = decode_contrasts(encode_contrasts({"x": ["a", "b", "a - b"]}))["x"]["def"]
    assert per_run == ["a", "b", "a - b"]


def test_interface_gives_the_facade_report(simulated_model, tmp_path, monkeypatch):
    model, mask = simulated_model
    designs = [save_design(d, tmp_path / f"run-{i}_design.tsv")
               for i, d in enumerate(model.design_matrices_, start=1)]
    mask_file = save_img(model.masker_.mask_img_, tmp_path / "mask.nii.gz")
    z_files = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, definition in enumerate(NILEARN_CONTRASTS.values()):
            stat_type = definition.get("stat_type") if isinstance(definition, dict) else None
            definition = definition["def"] if isinstance(definition, dict) else definition
            z_img = model.compute_contrast(definition, stat_type=stat_type)
            z_files.append(save_img(z_img, tmp_path / f"contrast-{i}_z.nii.gz"))
    methods = "Models were fitted.\n\nContrasts were computed."
    params = model_parameters(**{k: v for k, v in model.get_params().items()
                                 if k in ("t_r", "hrf_model", "noise_model")})
    monkeypatch.chdir(tmp_path)
    node = GLMReport(design_files=designs, mask_file=mask_file, z_files=z_files,
                     contrast_names=list(CONTRASTS), contrasts=encode_contrasts(CONTRASTS),
                     parameters=json.dumps(params), methods=methods, title="sim")
    result = node.run()
    html = open(result.outputs.report_file, encoding="utf-8").read()
    expected = _facade_report(model, parameters=params, methods_text=methods)
    assert html == expected
    page = ReportReader(html)
    assert page.count("stat-map") == 3 and page.count("design-matrix") == 3
    _, peak = z_peak(nib.load(z_files[0]), mask)
    assert page.top_peak("a - b")[3] == pytest.approx(peak, abs=5e-4)


def test_interface_checks_alignment(simulated_model, tmp_path, monkeypatch):
    model, _ = simulated_model
    design = save_design(model.design_matrices_[0], tmp_path / "design.tsv")
    mask_file = save_img(model.masker_.mask_img_, tmp_path / "mask.nii.gz")
    monkeypatch.chdir(tmp_path)
    node = GLMReport(design_files=[design], mask_file=mask_file, z_files=[mask_file],
                     contrast_names=["a", "b"], contrasts=encode_contrasts({"a": "a"}))
    with pytest.raises(ParameterError, match="1 z maps for 2 contrast names"):
        node.run()
    node = GLMReport(design_files=[design], mask_file=mask_file, z_files=[mask_file],
                     contrast_names=["b"], contrasts=encode_contrasts({"a": "a"}))
    with pytest.raises(ParameterError, match=r"no definition for contrast\(s\) \['b'\]"):
        node.run()


def _write_study(study, folder):
    folder.mkdir(parents=True, exist_ok=True)
    bold, events = [], []
    for run, (img, frame) in enumerate(zip(study["runs"], study["events"], strict=True), 1):
        bold.append(str(folder / f"sub-01_run-{run}_bold.nii.gz"))
        nib.save(img, bold[-1])
        events.append(str(folder / f"sub-01_run-{run}_events.tsv"))
        frame.to_csv(events[-1], sep="\t", index=False)
    mask = str(folder / "mask.nii.gz")
    nib.save(study["mask"], mask)
    return bold, events, mask


@pytest.fixture(scope="module")
def workflow_run(simulated_study, tmp_path_factory):
    """init_first_level_wf (with its GLMReport step) run on the simulated study."""
    from glmflow.execution import run_workflow
    from glmflow.workflows.first_level import init_first_level_wf
    from glmflow.workflows.outputs import collect_outputs

    folder = tmp_path_factory.mktemp("workflow_report")
    bold, events, mask = _write_study(simulated_study, folder / "data")
    wf = init_first_level_wf(t_r=simulated_study["t_r"], contrasts=CONTRASTS, **WF_OPTIONS)
    wf.inputs.inputnode.bold_files = bold
    wf.inputs.inputnode.events_files = events
    wf.inputs.inputnode.mask_file = mask
    wf.get_node("report").inputs.title = "sim"
    outputs = collect_outputs(wf, run_workflow(wf, base_dir=folder / "work"))
    html = open(outputs["report_file"], encoding="utf-8").read()
    return {"html": html, "outputs": outputs, "desc": wf.__desc__, "bold": bold,
            "events": events, "mask": mask}


def test_workflow_gives_the_nilearn_model_report(workflow_run, simulated_study,
                                                 simulated_model):
    """The workflow's report equals report_from_model on nilearn's own fit, byte for byte:
    glmflow's fit, design and mask against nilearn's, same parameters and methods."""
    model, _ = simulated_model
    html = workflow_run["html"]
    expected = _facade_report(model, methods_text=workflow_run["desc"])
    page, reference = ReportReader(html), ReportReader(expected)
    assert page.tables == reference.tables  # the numbers first, for a readable failure
    assert page.warnings == reference.warnings
    assert html == expected
    _, peak = z_peak(nib.load(workflow_run["outputs"]["z_files"][0]), simulated_study["mask"])
    assert page.top_peak("a - b")[3] == pytest.approx(peak, abs=5e-4)


def test_workflow_and_facade_give_the_same_report(workflow_run):
    """glmflow.FirstLevelModel.generate_report and the workflow's report step agree."""
    from glmflow import FirstLevelModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = FirstLevelModel(t_r=2.0, mask_img=workflow_run["mask"], **WF_OPTIONS).fit(
            workflow_run["bold"], events=workflow_run["events"])
        # the methods text is the workflow's (the facade's own may be built for another
        # contrast list); everything else must come out identical
        model.methods_text = workflow_run["desc"]
        report = model.generate_report(contrasts=NILEARN_CONTRASTS, title="sim")
    html = getattr(report, "html", None) or str(report)
    page, reference = ReportReader(html), ReportReader(workflow_run["html"])
    assert page.tables == reference.tables
    assert html == workflow_run["html"]


def test_workflow_without_report(simulated_study):
    from glmflow.workflows.first_level import init_first_level_wf

    wf = init_first_level_wf(t_r=simulated_study["t_r"], contrasts=CONTRASTS, report=False)
    assert wf.get_node("report") is None
    assert init_first_level_wf(t_r=2.0, contrasts=CONTRASTS).get_node("report") is not None


def test_design_files_round_trip_exactly(simulated_model, tmp_path):
    from glmflow.core.design import load_design

    design = simulated_model[0].design_matrices_[0]
    back = load_design(save_design(design, tmp_path / "d.tsv"))
    pd.testing.assert_frame_equal(back, design, check_names=False, check_index_type=False,
                                  check_freq=False, rtol=0, atol=0)


def test_interface_passes_threshold_options(tmp_path, monkeypatch):
    from .test_report_build import _tiny_inputs

    design, mask, z_map = _tiny_inputs()
    z_map = nib.Nifti1Image(np.asanyarray(z_map.dataobj) * 12, z_map.affine)
    files = {"design": save_design(design, tmp_path / "design.tsv"),
             "mask": save_img(mask, tmp_path / "mask.nii.gz"),
             "z": save_img(z_map, tmp_path / "z.nii.gz")}
    monkeypatch.chdir(tmp_path)
    node = GLMReport(design_files=[files["design"]], mask_file=files["mask"],
                     z_files=[files["z"]], contrast_names=["a"],
                     contrasts=encode_contrasts({"a": "a"}), height_control=None,
                     threshold=5.0, plot_type="glass", bg_img="", two_sided=True,
                     max_clusters=3, out_name="sub-01_report.html")
    report_file = node.run().outputs.report_file
    assert report_file.endswith("sub-01_report.html")
    html = open(report_file, encoding="utf-8").read()
    assert "<th scope='row'>Threshold (z)</th><td>5.000</td>" in html
    assert "<th scope='row'>Two sided</th><td>yes</td>" in html
    rows = ReportReader(html).tables["a"][1:]
    peaks = [float(row[4]) for row in rows]
    assert all(abs(p) > 5.0 for p in peaks) and min(peaks) < 0 < max(peaks)
    main_rows = [row for row in rows if not row[0][-1].isalpha()]
    assert len(main_rows) <= 6  # at most 3 clusters per sign
