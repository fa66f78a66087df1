"""glmflow.core.thresholds against nilearn's threshold_stats_img / get_clusters_table."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm import threshold_stats_img
from nilearn.reporting import get_clusters_table
from scipy.stats import norm

from glmflow.core.errors import ParameterError
from glmflow.core.thresholds import check_threshold_options, cluster_table, threshold_map


def _noise_img(seed=0, shape=(24, 24, 24)):
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape)
    data[4:8, 4:8, 4:8] += 6.0  # a positive cluster
    data[14:18, 14:18, 14:18] -= 6.0  # a negative one
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = -36.0
    return nib.Nifti1Image(data, affine)


@pytest.mark.parametrize("height_control,alpha,two_sided", [
    ("fpr", 0.001, False), ("fpr", 0.01, True), ("fdr", 0.05, False),
    ("bonferroni", 0.05, True), (None, 0.001, False),
])
def test_threshold_map_is_nilearns(height_control, alpha, two_sided):
    img = _noise_img()
    ours = threshold_map(img, alpha=alpha, threshold=3.5, height_control=height_control,
                         two_sided=two_sided)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_img, ref_threshold = threshold_stats_img(
            img, alpha=alpha, threshold=3.5 if height_control is None else None,
            height_control=height_control, two_sided=two_sided)
    assert ours.threshold == pytest.approx(float(ref_threshold), abs=1e-12)
    np.testing.assert_array_equal(np.asanyarray(ours.thresholded_img.dataobj),
                                  np.asanyarray(ref_img.dataobj))
    assert ours.n_voxels == np.count_nonzero(np.asanyarray(ref_img.dataobj))


def test_threshold_values_are_analytic():
    img = _noise_img()
    n_voxels = np.prod(img.shape)
    assert threshold_map(img, alpha=0.001).threshold == pytest.approx(norm.isf(0.001))
    assert threshold_map(img, alpha=0.001, two_sided=True).threshold == pytest.approx(
        norm.isf(0.0005))
    assert threshold_map(img, alpha=0.05, height_control="bonferroni").threshold == \
        pytest.approx(norm.isf(0.05 / n_voxels))
    # the threshold argument only counts when height_control is None (nilearn's rule)
    assert threshold_map(img, threshold=2.0, height_control="fpr").threshold == \
        pytest.approx(3.0902323, abs=1e-6)
    assert threshold_map(img, threshold=2.0, height_control=None).threshold == 2.0


def test_empty_result_and_description():
    img = nib.Nifti1Image(np.random.default_rng(1).standard_normal((10, 10, 10)) * 0.1,
                          np.eye(4))
    result = threshold_map(img, alpha=0.05, height_control="fdr")
    assert result.empty and result.n_voxels == 0
    assert "fdr, alpha = 0.05" in result.describe()
    table, n_clusters = cluster_table(result)
    assert n_clusters == 0 and table.empty
    assert list(table.columns) == ["Cluster ID", "X", "Y", "Z", "Peak Stat",
                                   "Cluster Size (mm3)"]


@pytest.mark.parametrize("two_sided", [False, True])
def test_cluster_table_is_nilearns(two_sided):
    img = _noise_img(seed=3)
    result = threshold_map(img, alpha=0.01, two_sided=two_sided)
    ours, n_clusters = cluster_table(result, min_distance=6.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = get_clusters_table(result.thresholded_img, result.threshold,
                                 two_sided=two_sided, min_distance=6.0)
    pd.testing.assert_frame_equal(ours.reset_index(drop=True), ref.reset_index(drop=True))
    assert n_clusters == sum(str(c).isdigit() for c in ref["Cluster ID"])
    top = ours.iloc[0]
    data = img.get_fdata()
    assert top["Peak Stat"] == pytest.approx(data.max())
    ijk = np.unravel_index(np.argmax(data), data.shape)
    assert [top["X"], top["Y"], top["Z"]] == pytest.approx(list(img.affine[:3, :3] @ ijk
                                                                + img.affine[:3, 3]))


@pytest.mark.parametrize("two_sided", [False, True])
def test_max_clusters_keeps_nilearns_first_rows(two_sided):
    # many small clusters: the truncated table must be the head of nilearn's full table
    img = _noise_img(seed=5, shape=(30, 30, 30))
    result = threshold_map(img, alpha=0.05, two_sided=two_sided)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = get_clusters_table(result.thresholded_img, result.threshold,
                                  two_sided=two_sided, min_distance=8.0)
    ids = [str(c) for c in full["Cluster ID"]]
    n_full = sum(c.isdigit() for c in ids)
    kept, n_clusters = cluster_table(result, min_distance=8.0, max_clusters=5)
    assert n_clusters == n_full > 12
    numbers = np.array([int(c.rstrip("abc")) for c in ids])
    positive = full["Peak Stat"].to_numpy(dtype=float) > 0
    # nilearn numbers negative clusters on from the number of positive rows
    first_negative = numbers[~positive].min() if (~positive).any() else 0
    expected = full[(positive & (numbers <= 5))
                    | (~positive & (numbers < first_negative + 5))].reset_index(drop=True)
    kept = kept.reset_index(drop=True)
    columns = ["X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]
    pd.testing.assert_frame_equal(kept[columns], expected[columns], check_dtype=False)
    kept_positive = kept["Peak Stat"].to_numpy(dtype=float) > 0
    assert list(kept["Cluster ID"][kept_positive]) == list(
        expected["Cluster ID"][kept_positive])
    assert (~kept_positive).any() == two_sided


@pytest.mark.parametrize("options,word", [
    ({"height_control": "holm"}, "height_control"),
    ({"cluster_threshold": -1}, "cluster_threshold"),
    ({"min_distance": -2.0}, "min_distance"),
    ({"plot_type": "surface"}, "plot_type"),
    ({"alpha": 1.5}, "alpha"),
])
def test_bad_options_are_named(options, word):
    with pytest.raises(ParameterError, match=word):
        check_threshold_options(**options)
