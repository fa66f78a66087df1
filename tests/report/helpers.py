"""Reading a report back: its figures, cluster tables and warnings."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import numpy as np


class ReportReader(HTMLParser):
    """Collect figures (by class), cluster tables (by contrast) and warning texts."""

    def __init__(self, text):
        super().__init__()
        self.figures = {}  # class -> list of (attrs, img src)
        self.tables = {}  # contrast -> list of rows (list of cell texts)
        self.warnings = []
        self.scripts = 0
        self.links = []  # every src/href value
        self._figure = None
        self._table = None
        self._row = None
        self._cell = None
        self._warning_depth = 0
        self._text = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == "script":
            self.scripts += 1
        if tag == "figure":
            self._figure = attrs
        if tag == "img" and self._figure is not None:
            self.figures.setdefault(self._figure.get("class"), []).append(
                (self._figure, attrs.get("src", "")))
        if tag == "table" and "cluster-table" in attrs.get("class", ""):
            self._table = self.tables.setdefault(attrs.get("data-contrast"), [])
        if tag == "tr" and self._table is not None:
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag == "div" and "warning" in attrs.get("class", "").split():
            self._warning_depth = 1
        elif tag == "div" and self._warning_depth:
            self._warning_depth += 1
        if tag == "p" and self._warning_depth:
            self._text = []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._figure = None
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        if tag == "table":
            self._table = None
        if tag == "p" and self._warning_depth:
            self.warnings.append("".join(self._text).strip())
        if tag == "div" and self._warning_depth:
            self._warning_depth -= 1

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._warning_depth:
            self._text.append(data)

    def count(self, css_class):
        return len(self.figures.get(css_class, []))

    def top_peak(self, contrast):
        """(x, y, z, peak) of the first row of a contrast's cluster table."""
        header, first = self.tables[contrast][0], self.tables[contrast][1]
        row = dict(zip(header, first, strict=True))
        return tuple(float(row[k]) for k in ("X", "Y", "Z", "Peak Stat"))


def decode_png(src):
    """Decode a data: URI and open it with Pillow (raises if it is not a valid PNG)."""
    from PIL import Image

    match = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", src)
    assert match, f"not an inline PNG: {src[:60]}"
    image = Image.open(io.BytesIO(base64.b64decode(match.group(1))))
    image.load()
    return image


def z_peak(z_img, mask_img=None):
    """Maximum of a z map (inside the mask) and its world coordinates."""
    data = np.asanyarray(z_img.dataobj, dtype=float)
    if mask_img is not None:
        data = np.where(np.asanyarray(mask_img.dataobj) > 0, data, -np.inf)
    ijk = np.unravel_index(np.nanargmax(data), data.shape)
    xyz = z_img.affine[:3, :3] @ np.array(ijk, float) + z_img.affine[:3, 3]
    return tuple(xyz), float(data[ijk])
