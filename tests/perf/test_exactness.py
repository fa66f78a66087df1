"""Exactness of the fast GLM core: glmflow's maps equal nilearn's FirstLevelModel's.

Simulated runs (AR(1) noise whose coefficient varies across voxels, two conditions,
intercept/drift/motion regressors) are fitted by nilearn and by ``glmflow.core``
(streamed masked loading, chunked fit, contrasts from the fitted models) for OLS, AR(1)
and AR(2), one and two runs, with the default chunk size and with a tiny chunk size that
cuts the voxels into many chunks (and AR groups across chunk boundaries). The z, effect
and variance maps must agree to |Δ| < 1e-9 (in practice they are identical).
"""

from __future__ import annotations

import os
import time

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.glm.first_level import FirstLevelModel, make_first_level_design_matrix

from glmflow.core.contrasts import compute_contrast
from glmflow.core.data import load_masked_run
from glmflow.core.glm import fit_glm

T_R = 2.0
SHAPE = (14, 13, 11)
N_SCANS = 90
TOL = 1e-9
CONTRASTS = {"a_minus_b": "a - b", "b": "b", "effects": np.eye(2)}


def _simulate(tmp_path, run, rng):
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    mask = (grid**2).sum(0) < 0.9
    n_vox = int(mask.sum())
    rho = 0.05 + 0.5 * (grid[1][mask] + 1) / 2
    noise = np.zeros((N_SCANS, n_vox))
    noise[0] = rng.standard_normal(n_vox)
    for t in range(1, N_SCANS):
        noise[t] = rho * noise[t - 1] + rng.standard_normal(n_vox)
    events = pd.DataFrame({"onset": np.arange(8, N_SCANS * T_R - 20, 15.0)})
    events["duration"] = 5.0
    events["trial_type"] = np.where(np.arange(len(events)) % 2, "a", "b")
    frame_times = np.arange(N_SCANS) * T_R
    motion = pd.DataFrame(np.cumsum(rng.normal(0, 0.05, (N_SCANS, 2)), 0),
                          columns=["trans_x", "rot_z"])
    design = make_first_level_design_matrix(frame_times, events, add_regs=motion,
                                            add_reg_names=list(motion.columns))
    signal = design[["a", "b"]].to_numpy() @ rng.normal(0, 3, (2, n_vox))
    data = np.zeros((*SHAPE, N_SCANS), np.float32)
    data[mask] = (500 + 100 * rng.random(n_vox) + signal + 5 * noise).T
    bold = tmp_path / f"run{run}_bold.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0])), bold)
    return bold, design, nib.Nifti1Image(mask.astype(np.uint8), np.diag([3.0, 3.0, 3.0, 1.0]))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exact")
    rng = np.random.default_rng(42)
    return [_simulate(tmp, run, rng) for run in range(2)]


def _nilearn_maps(runs, noise_model):
    mask_img = runs[0][2]
    model = FirstLevelModel(noise_model=noise_model, mask_img=mask_img,
                            random_state=0, minimize_memory=True)
    model.fit([r[0] for r in runs], design_matrices=[r[1] for r in runs])
    mask = np.asarray(mask_img.dataobj) > 0
    out = {}
    for name, definition in CONTRASTS.items():
        maps = model.compute_contrast(definition, output_type="all")
        out[name] = {key: np.asanyarray(maps[key].dataobj)[mask]
                     for key in ("z_score", "effect_size", "effect_variance")}
    return out


def _glmflow_maps(runs, noise_model, chunk_size, spill_dir=None):
    mask_img = runs[0][2]
    models = []
    for bold, design, _ in runs:
        raw = load_masked_run(bold, mask_img, spill_dir=spill_dir, block_size=chunk_size)
        model, _ = fit_glm(raw, design, mask_img=mask_img, noise_model=noise_model, t_r=T_R,
                           random_state=0, chunk_size=chunk_size)
        models.append(model)
    out = {}
    for name, definition in CONTRASTS.items():
        maps = compute_contrast(models, definition).maps
        out[name] = {key: np.asarray(maps[key]).T.reshape(-1) if np.ndim(maps[key]) > 1
                     else maps[key] for key in ("z_score", "effect_size", "effect_variance")}
    return out


@pytest.mark.parametrize(("chunk_size", "spill"), [(None, False), (37, False), (37, True)],
                         ids=["one-chunk", "many-chunks", "spilled-to-disk"])
@pytest.mark.parametrize("n_runs", [1, 2])
@pytest.mark.parametrize("noise_model", ["ols", "ar1", "ar2"])
def test_maps_equal_nilearn(runs, noise_model, n_runs, chunk_size, spill, tmp_path):
    expected = _nilearn_maps(runs[:n_runs], noise_model)
    got = _glmflow_maps(runs[:n_runs], noise_model, chunk_size, tmp_path if spill else None)
    for name in CONTRASTS:
        for key, value in expected[name].items():
            value = np.asarray(value, float)
            if value.ndim > 1:  # F effect: (voxels, rows) from the image
                value = value.reshape(-1)
            assert got[name][key].shape == value.shape, (name, key)
            diff = np.max(np.abs(got[name][key] - value))
            assert diff < TOL, f"{noise_model} runs={n_runs} {name} {key}: max|Δ| = {diff}"


def test_ar1_groups_cross_chunks(runs):
    """The tiny chunk size does split AR(1) groups across chunks (the case under test)."""
    mask_img = runs[0][2]
    raw = load_masked_run(runs[0][0], mask_img)
    model, _ = fit_glm(raw, runs[0][1], mask_img=mask_img, noise_model="ar1", t_r=T_R,
                       chunk_size=37)
    n_vox = raw.shape[1]
    assert n_vox > 10 * 37
    chunk_of = np.arange(n_vox) // 37
    spread = [len(np.unique(chunk_of[model.label_index == g])) for g in range(len(model.labels))]
    assert len(model.labels) > 10 and max(spread) > 5


def test_spilled_run_reads_back_exactly(runs, tmp_path):
    """A run spilled to disk in blocks reads back bit for bit, by block or in any slice."""
    mask_img = runs[0][2]
    expected = load_masked_run(runs[0][0], mask_img)
    spilled = load_masked_run(runs[0][0], mask_img, spill_dir=tmp_path, block_size=37)
    assert spilled.shape == expected.shape and spilled.dtype == expected.dtype
    assert np.array_equal(np.asarray(spilled), expected)
    for cols in (slice(0, 37), slice(37, 74), slice(5, 200), slice(400, expected.shape[1])):
        got = spilled[:, cols]
        assert got.flags.c_contiguous and np.array_equal(got, expected[:, cols])
    assert np.array_equal(spilled[3:9], expected[3:9])
    # Stored in the file's (Fortran) voxel order; stored() reads columns as stored.
    mask = np.asarray(mask_img.dataobj) > 0
    file_positions = np.ravel_multi_index(np.nonzero(mask), mask.shape, order="F")
    order = spilled.voxel_order
    assert np.all(np.diff(file_positions[order]) > 0)
    for cols in (slice(0, 37), slice(37, 74), slice(5, 200)):
        assert np.array_equal(spilled.stored(cols), expected[:, order[cols]])
        assert np.array_equal(spilled.voxels(cols), order[cols])
    # The file has no name (nothing to leave behind, even if the process is killed) and
    # is released when the run is dropped.
    fd = spilled._fd
    identity = os.fstat(fd)
    assert identity.st_nlink == 0 and identity.st_size > 0 and not list(tmp_path.iterdir())
    spilled.close()
    for _ in range(200):
        try:
            current = os.fstat(fd)
        except OSError:
            break
        if (current.st_ino, current.st_dev) != (identity.st_ino, identity.st_dev):
            break  # the number was reused by another file: ours was closed
        time.sleep(0.01)
    else:
        pytest.fail("the spilled run's file was not released")


@pytest.mark.parametrize("kwargs", [dict(signal_scaling=(0, 1)), dict(signal_scaling=1),
                                    dict(signal_scaling=False, standardize=True),
                                    dict(sample_mask=np.r_[0:40, 45:90])])
def test_spilled_fit_equals_in_memory_fit(runs, tmp_path, kwargs):
    """Other scalings, standardisation and scrubbing give the same model from disk.

    The spilled run stores its voxels in file order, so its chunks group other voxels than
    the in-memory run's: the same groups, and the numbers to rounding."""
    bold, design, mask_img = runs[0]
    raw = load_masked_run(bold, mask_img)
    spilled = load_masked_run(bold, mask_img, spill_dir=tmp_path, block_size=50)
    if "sample_mask" in kwargs:
        design = design.iloc[kwargs["sample_mask"]]
    a, _ = fit_glm(raw, design, mask_img=mask_img, noise_model="ar1", t_r=T_R,
                   chunk_size=50, **kwargs)
    b, _ = fit_glm(spilled, design, mask_img=mask_img, noise_model="ar1", t_r=T_R, **kwargs)
    np.testing.assert_allclose(b.betas, a.betas, rtol=0, atol=1e-12 * np.abs(a.betas).max())
    np.testing.assert_allclose(b.dispersion, a.dispersion, rtol=1e-12)
    assert a.labels == b.labels and np.array_equal(a.label_index, b.label_index)


@pytest.mark.parametrize("noise_model", ["ar1", "ar2"])
def test_large_run_mean_path_equals_nilearn(runs, noise_model, monkeypatch):
    """Runs too large to hold their residuals take the mean from per-scan sums; AR(p>1)
    then clusters coefficients that may differ from nilearn's in the last bit only."""
    import glmflow.core.glm as glm

    monkeypatch.setattr(glm, "EXACT_MEAN_MAX_BYTES", 0)
    expected = _nilearn_maps(runs[:1], noise_model)
    got = _glmflow_maps(runs[:1], noise_model, 37)
    for name in CONTRASTS:
        for key, value in expected[name].items():
            value = np.asarray(value, float).reshape(-1)
            assert np.max(np.abs(got[name][key] - value)) < TOL, (noise_model, name, key)


@pytest.mark.parametrize("noise_model", ["ols", "ar1", "ar2"])
@pytest.mark.parametrize("spill", [False, True], ids=["in-memory", "spilled"])
def test_threads_do_not_change_the_fit(runs, noise_model, spill, tmp_path):
    """Chunks fitted on 3 threads give the very same model (and outputs) as on one."""
    bold, design, mask_img = runs[0]
    raw = load_masked_run(bold, mask_img, spill_dir=tmp_path if spill else None,
                          block_size=37)
    fits = [fit_glm(raw, design, mask_img=mask_img, noise_model=noise_model, t_r=T_R,
                    random_state=0, chunk_size=37, keep_outputs=True, n_threads=n)
            for n in (1, 3)]
    (one, one_out), (three, three_out) = fits
    for name in ("betas", "dispersion", "label_index", "label_cov", "degenerate"):
        assert np.array_equal(getattr(one, name), getattr(three, name)), name
    assert one.labels == three.labels
    for name in ("residuals", "predicted", "r_square"):
        assert np.array_equal(getattr(one_out, name), getattr(three_out, name)), name


@pytest.mark.parametrize("kwargs", [dict(signal_scaling=(0, 1)), dict(signal_scaling=1),
                                    dict(signal_scaling=False, standardize=True),
                                    dict(sample_mask=np.r_[0:40, 45:90])])
def test_threads_do_not_change_other_preprocessing(runs, kwargs):
    """Scalings, standardisation (nilearn's clean() on threads) and scrubbing, too."""
    bold, design, mask_img = runs[0]
    raw = load_masked_run(bold, mask_img)
    if "sample_mask" in kwargs:
        design = design.iloc[kwargs["sample_mask"]]
    one, three = (fit_glm(raw, design, mask_img=mask_img, noise_model="ar1", t_r=T_R,
                          chunk_size=37, n_threads=n, **kwargs)[0] for n in (1, 3))
    assert np.array_equal(one.betas, three.betas)
    assert np.array_equal(one.dispersion, three.dispersion)
    assert np.array_equal(one.label_index, three.label_index)


@pytest.mark.parametrize("contrast, stat_type", [
    ("a - b", "t"), (np.eye(2, 7), "F"),
], ids=["t", "F"])
def test_threads_do_not_change_the_contrast(runs, contrast, stat_type):
    """The tails computed on two threads, and the images, equal the one-thread ones."""
    from glmflow.core.contrasts import compute_contrast

    bold, design, mask_img = runs[0]
    model, _ = fit_glm(load_masked_run(bold, mask_img), design, mask_img=mask_img,
                       noise_model="ar1", t_r=T_R)
    one, two = (compute_contrast([model], contrast, stat_type, n_threads=n) for n in (1, 2))
    for key, value in one.maps.items():
        assert np.array_equal(value, two.maps[key]), key
    images = two.to_images(model.mask, model.affine)
    mask = np.asarray(model.mask, bool)
    for key, value in one.maps.items():
        data = np.asanyarray(images[key].dataobj)
        assert np.array_equal(data[mask], np.atleast_2d(value).T.squeeze()), key
        assert not data[~mask].any(), key


def test_read_ahead_stops_cleanly_and_reports_truncation(runs, tmp_path):
    """The background reader yields every volume exactly, stops when the caller stops,
    and a truncated file raises in the caller's thread, naming the file."""
    import threading

    from glmflow.core.data import _raw_volumes
    from glmflow.core.errors import InputFileError

    bold = nib.load(runs[0][0])
    expected = np.asanyarray(bold.dataobj)
    volumes = list(_raw_volumes(bold))
    assert len(volumes) == N_SCANS
    for index in (0, 1, N_SCANS - 1):
        assert np.array_equal(volumes[index].reshape(SHAPE, order="F"), expected[..., index])

    before = threading.active_count()
    stream = _raw_volumes(bold)
    next(stream)
    stream.close()  # stopping early joins the reader thread
    assert threading.active_count() == before

    data = open(runs[0][0], "rb").read()
    import gzip

    raw = gzip.decompress(data)
    short = tmp_path / "short.nii"
    short.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(InputFileError, match="short.nii is truncated"):
        load_masked_run(short, runs[0][2])
    assert threading.active_count() == before
    # A compressed run cut short fails in the decompressor: the error names the file too.
    short_gz = tmp_path / "short.nii.gz"
    short_gz.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="short.nii.gz cannot be read to its end"):
        load_masked_run(short_gz, runs[0][2])
    assert threading.active_count() == before
    # A damaged byte of the data (here the gzip trailer's CRC) is caught: the whole
    # stream is checked, after the last volume too.
    damaged = bytearray(data)
    damaged[-8] ^= 0xFF
    bad_crc = tmp_path / "bad_crc.nii.gz"
    bad_crc.write_bytes(bytes(damaged))
    with pytest.raises(InputFileError, match="bad_crc.nii.gz cannot be read to its end"):
        load_masked_run(bad_crc, runs[0][2])
    assert threading.active_count() == before


def test_multi_member_gzip_runs_read_exactly(runs, tmp_path):
    """A .nii.gz made of several gzip members (as block-compressing tools write them)
    reads as one stream."""
    import gzip

    raw = gzip.decompress(open(runs[0][0], "rb").read())
    cut = len(raw) // 3 + 7  # members end in the middle of a volume and of a value
    members = tmp_path / "members.nii.gz"
    members.write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:2 * cut])
                        + gzip.compress(raw[2 * cut:]))
    mask_img = runs[0][2]
    expected = load_masked_run(runs[0][0], mask_img)
    assert np.array_equal(load_masked_run(members, mask_img), expected)
