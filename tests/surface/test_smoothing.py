"""Surface smoothing: nilearn's iterations, on an impulse and on data."""

import math

import numpy as np
import pytest

from glmflow.core.errors import ParameterError
from glmflow.core.surface import (
    HEMIS,
    SurfaceGeometry,
    fwhm_to_iterations,
    load_masked_surface_run,
    smooth_part,
)

from .conftest import surface_image


def neighbours(mesh_part):
    from nilearn.surface.surface import compute_adjacency_matrix

    return compute_adjacency_matrix(mesh_part, values="ones").tocsr()


@pytest.mark.parametrize("fwhm", [0.0, 3.0, 6.0, 10.0, 20.0])
def test_fwhm_to_iterations_is_nilearns(fsaverage5, fwhm):
    from nilearn.image.image import _mris_fwhm_to_niters

    img = surface_image(fsaverage5, {h: np.zeros(10242) for h in HEMIS})
    expected = _mris_fwhm_to_niters(fwhm, img)
    got = [fwhm_to_iterations(fwhm, fsaverage5.parts[h]) for h in HEMIS]
    assert got == expected
    # FreeSurfer's rule by hand: n = floor(1.14 * 4 pi sigma^2 / (7 * mean vertex area) + 0.5)
    part = fsaverage5.parts["left"]
    v = part.coordinates[part.faces]
    area = 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1).sum()
    sigma = fwhm / math.sqrt(math.log(256.0))
    assert got[0] == math.floor(1.14 * 4 * math.pi * sigma**2 / (7 * area / 10242) + 0.5)


def test_one_iteration_on_an_impulse_is_analytic(fsaverage5):
    """One step: 1/2 at the impulse, 1/(2 deg(n)) at each neighbour n, 0 elsewhere."""
    part = fsaverage5.parts["left"]
    adjacency = neighbours(part)
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    vertex = 1234
    impulse = np.zeros((part.n_vertices, 1))
    impulse[vertex] = 1.0
    out = smooth_part(impulse, part, None, iterations=1)[:, 0]
    ring = adjacency[vertex].indices
    expected = np.zeros(part.n_vertices)
    expected[vertex] = 0.5
    expected[ring] = 0.5 / degree[ring]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-15)


def test_impulse_spread_matches_nilearn_and_graph_distance(fsaverage5):
    """k iterations reach exactly the vertices within k edges; values equal nilearn's."""
    from nilearn.image import smooth_img

    fwhm = 12.0
    n_iter = fwhm_to_iterations(fwhm, fsaverage5.parts["left"])
    assert n_iter >= 3
    data = {h: np.zeros((10242, 2)) for h in HEMIS}
    data["left"][500, 0] = 1.0
    data["right"][9000, 1] = 1.0  # a second scan: scans are smoothed independently
    expected = smooth_img(surface_image(fsaverage5, data), fwhm)
    for hemi, vertex, scan in (("left", 500, 0), ("right", 9000, 1)):
        part = fsaverage5.parts[hemi]
        got = smooth_part(data[hemi], part, fwhm)
        np.testing.assert_array_equal(got, expected.data.parts[hemi])
        # Support = the graph ball of radius n_iter around the impulse.
        adjacency = neighbours(part)
        reach = np.zeros(part.n_vertices, bool)
        reach[vertex] = True
        for _ in range(n_iter):
            reach = reach | (adjacency @ reach.astype(float) > 0)
        assert np.array_equal(got[:, scan] > 0, reach)
        assert not got[:, 1 - scan].any()
        assert got[:, scan].argmax() == vertex
        # The kernel's spatial spread grows with the FWHM: its weighted radius is a few mm.
        coords = part.coordinates
        weights = got[:, scan] / got[:, scan].sum()
        radius = np.sqrt((weights * ((coords - coords[vertex]) ** 2).sum(1)).sum())
        assert 0.3 * fwhm < radius < 1.5 * fwhm


def test_non_finite_values_become_zero_before_smoothing(fsaverage5):
    part = fsaverage5.parts["left"]
    data = np.ones((10242, 1))
    data[10, 0] = np.nan
    out = smooth_part(data, part, 6.0)
    assert np.isfinite(out).all()
    assert out[10, 0] < 1.0


def test_smoothing_needs_a_mesh_for_gifti(gifti_files):
    geometry = SurfaceGeometry("surface", {"left": 10242, "right": 10242},
                               np.ones(20484, bool))
    with pytest.raises(ParameterError, match="mesh"):
        load_masked_surface_run(gifti_files["bold"][0], geometry, smoothing_fwhm=6.0)
    raw = load_masked_surface_run(gifti_files["bold"][0], geometry, smoothing_fwhm=6.0,
                                  mesh="fsaverage5")
    assert raw.shape == (80, 20484)
