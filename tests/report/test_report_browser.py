"""The report in a real headless Chromium: loads cleanly, shows its parts, right numbers.

Each test writes a report, opens it from a file:// URL, collects console messages,
uncaught exceptions and browser error logs over the DevTools protocol, reads the rendered
page back with a script, and takes a full-page screenshot (kept next to the report in the
test's tmp folder; set ``GLMFLOW_REPORT_ARTIFACTS`` to a folder to keep copies).
"""

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from glmflow.core.report import report_from_model

from .chromium import open_page
from .conftest import SIM_BLOBS, SIM_RUNS
from .helpers import z_peak

pytestmark = pytest.mark.browser

#: Reads the rendered page: every image decoded and visible, the parts and the tables.
PAGE_CHECK = """
(() => {
  const visible = (el) => { const r = el.getBoundingClientRect();
                            return r.width > 0 && r.height > 0; };
  const imgs = Array.from(document.images);
  const figures = (cls) => Array.from(document.querySelectorAll(`figure.${cls} img`));
  const tables = {};
  for (const t of document.querySelectorAll('table.cluster-table')) {
    const head = Array.from(t.querySelectorAll('thead th')).map(c => c.textContent.trim());
    const first = Array.from(t.querySelectorAll('tbody tr')[0].children)
                       .map(c => c.textContent.trim());
    tables[t.dataset.contrast] = Object.fromEntries(head.map((h, i) => [h, first[i]]));
  }
  const shown = (cls) => figures(cls).filter(i => i.complete && i.naturalWidth > 0
                                                && visible(i)).length;
  return {
    title: document.title,
    n_images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    design: shown('design-matrix'), correlation: shown('correlation-matrix'),
    weights: shown('contrast-weights'), mask: shown('mask'), stat: shown('stat-map'),
    design_width: Math.max(0, ...figures('design-matrix').map(i => i.naturalWidth)),
    tables: tables,
    warnings: Array.from(document.querySelectorAll('.warning p')).map(p => p.textContent),
    width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
    external: performance.getEntriesByType('resource').map(e => e.name)
                .filter(n => !n.startsWith('data:')),
  };
})()
"""


def _render(html, folder, name):
    page = folder / f"{name}.html"
    page.write_text(html, encoding="utf-8")
    shot = folder / f"{name}.png"
    result = open_page(page.as_uri(), expression=PAGE_CHECK, screenshot=shot,
                       window=(1400, 1000))
    keep = os.environ.get("GLMFLOW_REPORT_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(page, keep)
        shutil.copy(shot, keep)
    return result


def _check_screenshot(path, min_height):
    from PIL import Image

    image = Image.open(path).convert("RGB")
    assert image.width >= 1400 and image.height >= min_height
    # not a blank page: many colours (figures), and dark text on light background
    small = np.asarray(image.resize((image.width // 4, image.height // 4)))
    assert len(np.unique(small.reshape(-1, 3), axis=0)) > 500
    assert small.min() < 60 and small.max() > 230


def test_console_errors_are_caught(chromium_path, tmp_path):
    """The detector itself: a page with a console error and an exception fails it."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><p>x</p><script>console.error('boom');"
                    "undefined_function();</script>"
                    "<img src='data:image/png;base64,AAAA'></body></html>")
    result = open_page(page.as_uri(), expression="document.images[0].naturalWidth")
    assert any("boom" in e for e in result.errors)
    assert any("undefined_function" in e for e in result.errors)
    assert result.value == 0  # a broken image is seen as such


def test_spm_auditory_report_in_chromium(chromium_path, spm_auditory_model, tmp_path):
    model = spm_auditory_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        html = report_from_model(model, {"listening": "listening"},
                                 title="SPM auditory").html
        z_map = model.compute_contrast("listening")
    result = _render(html, tmp_path, "spm_auditory")
    assert result.errors == []
    seen = result.value
    assert seen["title"] == "SPM auditory"
    assert seen["broken"] == 0 and seen["external"] == []
    assert seen["design"] == 1 and seen["design_width"] > 300
    assert seen["weights"] == 1 and seen["mask"] == 1 and seen["stat"] == 1
    # the top peak of the cluster table is the z map's maximum
    xyz, peak = z_peak(z_map, model.masker_.mask_img_)
    top = seen["tables"]["listening"]
    assert float(top["Peak Stat"]) == pytest.approx(peak, abs=5e-4)
    assert [float(top[k]) for k in "XYZ"] == pytest.approx(list(xyz), abs=0.051)
    # and the known auditory peak of the data README (left superior temporal)
    assert float(top["Peak Stat"]) == pytest.approx(9.342, abs=1e-3)
    assert [float(top[k]) for k in "XYZ"] == pytest.approx([-57.9, -44.7, 8.4], abs=0.051)
    assert seen["width"] <= 1400  # no horizontal overflow
    _check_screenshot(result.screenshot, min_height=2000)


def test_simulated_three_run_report_in_chromium(chromium_path, simulated_model, tmp_path):
    model, mask = simulated_model
    contrasts = {"a - b": "a - b", "b": np.array([0.0, 1.0]),
                 "effects": {"def": np.eye(2), "stat_type": "F"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        html = report_from_model(model, contrasts, title="Simulated", plot_type="glass",
                                 two_sided=True, height_control="fdr", alpha=0.05).html
        z_ab = model.compute_contrast("a - b")
    result = _render(html, tmp_path, "simulated")
    assert result.errors == []
    seen = result.value
    assert seen["broken"] == 0 and seen["external"] == []
    assert seen["design"] == SIM_RUNS and seen["correlation"] == SIM_RUNS
    assert seen["weights"] == SIM_RUNS * len(contrasts)
    assert seen["stat"] == len(contrasts)
    xyz, peak = z_peak(z_ab, mask)
    top = seen["tables"]["a - b"]
    assert float(top["Peak Stat"]) == pytest.approx(peak, abs=5e-4)
    assert [float(top[k]) for k in "XYZ"] == pytest.approx(list(xyz), abs=0.051)
    assert np.linalg.norm(np.subtract(xyz, SIM_BLOBS["a"])) <= 6.0 * np.sqrt(3)
    # the top peak of contrast b is the simulated b blob
    top_b = [float(seen["tables"]["b"][k]) for k in "XYZ"]
    assert np.linalg.norm(np.subtract(top_b, SIM_BLOBS["b"])) <= 6.0 * np.sqrt(3)
    assert float(seen["tables"]["b"]["Peak Stat"]) > 8
    assert seen["width"] <= 1400
    _check_screenshot(result.screenshot, min_height=3000)
