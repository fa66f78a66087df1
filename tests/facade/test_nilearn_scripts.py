"""nilearn scripts run unchanged after ``from glmflow import FirstLevelModel``.

Each script is nilearn tutorial code. It is executed twice, once as written and once with
the import line changed, and every number it produces is compared.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from . import simulate as sim  # noqa: E402
from .conftest import quiet  # noqa: E402

NILEARN_IMPORT = "from nilearn.glm.first_level import FirstLevelModel"
GLMFLOW_IMPORT = "from glmflow import FirstLevelModel"

#: The single-subject, single-run tutorial (nilearn's plot_single_subject_single_run).
SINGLE_RUN_SCRIPT = f'''
{NILEARN_IMPORT}
import matplotlib.pyplot as plt
import numpy as np
from nilearn.glm import threshold_stats_img
from nilearn.plotting import plot_contrast_matrix, plot_design_matrix, plot_stat_map
from nilearn.reporting import get_clusters_table

fmri_glm = FirstLevelModel(
    t_r=t_r,
    noise_model="ar1",
    standardize=False,
    hrf_model="spm",
    drift_model="cosine",
    high_pass=0.01,
)
fmri_glm = fmri_glm.fit(fmri_img, events)
design_matrix = fmri_glm.design_matrices_[0]
plot_design_matrix(design_matrix)
plt.close("all")

conditions = {{"audio": np.zeros(design_matrix.shape[1]),
               "video": np.zeros(design_matrix.shape[1])}}
conditions["audio"][list(design_matrix.columns).index("audio")] = 1
conditions["video"][list(design_matrix.columns).index("video")] = 1
audio_minus_video = conditions["audio"] - conditions["video"]
plot_contrast_matrix(audio_minus_video, design_matrix=design_matrix)
plt.close("all")

eff_map = fmri_glm.compute_contrast(audio_minus_video, output_type="effect_size")
z_map = fmri_glm.compute_contrast(audio_minus_video, output_type="z_score")
plot_stat_map(z_map, threshold=3.0, display_mode="z", cut_coords=3)
plt.close("all")

_, threshold = threshold_stats_img(z_map, alpha=0.001, height_control="fpr")
clean_map, fdr_threshold = threshold_stats_img(
    z_map, alpha=0.05, height_control="fdr", cluster_threshold=2)
table = get_clusters_table(z_map, stat_threshold=3.1, cluster_threshold=2)

effects_of_interest = np.vstack((conditions["audio"], conditions["video"]))
z_map_f = fmri_glm.compute_contrast(effects_of_interest, output_type="z_score")
z_expr = fmri_glm.compute_contrast("audio - motor", stat_type="t")
all_maps = fmri_glm.compute_contrast("audio + video", output_type="all")

results = {{
    "eff_map": eff_map.get_fdata(), "z_map": z_map.get_fdata(),
    "threshold": threshold, "fdr_threshold": fdr_threshold,
    "clean_map": clean_map.get_fdata(), "table": table,
    "z_map_f": z_map_f.get_fdata(), "z_expr": z_expr.get_fdata(),
    "p": all_maps["p_value"].get_fdata(), "columns": list(design_matrix.columns),
    "mask": fmri_glm.masker_.mask_img_.get_fdata(),
}}
'''

#: Multi-run fixed effects with confounds and per-run contrasts (nilearn's
#: plot_fixed_effects and plot_fiac_analysis style).
MULTI_RUN_SCRIPT = f'''
{NILEARN_IMPORT}
import numpy as np
from nilearn.image import mean_img

fmri_glm = FirstLevelModel(t_r=t_r, mask_img=mask, smoothing_fwhm=5,
                           minimize_memory=False, noise_model="ols")
fmri_glm = fmri_glm.fit(fmri_imgs, events=events_list, confounds=confounds_list)
per_run = []
for design in fmri_glm.design_matrices_:
    vector = np.zeros(design.shape[1])
    vector[list(design.columns).index("video")] = 1
    per_run.append(vector)
z_fixed = fmri_glm.compute_contrast(per_run, output_type="z_score")
stat_f = fmri_glm.compute_contrast(np.eye(3, fmri_glm.design_matrices_[0].shape[1]),
                                   output_type="stat")
residual_mean = mean_img(fmri_glm.residuals_[0], copy_header=True)
r2 = fmri_glm.r_square_[1]
results = {{
    "z_fixed": z_fixed.get_fdata(), "stat_f": stat_f.get_fdata(),
    "residuals": fmri_glm.residuals_[0].get_fdata(),
    "residual_mean_shape": residual_mean.shape, "r2": r2.get_fdata(),
    "n_designs": len(fmri_glm.design_matrices_),
}}
'''


def _run_script(text, namespace):
    scope = dict(namespace)
    quiet(exec, compile(text, "<nilearn script>", "exec"), scope)
    return scope["results"]


def _compare(ours, theirs):
    assert ours.keys() == theirs.keys()
    for key, expected in theirs.items():
        got = ours[key]
        if isinstance(expected, pd.DataFrame):
            pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-9)
        elif isinstance(expected, np.ndarray):
            assert got.shape == expected.shape, key
            np.testing.assert_allclose(got, expected, rtol=1e-9,
                                       atol=1e-9 * max(np.abs(expected).max(), 1e-300),
                                       err_msg=key)
        elif isinstance(expected, float):
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), key
        else:
            assert got == expected, key


def test_single_run_tutorial_runs_unchanged():
    events = sim.events(50, 80)
    namespace = {"t_r": 2.0, "fmri_img": sim.bold(50, 80, events_df=events),
                 "events": events}
    theirs = _run_script(SINGLE_RUN_SCRIPT, namespace)
    ours = _run_script(SINGLE_RUN_SCRIPT.replace(NILEARN_IMPORT, GLMFLOW_IMPORT), namespace)
    assert len(theirs["table"]) > 0  # the script finds clusters, so the tables are compared
    _compare(ours, theirs)


def test_multi_run_script_runs_unchanged():
    import nibabel as nib

    events = [sim.events(60 + r, 60) for r in range(2)]
    namespace = {
        "t_r": 2.0,
        "fmri_imgs": [sim.bold(60 + r, 60, events_df=events[r]) for r in range(2)],
        "events_list": events,
        "confounds_list": [sim.confounds(60 + r, 60) for r in range(2)],
        "mask": nib.Nifti1Image(sim.brain_mask().astype(np.uint8), sim.affine()),
    }
    theirs = _run_script(MULTI_RUN_SCRIPT, namespace)
    ours = _run_script(MULTI_RUN_SCRIPT.replace(NILEARN_IMPORT, GLMFLOW_IMPORT), namespace)
    # The residuals are compared as series (to 1e-9 of their largest value), not through
    # their mean over time: with an intercept that mean is zero up to rounding, and
    # rounding noise cannot be compared to a relative tolerance.
    # float32 data: nilearn's OLS R-square is computed in float32 (documented difference)
    np.testing.assert_allclose(ours.pop("r2"), theirs.pop("r2"), rtol=1e-5, atol=1e-7)
    _compare(ours, theirs)
