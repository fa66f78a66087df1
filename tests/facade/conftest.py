"""Fixtures and helpers for the FirstLevelModel facade tests."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("NIPYPE_NO_ET", "1")

#: nilearn's output types.
OUTPUT_TYPES = ("z_score", "stat", "p_value", "effect_size", "effect_variance")


def shared_data() -> Path:
    env = os.environ.get("GLMFLOW_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    return path.resolve()


@pytest.fixture
def data_dir():
    path = shared_data()
    if not path.is_dir():
        pytest.skip(f"shared validation data not found at {path} (set GLMFLOW_SHARED_DATA)")
    return path


def quiet(function, *args, **kwargs):
    """Call ``function`` with warnings silenced (nilearn and glmflow warn alike)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


def max_differences(ours, ref):
    """``{output_type: (max |diff|, max relative diff)}`` of two ``output_type='all'`` dicts."""
    out = {}
    for key in OUTPUT_TYPES:
        a = np.asarray(ours[key].get_fdata())
        b = np.asarray(ref[key].get_fdata())
        assert a.shape == b.shape, f"{key}: shape {a.shape} != nilearn's {b.shape}"
        diff = np.abs(a - b)
        scale = np.maximum(np.abs(b), np.finfo(float).tiny)
        out[key] = (float(diff.max()), float((diff / scale)[diff > 0].max(initial=0.0)))
    return out


def assert_same_maps(ours, ref, *, z_tol=1e-9, rtol=1e-9):
    """|Δz| < z_tol and relative differences < rtol on every map, as the issue demands.

    Relative differences are taken per voxel against nilearn's value; values that are
    exactly zero in nilearn's map (outside the mask) must be zero in ours too. Tiny
    p-values are compared relatively as well (no absolute floor).
    """
    diffs = max_differences(ours, ref)
    z_abs = diffs["z_score"][0]
    assert z_abs < z_tol, f"max |dz| = {z_abs:.3g}"
    for key in ("effect_size", "effect_variance", "stat", "p_value"):
        a = np.asarray(ours[key].get_fdata())
        b = np.asarray(ref[key].get_fdata())
        # Relative to each voxel's value, with a floor at 1e-12 of the map's range for
        # effects that are (numerically) zero, where a relative error is meaningless.
        floor = 0.0 if key == "p_value" else 1e-12 * np.abs(b).max()
        np.testing.assert_allclose(a, b, rtol=rtol, atol=floor, err_msg=key)
    return diffs
