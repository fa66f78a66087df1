"""glmflow's t/F/normal tail functions equal scipy.stats' bit for bit (without importing it)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats as sps
from scipy import special

from glmflow.core import contrasts

EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-300, -1e-300, 1e300, -1e300, 38.5, -38.5]


@pytest.fixture(scope="module")
def values():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 5, 20000), rng.normal(0, 60, 2000), EDGES])


@pytest.mark.parametrize("df", [1, 2.5, 7, 100, 375, 1e10])
def test_t_tails_equal_scipy_stats(values, df):
    assert np.array_equal(contrasts.t_sf(values, df), sps.t.sf(values, df), equal_nan=True)
    assert np.array_equal(contrasts.t_cdf(values, df), sps.t.cdf(values, df), equal_nan=True)


@pytest.mark.parametrize("dfd", [1, 7, 375, 1e10])
@pytest.mark.parametrize("dfn", [1, 2, 5])
def test_f_tails_equal_scipy_stats(values, dfn, dfd):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on the negative inputs
        assert np.array_equal(contrasts.f_sf(values, dfn, dfd), sps.f.sf(values, dfn, dfd),
                              equal_nan=True)
        assert np.array_equal(contrasts.f_cdf(values, dfn, dfd), sps.f.cdf(values, dfn, dfd),
                              equal_nan=True)


def test_z_score_equals_scipy_stats_normal_quantiles():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.random(20000), 10.0 ** -rng.uniform(0, 300, 2000), [0.0, 1.0]])
    q = 1 - p
    clipped_p = np.clip(p, 1.0e-300, 1.0 - 1.0e-16)
    clipped_q = np.clip(q, 1.0e-300, 1.0 - 1.0e-16)
    z_sf, z_cdf = sps.norm.isf(clipped_p), sps.norm.ppf(clipped_q)
    expected = np.where(z_sf < 0, z_cdf, z_sf)
    assert np.array_equal(contrasts._z_score(p, q), expected)
    assert np.array_equal(-special.ndtri(clipped_p), z_sf)


def test_contrast_module_does_not_import_scipy_stats():
    import subprocess
    import sys

    code = ("import sys, glmflow.core.contrasts, glmflow.core.glm; "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
