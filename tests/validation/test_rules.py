"""The documented rules: cleaned values, and the cases where nilearn returns wrong numbers."""

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.contrasts import expression_to_contrast_vector
from nilearn.glm.first_level import make_first_level_design_matrix
from nilearn.glm.regression import OLSModel

from glmflow.core import validation as V
from glmflow.core.errors import ContrastError, EventsError, SampleMaskError

N, TR = 60, 2.0
FRAME_TIMES = np.arange(N) * TR


def nilearn_design(events, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_first_level_design_matrix(FRAME_TIMES, events, **kwargs)


BASE = pd.DataFrame(
    {
        "onset": [10.0, 40.0, 70.0, 25.0, 55.0, 85.0],
        "duration": [3.0] * 6,
        "trial_type": ["audio", "audio", "audio", "video", "video", "video"],
    }
)


# --------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given, expected",
    [
        ("glover", "glover"),
        ("SPM", "spm"),
        ("spm+derivative", "spm + derivative"),
        ("Glover + Derivative + Dispersion", "glover + derivative + dispersion"),
        ("FIR", "fir"),
        (None, None),
    ],
)
def test_hrf_model_spelling(given, expected):
    assert V.check_hrf_model(given) == expected


def test_normalised_parameters():
    params = V.check_model_parameters(
        t_r=2,
        slice_time_ref=1,
        hrf_model="SPM",
        drift_model="Polynomial",
        drift_order=3.0,
        fir_delays=None,
        smoothing_fwhm=0,
        signal_scaling=[0, 1],
        noise_model=" AR2 ",
        n_scans=100,
    )
    assert params == {
        "t_r": 2.0,
        "slice_time_ref": 1.0,
        "hrf_model": "spm",
        "drift_model": "polynomial",
        "high_pass": 0.01,
        "drift_order": 3,
        "fir_delays": [0],
        "min_onset": -24.0,
        "smoothing_fwhm": None,
        "signal_scaling": (0, 1),
        "standardize": False,
        "noise_model": "ar2",
    }
    assert V.check_drift("none", 0.01, 1) == (None, 0.01, 1)
    assert V.check_fir_delays((2.0, 0, 5)) == [2, 0, 5]
    assert V.check_fir_delays(3) == [3]
    assert V.check_smoothing_fwhm((0, 0, 0)) is None
    assert V.check_smoothing_fwhm((4, 4, 6)) == (4.0, 4.0, 6.0)
    assert V.check_signal_scaling(False) is False
    assert V.check_signal_scaling(0) == 0 and V.check_signal_scaling(1) == 1


def test_high_pass_longer_than_run_warns_and_matches_nilearn_column_count():
    n_scans = 20  # 40 s run, high_pass period 100 s -> no cosine regressor
    with pytest.warns(UserWarning, match="longer than the run"):
        V.check_drift("cosine", 0.01, 1, n_scans, TR)
    design = make_first_level_design_matrix(np.arange(n_scans) * TR, high_pass=0.01)
    assert list(design.columns) == ["constant"]


def test_largest_valid_high_pass_leaves_one_dof():
    # the message's bound: any cut-off below (n-1)/(2 n t_r) is accepted
    n_scans = 10
    bound = (n_scans - 1) / (2 * n_scans * TR)
    V.check_drift("cosine", bound * 0.999, 1, n_scans, TR)
    design = make_first_level_design_matrix(np.arange(n_scans) * TR, high_pass=bound * 0.999)
    assert design.shape[1] == n_scans - 1


def test_fir_delays_ignored_warning():
    with pytest.warns(UserWarning, match="ignored"):
        assert V.check_fir_delays([1, 2], hrf_model="glover") == [1, 2]


# --------------------------------------------------------------------------------------
# events
# --------------------------------------------------------------------------------------
def test_events_defaults_like_nilearn():
    frame = pd.DataFrame({"onset": [1.0, 5.0], "duration": [0.5, 1], "response_time": [1, 2]})
    with pytest.warns(UserWarning) as record:
        cleaned = V.check_events(frame)
    messages = " ".join(str(w.message) for w in record)
    assert "'dummy'" in messages and "response_time" in messages
    assert list(cleaned.columns) == ["onset", "duration", "trial_type", "modulation"]
    assert cleaned["trial_type"].tolist() == ["dummy", "dummy"]
    assert cleaned["modulation"].tolist() == [1.0, 1.0]
    assert cleaned["duration"].dtype == np.float64
    # the design nilearn builds from the cleaned table is the one it builds from the raw one
    pd.testing.assert_frame_equal(nilearn_design(cleaned), nilearn_design(frame))


def test_events_from_tsv_with_numeric_trial_types(tmp_path):
    path = tmp_path / "sub-01_task-x_events.tsv"
    path.write_text("onset\tduration\ttrial_type\tmodulation\n2\t1\t1\t0.5\n8\tn/a\t2\t1\n")
    with pytest.raises(EventsError, match="'duration' column in .*sub-01_task-x_events.tsv"):
        V.check_events(path)
    path.write_text("onset\tduration\ttrial_type\tmodulation\n2\t1\t1\t0.5\n8\t0\t2\t1\n")
    cleaned = V.check_events(path)
    assert cleaned["trial_type"].tolist() == ["1", "2"]
    assert cleaned["modulation"].tolist() == [0.5, 1.0]


def test_events_after_the_run_are_dropped_with_nilearns_numbers():
    late = pd.concat(
        [
            BASE,
            pd.DataFrame(
                {"onset": [N * TR, N * TR + 30], "duration": [5.0, 1], "trial_type": "audio"}
            ),
        ]
    )
    with pytest.warns(UserWarning, match="after the end of the run"):
        cleaned = V.check_events(late, n_scans=N, t_r=TR)
    assert len(cleaned) == len(BASE)
    # those events cannot change any scan: nilearn's design is the same bit for bit
    pd.testing.assert_frame_equal(nilearn_design(cleaned), nilearn_design(late), check_exact=True)


def test_events_before_min_onset_are_dropped_not_a_spike():
    early = pd.concat(
        [BASE, pd.DataFrame({"onset": [-30.0], "duration": [0.0], "trial_type": ["audio"]})]
    )
    with pytest.warns(UserWarning, match="start before -24 s"):
        cleaned = V.check_events(early, n_scans=N, t_r=TR, min_onset=-24)
    assert cleaned["onset"].min() == 10.0
    ours = nilearn_design(cleaned)
    theirs = nilearn_design(early)
    # nilearn says such events "are not considered" but models them as a spike at -24 s
    assert np.abs(theirs["audio"] - ours["audio"]).max() > 1e-6
    pd.testing.assert_frame_equal(ours, nilearn_design(BASE), check_exact=True)


def test_min_onset_is_relative_to_slice_time_ref():
    frame = pd.DataFrame({"onset": [-23.5, 10.0], "duration": [1.0, 1.0], "trial_type": "a"})
    kept = V.check_events(frame, n_scans=N, t_r=TR, min_onset=-24, slice_time_ref=0.0)
    assert len(kept) == 2
    with pytest.warns(UserWarning, match="start before -23 s"):
        kept = V.check_events(frame, n_scans=N, t_r=TR, min_onset=-24, slice_time_ref=0.5)
    assert kept["onset"].tolist() == [10.0]


def test_condition_after_end_is_an_error_because_nilearn_corrupts_the_design():
    late = pd.concat(
        [BASE, pd.DataFrame({"onset": [200.0, 300.0], "duration": 1.0, "trial_type": "late"})]
    )
    with pytest.raises(EventsError, match="'late'"), pytest.warns(UserWarning, match="dropped"):
        V.check_events(late, n_scans=N, t_r=TR)
    # nilearn keeps an (almost) all-zero regressor and regularises the whole design,
    # which changes the other conditions' regressors too
    theirs = nilearn_design(late)
    reference = nilearn_design(BASE)
    assert np.abs(theirs["late"]).max() < 1e-12
    assert not np.array_equal(theirs["audio"].to_numpy(), reference["audio"].to_numpy())


# --------------------------------------------------------------------------------------
# confounds
# --------------------------------------------------------------------------------------
def test_confounds_first_row_fill_is_nilearns_load_confounds_rule():
    from nilearn.interfaces.fmriprep.load_confounds_utils import prepare_output

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(rng.normal(size=(N, 3)), columns=["trans_x", "trans_x_derivative1", "fd"])
    frame.loc[0, ["trans_x_derivative1", "fd"]] = np.nan
    ours = V.check_confounds(frame, n_scans=N)
    _, theirs = prepare_output(frame.copy(), demean=False)
    np.testing.assert_array_equal(ours.to_numpy(), theirs[ours.columns].to_numpy())
    assert not ours.isna().any().any()


def test_several_leading_nans_take_the_first_valid_value():
    values = np.r_[np.nan, np.nan, np.nan, np.arange(1.0, N - 2)]
    cleaned = V.check_confounds(pd.DataFrame({"x": values, "y": np.arange(N) ** 2.0}))
    np.testing.assert_array_equal(cleaned["x"].to_numpy()[:4], [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(cleaned["x"].to_numpy()[3:], values[3:])


def test_confounds_from_array_and_tsv(tmp_path):
    array = np.random.default_rng(0).normal(size=(N, 2))
    cleaned = V.check_confounds(array, n_scans=N)
    assert list(cleaned.columns) == ["confound_0", "confound_1"]
    np.testing.assert_array_equal(cleaned.to_numpy(), array)
    one = V.check_confounds(array[:, 0], n_scans=N)
    assert one.shape == (N, 1)
    path = tmp_path / "desc-confounds_timeseries.tsv"
    path.write_text("framewise_displacement\tcsf\nn/a\t1.5\n0.2\t1.25\n0.1\t1.0\n")
    cleaned = V.check_confounds(path, n_scans=3)
    np.testing.assert_array_equal(cleaned["framewise_displacement"], [0.2, 0.2, 0.1])


def test_constant_confound_warns():
    frame = pd.DataFrame({"x": np.arange(N, dtype=float), "one": 3.0})
    with pytest.warns(UserWarning, match="'one'.*constant"):
        cleaned = V.check_confounds(frame)
    assert (cleaned["one"] == 3.0).all()


# --------------------------------------------------------------------------------------
# sample masks
# --------------------------------------------------------------------------------------
def test_sample_mask_forms():
    boolean = np.ones(N, bool)
    boolean[[0, 1, 7]] = False
    expected = np.delete(np.arange(N), [0, 1, 7])
    np.testing.assert_array_equal(V.check_sample_mask(boolean, n_scans=N), expected)
    np.testing.assert_array_equal(V.check_sample_mask(list(expected), n_scans=N), expected)
    np.testing.assert_array_equal(V.check_sample_mask(expected.astype(float), n_scans=N), expected)
    np.testing.assert_array_equal(V.check_sample_mask(None, n_scans=N), np.arange(N))
    kept = V.check_sample_mask(np.arange(7), n_scans=N, n_regressors=6)
    assert kept.size == 7


def test_nilearn_reorders_and_repeats_scans_we_refuse():
    from nilearn._utils.param_validation import check_run_sample_masks

    unsorted = np.array([0, 5, 2, 7])
    duplicated = np.array([1, 2, 2, 3])
    # nilearn passes them through, so design.iloc[mask] reorders / repeats scans
    np.testing.assert_array_equal(check_run_sample_masks(1, unsorted)[0], unsorted)
    np.testing.assert_array_equal(check_run_sample_masks(1, duplicated)[0], duplicated)
    for mask in (unsorted, duplicated):
        with pytest.raises(SampleMaskError):
            V.check_sample_mask(mask, n_scans=N)


# --------------------------------------------------------------------------------------
# design
# --------------------------------------------------------------------------------------
def _rank_deficient_design():
    events = pd.concat([BASE, BASE.assign(trial_type=BASE["trial_type"] + "_copy")])
    return nilearn_design(events)


def test_rank_deficient_design_warns_and_gives_scans_minus_rank():
    design = _rank_deficient_design()  # audio == audio_copy, video == video_copy
    n_scans, n_columns = design.shape
    with pytest.warns(UserWarning, match="rank-deficient") as record:
        checked = V.check_design(design)
    message = str(record[0].message)
    assert "{audio, audio_copy}" in message and "{video, video_copy}" in message
    assert f"are {n_scans - (n_columns - 2)} (scans - rank)" in message
    np.testing.assert_array_equal(checked.to_numpy(), design.to_numpy())
    assert V.design_rank(design) == n_columns - 2


def test_dof_of_rank_deficient_design_is_scans_minus_rank():
    from nilearn.glm._utils import full_rank

    spike = np.zeros(N)
    spike[10] = 1.0  # e.g. motion_outlier03 and non_steady_state_outlier00 on the same scan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # what make_first_level_design_matrix does to a singular design
        regularised, _ = full_rank(np.c_[spike, spike])
    design = pd.DataFrame(regularised, columns=["motion_outlier03", "non_steady_state_outlier00"])
    with pytest.warns(UserWarning, match=r"\{motion_outlier03, non_steady_state_outlier00\}"):
        V.check_design(design)
    assert V.design_rank(design) == 1
    assert V.design_rank(np.c_[spike, spike]) == 1
    # nilearn counts N - 2 residual degrees of freedom for it, instead of N - 1
    assert OLSModel(regularised).df_residuals == N - 2


def test_collinear_columns_groups():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.normal(size=(30, 3)), columns=["a", "b", "c"])
    frame["sum"] = frame["a"] + 2 * frame["b"]
    frame["zero"] = 0.0
    frame["constant"] = 1.0
    groups = V.collinear_columns(frame)
    assert sorted(map(sorted, groups)) == [["a", "b", "sum"], ["zero"]]
    assert V.collinear_columns(frame[["a", "b", "c", "constant"]]) == []
    assert V.design_rank(frame) == 4


def test_full_rank_design_passes_unchanged():
    design = nilearn_design(BASE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checked = V.check_design(design, n_scans=N)
    pd.testing.assert_frame_equal(checked, design.astype(np.float64), check_exact=True)


# --------------------------------------------------------------------------------------
# contrasts
# --------------------------------------------------------------------------------------
def test_contrast_forms():
    columns = ["audio", "video", "drift_1", "constant"]
    vec, stat = V.check_contrast("audio - video", columns)
    assert stat == "t"
    np.testing.assert_array_equal(vec, expression_to_contrast_vector("audio - video", columns))
    mat, stat = V.check_contrast([[1, 0, 0, 0], [0, 1, 0, 0]], columns)
    assert stat == "F" and mat.shape == (2, 4)
    vec, stat = V.check_contrast([[1, -1, 0, 0]], columns)
    assert stat == "t" and vec.shape == (4,)
    mat, stat = V.check_contrast([1, -1, 0, 0], columns, "F")
    assert stat == "F" and mat.shape == (1, 4)


def test_short_contrast_is_padded_like_nilearn():
    from nilearn.glm._utils import pad_contrast

    columns = ["audio", "video", "drift_1", "constant"]
    with pytest.warns(UserWarning, match="drift_1, constant"):
        vec, _ = V.check_contrast([1, -1], columns)
    theta = np.zeros((4, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pad_contrast(np.array([[1.0, -1.0]]), theta, "t")
    np.testing.assert_array_equal(vec, np.ravel(expected))


def test_named_contrast_errors_carry_the_name_and_token():
    with pytest.raises(ContrastError) as info:
        V.check_contrast("audio - video", ["audio", "constant"], name="av")
    assert str(info.value).startswith("Contrast 'av': ")
    assert info.value.token == "video"
    assert info.value.position == 8


# --------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------
def _save(path, data, affine=None, zooms=None):
    img = nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine)
    if zooms is not None:
        img.header.set_zooms(zooms)
        img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)
    return str(path)


def test_bold_images_are_loaded_lazily_and_header_tr_checked(tmp_path):
    data = np.random.default_rng(0).normal(size=(3, 4, 5, 8)).astype(np.float32)
    paths = [_save(tmp_path / f"run{i}.nii.gz", data, zooms=(1, 1, 1, 2.0)) for i in range(2)]
    imgs = V.check_bold_images(paths, t_r=2.0)
    assert [img.shape for img in imgs] == [(3, 4, 5, 8)] * 2
    assert all(not img.in_memory for img in imgs)
    with pytest.warns(UserWarning, match="repetition time of 2 s but t_r=2.5 s"):
        V.check_bold_images(paths[0], t_r=2.5)
    # tiny affine differences within numpy.allclose are the same grid (nilearn's rule)
    affine = np.eye(4)
    affine[0, 3] = 1e-9
    other = _save(tmp_path / "run_shifted.nii.gz", data, affine)
    assert len(V.check_bold_images([paths[0], other])) == 2


def test_mask_rules(tmp_path):
    bold = _save(tmp_path / "bold.nii.gz", np.ones((10, 10, 10, 3), np.float32))
    data = np.zeros((10, 10, 10, 1), np.int16)
    data[2:5, 2:5, 2:5] = 2  # nilearn accepts any single non-zero value
    mask = V.check_mask(_save(tmp_path / "m.nii.gz", data), bold)
    assert mask.shape == (10, 10, 10)
    assert mask.get_fdata().sum() == 27
    # half outside the field of view: warning, not an error
    shifted = np.eye(4)
    shifted[0, 3] = 6.0
    half = np.zeros((10, 10, 10), np.uint8)
    half[1:7, 0:2, 0:2] = 1  # x from 7 to 12 in world space: 3 of 6 columns inside
    with pytest.warns(UserWarning, match="Only 50%"):
        V.check_mask(_save(tmp_path / "half.nii.gz", half, shifted), bold, min_overlap=0.6)


def test_timeseries_bad_voxels():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(20, 6))
    data[3, 1] = np.nan
    data[:, 2] = 5.0
    data[7, 4] = np.inf
    data[:, 5] = 0.0
    with pytest.warns(UserWarning, match="2 voxel.*NaN/inf.*2 voxel.*constant"):
        good = V.check_timeseries(data)
    np.testing.assert_array_equal(good, [True, False, False, True, False, False])
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(V.check_timeseries(data.T, axis=1), good)


# --------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------
def test_output_dir_is_created(tmp_path):
    out = V.check_output_dir(tmp_path / "a" / "b", required_bytes=1)
    assert out.is_dir() and list(out.iterdir()) == []


def test_input_file_ok(tmp_path):
    path = tmp_path / "bold.nii.gz"
    path.write_bytes(b"x")
    assert V.check_input_file(path, extensions=(".nii.gz",)) == path
