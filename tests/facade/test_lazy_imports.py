"""A volume fit imports no nilearn; ``masker_`` is built on first access, as before.

The facade makes its contrast (and voxelwise) images itself, the way nilearn 0.14.1's
``NiftiMasker.inverse_transform`` does; these tests check that the images are identical,
byte for byte and header for header, to the masker's.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import simulate_study
from nilearn.glm.first_level import FirstLevelModel as NilearnModel
from nilearn.maskers import NiftiMasker
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted

import glmflow.model
from glmflow import FirstLevelModel

from . import simulate as sim
from .conftest import OUTPUT_TYPES, assert_same_maps, quiet

#: A t contrast and an F contrast over the simulated design's columns.
CONTRASTS = {"t": "audio - video", "F": np.array([[1.0, 0, 0], [0, 1.0, 0]])}

#: Header fields nilearn's own maps must share with ours (cal_min/cal_max follow values).
HEADER_FIELDS = ("sizeof_hdr", "dim", "datatype", "bitpix", "pixdim", "vox_offset",
                 "scl_slope", "scl_inter", "xyzt_units", "glmax", "glmin", "descrip",
                 "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                 "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z",
                 "intent_code", "magic")


def _mask_img():
    return nib.Nifti1Image(sim.brain_mask().astype(np.uint8), sim.affine())


@pytest.fixture(scope="module")
def runs():
    events = [sim.events(seed, 60) for seed in (50, 51)]
    imgs = [sim.bold(seed, 60, events_df=ev) for seed, ev in zip((50, 51), events,
                                                                 strict=True)]
    return imgs, events


@pytest.fixture(scope="module", params=["path", "image", "computed"])
def fitted(request, runs, tmp_path_factory):
    """Facade fits with a mask file, an in-memory mask and nilearn's computed EPI mask."""
    imgs, events = runs
    mask = {"path": None, "image": _mask_img(), "computed": None}[request.param]
    if request.param == "path":
        mask = str(tmp_path_factory.mktemp("mask") / "mask.nii.gz")
        nib.save(_mask_img(), mask)
    model = FirstLevelModel(t_r=sim.T_R, mask_img=mask, minimize_memory=False)
    return quiet(model.fit, imgs, events=events), mask


@pytest.fixture
def recorded(monkeypatch):
    """The values the facade turns into images, with the images it made of them."""
    calls = []
    original = glmflow.model._inverse_transform

    def record(values, mask, affine):
        image = original(values, mask, affine)
        calls.append((values.copy(), image))
        return image

    monkeypatch.setattr(glmflow.model, "_inverse_transform", record)
    return calls


def _assert_same_image(ours, ref):
    """Same class, data (dtype, shape, memory order, bytes), affine and header block."""
    assert type(ours) is type(ref)
    a, b = np.asanyarray(ours.dataobj), np.asanyarray(ref.dataobj)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.flags.f_contiguous == b.flags.f_contiguous
    assert a.tobytes(order="A") == b.tobytes(order="A")
    assert np.array_equal(ours.affine, ref.affine)
    assert ours.header.get_data_dtype() == ref.header.get_data_dtype()
    assert ours.header.get_sform(coded=True)[1] == ref.header.get_sform(coded=True)[1]
    assert ours.header.get_qform(coded=True)[1] == ref.header.get_qform(coded=True)[1]
    assert ours.header.binaryblock == ref.header.binaryblock


# ------------------------------------------------------------------------- subprocess
_VOLUME_FIT = """
import json, sys, warnings
import numpy as np, nibabel as nib, pandas as pd
warnings.simplefilter("ignore")
from glmflow import FirstLevelModel

args = json.loads(sys.argv[1])
events = [pd.read_csv(path, sep="\\t") for path in args["events"]]
confounds = [pd.read_csv(path, sep="\\t") for path in args["confounds"]]
model = FirstLevelModel(t_r=2.0, mask_img=args["mask"])
model.fit(args["bold"], events=events, confounds=confounds)
maps = model.compute_contrast("a - b", output_type="all")
z = model.compute_contrast("a", output_type="z_score")
f = model.compute_contrast(np.eye(2, model.design_matrices_[0].shape[1]), output_type="stat")
# The other mask forms and the voxelwise attributes (minimize_memory=False).
image = FirstLevelModel(t_r=2.0, mask_img=nib.load(args["mask"]), minimize_memory=False)
image.fit(args["bold"][0], events=events[0], confounds=confounds[0])
voxelwise = image.residuals_ + image.predicted_ + image.r_square_
image.compute_contrast("b", output_type="effect_size")
print(json.dumps({
    "nilearn": sorted(m for m in sys.modules if m.split(".")[0] == "nilearn"),
    "maps": sorted(maps), "z_shape": list(z.shape), "f_shape": list(f.shape),
    "voxelwise": len(voxelwise), "n_elements": model.n_elements_,
}))
"""


def test_volume_fit_imports_no_nilearn(tmp_path):
    """Fit, contrasts ("all", "z_score", F) and voxelwise maps: no nilearn module loaded."""
    shape = (9, 10, 8)
    bold, events = simulate_study(tmp_path / "data", n_runs=2, n_scans=80, shape=shape)
    mask = np.zeros(shape, np.uint8)
    mask[1:-1, 1:-1, 1:-1] = 1
    mask_file = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, nib.load(bold[0]).affine), mask_file)
    confounds = []
    for run in range(2):
        frame = pd.DataFrame(np.random.default_rng(run).normal(size=(80, 2)),
                             columns=["motion_x", "motion_y"])
        confounds.append(str(tmp_path / f"run-{run + 1}_confounds.tsv"))
        frame.to_csv(confounds[-1], sep="\t", index=False)
    args = {"bold": bold, "events": events, "confounds": confounds, "mask": str(mask_file)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_VOLUME_FIT),
                           json.dumps(args)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["nilearn"] == []
    assert report["maps"] == sorted(OUTPUT_TYPES)
    assert report["z_shape"] == report["f_shape"] == list(shape)
    assert report["voxelwise"] == 3
    assert report["n_elements"] == int(mask.sum())


# ------------------------------------------------------------------------ same images
@pytest.mark.parametrize("stat_type", sorted(CONTRASTS))
def test_maps_are_the_maskers_images(fitted, recorded, stat_type):
    """Each map, alone or in "all", is ``masker_.inverse_transform`` of its values."""
    model, _ = fitted
    contrast = CONTRASTS[stat_type]
    every = quiet(model.compute_contrast, contrast, stat_type=stat_type, output_type="all")
    singles = [quiet(model.compute_contrast, contrast, stat_type=stat_type, output_type=key)
               for key in OUTPUT_TYPES]
    ours = [every[key] for key in OUTPUT_TYPES] + singles
    assert len(recorded) == len(ours)
    for (values, made), image, key in zip(recorded, ours, OUTPUT_TYPES * 2, strict=True):
        assert made is image
        assert image.header["descrip"].item().decode().startswith(f"{key} of contrast ")
        ref = model.masker_.inverse_transform(values)
        ref.header["descrip"] = image.header["descrip"]  # what the facade writes
        _assert_same_image(image, ref)


def test_voxelwise_images_are_the_maskers(fitted, recorded):
    """residuals_, predicted_ and r_square_ (4D) are the masker's images too."""
    model, _ = fitted
    images = model.residuals_ + model.predicted_ + model.r_square_
    assert len(recorded) == len(images) == 6
    for (values, made), image in zip(recorded, images, strict=True):
        assert made is image and values.ndim == 2
        _assert_same_image(image, model.masker_.inverse_transform(values))


def test_maps_match_nilearns_model(runs, fitted):
    """Same numbers, affine and header fields as nilearn's own FirstLevelModel maps."""
    imgs, events = runs
    model, mask = fitted
    reference = quiet(NilearnModel(t_r=sim.T_R, mask_img=mask).fit, imgs, events=events)
    for stat_type, contrast in CONTRASTS.items():
        ours = quiet(model.compute_contrast, contrast, stat_type=stat_type,
                     output_type="all")
        ref = quiet(reference.compute_contrast, contrast, stat_type=stat_type,
                    output_type="all")
        assert_same_maps(ours, ref)
        for key in OUTPUT_TYPES:
            assert np.asanyarray(ours[key].dataobj).dtype == \
                np.asanyarray(ref[key].dataobj).dtype
            assert np.array_equal(ours[key].affine, ref[key].affine)
            for field in HEADER_FIELDS:
                # As bytes: unset scale factors are NaN.
                assert ours[key].header[field].tobytes() == \
                    ref[key].header[field].tobytes(), (key, field)
    assert model.n_elements_ == reference.n_elements_
    assert np.array_equal(model.mask_img_.get_fdata(), reference.mask_img_.get_fdata())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n_volumes", [None, 1, 3])
def test_inverse_transform_is_nilearns(dtype, n_volumes):
    """The facade's unmasking of any float values (NaN, inf too) is the masker's."""
    rng = np.random.default_rng(7)
    mask = rng.random((6, 7, 5)) > 0.4
    affine = np.array([[-2.5, 0.1, 0, 40], [0, 2.5, 0.2, -50], [0, 0, 3, -20], [0, 0, 0, 1]])
    masker = NiftiMasker(mask_img=nib.Nifti1Image(mask.astype(np.uint8), affine)).fit()
    shape = (int(mask.sum()),) if n_volumes is None else (n_volumes, int(mask.sum()))
    values = rng.normal(size=shape).astype(dtype)
    values.flat[:3] = [np.nan, np.inf, -np.inf]
    mask_, affine_ = glmflow.model._mask_of(masker.mask_img_)
    _assert_same_image(glmflow.model._inverse_transform(values, mask_, affine_),
                       masker.inverse_transform(values))


# ------------------------------------------------------------------------ masker_ API
def test_masker_is_built_on_first_access(fitted):
    model = pickle.loads(pickle.dumps(fitted[0]))  # a copy whose masker was never built
    model.__dict__["_masker"] = None
    assert model.__dict__["_masker"] is None
    masker = model.masker_
    assert isinstance(masker, NiftiMasker) and model.masker_ is masker
    check_is_fitted(masker)
    assert masker.n_elements_ == model.n_elements_
    assert masker.mask_img_ is model.mask_img_
    assert masker.mask_strategy == "epi" and masker.t_r == sim.T_R
    assert masker.standardize is None and masker.smoothing_fwhm is None


def test_unfitted_and_refitted(runs):
    imgs, events = runs
    model = FirstLevelModel(t_r=sim.T_R)
    assert not hasattr(model, "masker_")
    with pytest.raises(AttributeError, match="has no attribute 'masker_'"):
        model.masker_  # noqa: B018
    with pytest.raises(NotFittedError):
        check_is_fitted(model)
    params = model.get_params()
    quiet(model.fit, imgs[0], events=events[0])
    check_is_fitted(model)
    assert model.get_params() == params
    assert clone(model).get_params() == params and not hasattr(clone(model), "masker_")
    computed = model.masker_
    small = np.zeros(sim.SHAPE, np.uint8)
    small[3:6, 3:7, 3:6] = 1
    model.set_params(mask_img=nib.Nifti1Image(small, sim.affine()))
    quiet(model.fit, imgs[0], events=events[0])
    assert model.n_elements_ == int(small.sum())
    assert model.masker_ is not computed and model.masker_.n_elements_ == int(small.sum())


def test_pickles_before_and_after_the_masker(fitted):
    model, _ = fitted
    expected = quiet(model.compute_contrast, "audio", output_type="stat")
    unbuilt = pickle.loads(pickle.dumps(model))
    unbuilt.__dict__["_masker"] = None
    model.masker_  # noqa: B018 - built, so pickled with the model below
    for state in (unbuilt, model):
        copy = pickle.loads(pickle.dumps(state))
        assert copy.n_elements_ == model.n_elements_
        _assert_same_image(quiet(copy.compute_contrast, "audio", output_type="stat"),
                           expected)
        assert copy.masker_.n_elements_ == model.n_elements_


@pytest.mark.parametrize("name, value", [("memory_level", "1"), ("memory_level", True),
                                         ("memory_level", 1.0)])
def test_masker_parameter_errors_are_nilearns(runs, name, value):
    """A value NiftiMasker.fit rejects still fails the fit, with nilearn's message."""
    imgs, events = runs
    with pytest.raises(TypeError) as expected:
        NiftiMasker(mask_img=_mask_img(), **{name: value}).fit()
    model = FirstLevelModel(t_r=sim.T_R, mask_img=_mask_img(), **{name: value})
    with pytest.raises(TypeError) as raised:
        quiet(model.fit, imgs[0], events=events[0])
    assert str(raised.value) == str(expected.value)


def test_given_masker_and_resampling_keep_the_masker(runs):
    """With a given masker or a target grid the masker is built at fit, as before."""
    imgs, events = runs
    given = NiftiMasker(mask_img=_mask_img()).fit()
    model = quiet(FirstLevelModel(t_r=sim.T_R, mask_img=given).fit, imgs[0],
                  events=events[0])
    assert model.__dict__["_masker"] is not None and model.__dict__["_volume_mask"] is None
    assert model.masker_ is not given and model.n_elements_ == given.n_elements_
    target = np.diag([4.0, 4.0, 4.0])
    model = quiet(FirstLevelModel(t_r=sim.T_R, mask_img=_mask_img(),
                                  target_affine=target).fit, imgs[0], events=events[0])
    assert model.__dict__["_masker"] is not None
    assert np.array_equal(model.masker_.target_affine, target)
