"""glmflow.core.report: content, numbers and warnings of the HTML report."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm import threshold_stats_img

from glmflow.core.errors import ContrastError, ParameterError
from glmflow.core.report import (
    REPORT_PARAMETERS,
    build_report,
    model_parameters,
    report_from_model,
)

from .conftest import SIM_BLOBS, SIM_RUNS
from .helpers import ReportReader, decode_png, z_peak

SIM_CONTRASTS = {
    "a - b": "a - b",
    "a": "a",
    "effects of interest": {"def": np.array([[1.0, 0.0], [0.0, 1.0]]), "stat_type": "F"},
}


@pytest.fixture(scope="module")
def simulated_report(simulated_model):
    model, _ = simulated_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = report_from_model(model, SIM_CONTRASTS, title="Simulated three runs",
                                   methods_text="Methods first paragraph.\n\nSecond one.")
    return report.html


def test_simulated_report_shows_every_part(simulated_report, simulated_model):
    page = ReportReader(simulated_report)
    assert page.count("design-matrix") == SIM_RUNS
    assert page.count("correlation-matrix") == SIM_RUNS
    assert page.count("contrast-weights") == SIM_RUNS * len(SIM_CONTRASTS)
    assert page.count("mask") == 1
    assert page.count("stat-map") == len(SIM_CONTRASTS)
    assert set(page.tables) == set(SIM_CONTRASTS)
    # the F contrast is labelled as such, the methods paragraphs are kept
    assert "(F test)" in simulated_report and "(t test)" in simulated_report
    assert "<p>Methods first paragraph.</p><p>Second one.</p>" in simulated_report
    assert "<title>Simulated three runs</title>" in simulated_report
    for name in ("nilearn", "numpy", "matplotlib", "glmflow"):
        assert f"<th scope='row'>{name}</th>" in simulated_report
    assert "<th scope='row'>voxels in mask</th><td>7,588</td>" in simulated_report


def test_report_is_self_contained(simulated_report):
    page = ReportReader(simulated_report)
    assert page.scripts == 0
    assert page.links, "no image found"
    for link in page.links:
        assert link.startswith(("data:image/png;base64,", "#")), link[:80]
    for figures in page.figures.values():
        for _, src in figures:
            image = decode_png(src)
            assert image.width > 50 and image.height > 50
    assert "http://" not in simulated_report and "https://" not in simulated_report


def test_top_peaks_match_the_z_maps(simulated_report, simulated_model):
    model, mask = simulated_model
    page = ReportReader(simulated_report)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z_ab = model.compute_contrast("a - b")
        z_a = model.compute_contrast("a")
    xyz, peak = z_peak(z_ab, mask)
    x, y, z, stat = page.top_peak("a - b")
    assert stat == pytest.approx(peak, abs=5e-4)
    assert (x, y, z) == pytest.approx(xyz, abs=0.05)
    # the simulated blob of condition a is where we put it (6 mm voxels)
    assert np.linalg.norm(np.subtract((x, y, z), SIM_BLOBS["a"])) <= 6.0 * np.sqrt(3)
    _, peak_a = z_peak(z_a, mask)
    assert page.top_peak("a")[3] == pytest.approx(peak_a, abs=5e-4)


@pytest.mark.parametrize("height_control,alpha", [("fdr", 0.05), ("bonferroni", 0.05),
                                                  (None, 0.001)])
def test_threshold_shown_is_nilearns(simulated_model, height_control, alpha):
    model, mask = simulated_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z_map = model.compute_contrast("a - b")
        _, expected = threshold_stats_img(z_map, mask_img=mask, alpha=alpha,
                                          threshold=4.2 if height_control is None else None,
                                          height_control=height_control, two_sided=False)
    html = build_report(
        design_matrices=model.design_matrices_[:1], contrasts={"a - b": "a - b"},
        z_maps={"a - b": z_map}, mask_img=mask, height_control=height_control, alpha=alpha,
        threshold=4.2, plot_type="glass", bg_img=None,
    )
    assert f"<th scope='row'>Threshold (z)</th><td>{expected:.3f}</td>" in html
    page = ReportReader(html)
    assert page.count("stat-map") == 1
    # every listed peak is above the threshold
    rows = page.tables["a - b"][1:]
    assert rows and all(float(row[4]) > expected for row in rows)


def _tiny_inputs():
    rng = np.random.default_rng(0)
    n = 40
    base = rng.standard_normal(n)
    design = pd.DataFrame({
        "a": base,
        "a_copy": base + 0.05 * rng.standard_normal(n),  # r > 0.99 with a
        "b": rng.standard_normal(n),
        "twice_b": None,
        "constant": np.ones(n),
    })
    design["twice_b"] = 2 * design["b"]  # exact collinearity: rank deficient
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = -40.0
    mask = nib.Nifti1Image(np.ones((20, 20, 20), np.uint8), affine)
    z_map = nib.Nifti1Image(rng.standard_normal((20, 20, 20)) * 0.5, affine)
    return design, mask, z_map


def test_warnings_are_shown():
    design, mask, z_map = _tiny_inputs()
    html = build_report(design_matrices=[design], contrasts={"a": "a"}, z_maps={"a": z_map},
                        mask_img=mask, bg_img=None, height_control="bonferroni")
    page = ReportReader(html)
    text = " ".join(page.warnings)
    assert "rank deficient (rank 4 for 5 columns)" in text
    assert "regressors a and a_copy are highly correlated (r = 0.99" in text
    assert "regressors b and twice_b are highly correlated (r = 1.000)" in text
    assert "Contrast a: no voxel survives" in text
    assert "warning(s) worth a look" in html
    # nothing survives: no stat map, and the table says so
    assert page.count("stat-map") == 0
    assert "cluster-table-empty" in html


def test_report_is_deterministic():
    design, mask, z_map = _tiny_inputs()
    z_map = nib.Nifti1Image(np.asanyarray(z_map.dataobj) * 10, z_map.affine)
    kwargs = {"design_matrices": [design], "contrasts": {"a": [1, 0, 0, 0, 0]},
              "z_maps": {"a": z_map}, "mask_img": mask, "bg_img": None,
              "versions": {"numpy": "x"}}
    first, second = build_report(**kwargs), build_report(**kwargs)
    assert first == second
    assert ReportReader(first).count("stat-map") == 1
    assert "<code>[1.0, 0.0, 0.0, 0.0, 0.0]</code>" in first


@pytest.mark.parametrize("options,word", [
    ({"plot_type": "surface"}, "plot_type"),
    ({"height_control": "holm"}, "height_control"),
    ({"cluster_threshold": -3}, "cluster_threshold"),
    ({"report_dims": (0, 10)}, "report_dims"),
])
def test_bad_options_raise_before_work(options, word):
    design, mask, z_map = _tiny_inputs()
    with pytest.raises(ParameterError, match=word):
        build_report(design_matrices=[design], contrasts={"a": "a"}, z_maps={"a": z_map},
                     mask_img=mask, **options)


def test_contrast_errors_name_the_contrast():
    design, mask, z_map = _tiny_inputs()
    with pytest.raises(ContrastError, match="'x'"):
        build_report(design_matrices=[design], contrasts={"x": "nope - a"},
                     z_maps={"x": z_map}, mask_img=mask, bg_img=None)
    with pytest.raises(ContrastError, match="No contrast definition"):
        build_report(design_matrices=[design], contrasts={}, z_maps={"y": z_map},
                     mask_img=mask, bg_img=None)


def test_model_parameters_follow_nilearns_selection():
    params = model_parameters(noise_model="ar1", t_r=2.0, hrf_model="spm",
                              drift_model="cosine", high_pass=0.01, drift_order=1,
                              fir_delays=(0, 1), target_affine=None, signal_scaling=(0, 1))
    assert list(params) == ["drift_model", "high_pass", "hrf_model", "noise_model",
                            "signal_scaling", "t_r"]
    assert params["signal_scaling"] == [0, 1]
    fir = model_parameters(hrf_model="fir", fir_delays=(0, 1), drift_model="polynomial",
                           drift_order=2, high_pass=0.01)
    assert fir == {"drift_model": "polynomial", "drift_order": 2, "fir_delays": [0, 1],
                   "hrf_model": "fir"}
    assert "subject_label" in REPORT_PARAMETERS
    with pytest.raises(ParameterError, match="bogus"):
        model_parameters(bogus=1)


def test_surface_maps_give_a_report_without_volume_figures(tmp_path):
    """GIFTI maps: no slices or cluster tables, but design, warnings and extreme values."""
    design, _, _ = _tiny_inputs()
    values = np.linspace(-2.0, 5.0, 100).astype(np.float32)
    z_file = tmp_path / "z.func.gii"
    mask_file = tmp_path / "mask.func.gii"
    nib.save(nib.GiftiImage(darrays=[nib.gifti.GiftiDataArray(values)]), z_file)
    nib.save(nib.GiftiImage(darrays=[nib.gifti.GiftiDataArray(
        (values > -1).astype(np.float32))]), mask_file)
    html = build_report(design_matrices=[design], contrasts={"a": "a"},
                        z_maps={"a": str(z_file)}, mask_img=str(mask_file))
    page = ReportReader(html)
    assert page.count("design-matrix") == 1 and page.count("stat-map") == 0
    assert "Largest z: 5.000; smallest z: -2.000." in html
    assert int((values > -1).sum()) == 85
    assert "<th scope='row'>elements in mask</th><td>85</td>" in html
    assert any("rank deficient" in w for w in page.warnings)
