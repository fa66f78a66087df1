"""Height control (fpr / fdr / bonferroni / none) and cluster tables.

Thin wrappers over nilearn's :func:`nilearn.glm.threshold_stats_img` and
:func:`nilearn.reporting.get_clusters_table`, so thresholds and tables are exactly
nilearn's. What is added: parameter checks that raise :class:`ParameterError`, nilearn's
"threshold is only used with height_control=None" rule applied silently (the report
states the threshold it used), and a plain description of an empty result instead of
nilearn's warnings.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from glmflow.core.errors import ParameterError

#: nilearn's accepted values of ``height_control``.
HEIGHT_CONTROLS = ("fpr", "fdr", "bonferroni", None)
#: nilearn's accepted values of ``plot_type``.
PLOT_TYPES = ("slice", "glass")
#: nilearn's default threshold when ``height_control`` is None.
DEFAULT_THRESHOLD = 3.09


@dataclass
class ThresholdResult:
    """A thresholded z map and how it was obtained.

    Attributes
    ----------
    thresholded_img : Nifti1Image
        The z map with sub-threshold voxels (and clusters smaller than
        ``cluster_threshold``) set to 0.
    threshold : float
        The voxel-level z threshold actually used (``inf`` when fdr finds nothing).
    n_voxels : int
        How many voxels survive.
    height_control, alpha, cluster_threshold, two_sided
        The options used, for the report.
    """

    thresholded_img: object
    threshold: float
    n_voxels: int
    height_control: str | None
    alpha: float
    cluster_threshold: int
    two_sided: bool

    @property
    def empty(self) -> bool:
        """True when no voxel survives."""
        return self.n_voxels == 0

    def describe(self) -> str:
        """One sentence on the threshold, e.g. ``z > 3.09 (fpr, alpha = 0.001)``."""
        side = "|z|" if self.two_sided else "z"
        value = "∞" if not np.isfinite(self.threshold) else f"{self.threshold:.3g}"
        if self.height_control is None:
            how = "uncorrected, fixed threshold"
        else:
            how = f"{self.height_control}, alpha = {self.alpha:g}"
        text = f"{side} > {value} ({how})"
        if self.cluster_threshold:
            text += f", clusters > {self.cluster_threshold} voxels"
        return text


def check_threshold_options(
    *, height_control="fpr", alpha=0.001, threshold=None, cluster_threshold=0, min_distance=8.0,
    plot_type="slice",
):
    """Validate the report/threshold options with nilearn's rules.

    Raises
    ------
    ParameterError
        Naming the option, the value found and what is allowed.
    """
    if height_control not in HEIGHT_CONTROLS:
        raise ParameterError(
            f"height_control must be one of 'fpr', 'fdr', 'bonferroni' or None; "
            f"got {height_control!r}."
        )
    if height_control is not None and not 0 < float(alpha) < 1:
        raise ParameterError(f"alpha must be in (0, 1) for height_control="
                             f"{height_control!r}; got {alpha!r}.")
    if height_control is None and threshold is not None and float(threshold) < 0:
        raise ParameterError(f"threshold must be >= 0; got {threshold!r}.")
    if cluster_threshold is None or cluster_threshold < 0:
        raise ParameterError(f"cluster_threshold must be >= 0; got {cluster_threshold!r}.")
    if min_distance is None or min_distance < 0:
        raise ParameterError(f"min_distance must be >= 0; got {min_distance!r}.")
    if plot_type not in PLOT_TYPES:
        raise ParameterError(f"plot_type must be 'slice' or 'glass'; got {plot_type!r}.")


def threshold_map(
    z_img, mask_img=None, *, alpha=0.001, threshold=DEFAULT_THRESHOLD, height_control="fpr",
    cluster_threshold=0, two_sided=False,
) -> ThresholdResult:
    """Threshold a z map as :func:`nilearn.glm.threshold_stats_img` does.

    Parameters
    ----------
    z_img : Nifti1Image or path
        The z map.
    mask_img : Nifti1Image or path, optional
        Voxels counted for fdr / bonferroni (nilearn: the non-zero voxels otherwise).
    alpha : float, default=0.001
        p (fpr, bonferroni) or q (fdr) level; halved when ``two_sided``.
    threshold : float or None, default=3.09
        z threshold, used only when ``height_control`` is None (nilearn's rule).
    height_control : {"fpr", "fdr", "bonferroni", None}, default="fpr"
    cluster_threshold : int, default=0
        Clusters of this many voxels or fewer are removed.
    two_sided : bool, default=False
        Keep negative values below ``-threshold`` too.

    Returns
    -------
    ThresholdResult
    """
    from nilearn.glm import threshold_stats_img

    check_threshold_options(
        height_control=height_control, alpha=alpha, threshold=threshold,
        cluster_threshold=cluster_threshold,
    )
    if height_control is None:
        threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    else:
        threshold = None  # nilearn ignores it here; passing it would only warn
    with warnings.catch_warnings():
        # "threshold must not exceed the maximum" / "no clusters": reported by us instead.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        thresholded, used = threshold_stats_img(
            z_img, mask_img=mask_img, alpha=alpha, threshold=threshold,
            height_control=height_control, cluster_threshold=cluster_threshold,
            two_sided=two_sided,
        )
    data = np.asanyarray(thresholded.dataobj)
    n_voxels = int(np.count_nonzero(np.nan_to_num(data)))
    return ThresholdResult(
        thresholded_img=thresholded, threshold=float(used), n_voxels=n_voxels,
        height_control=height_control, alpha=float(alpha),
        cluster_threshold=int(cluster_threshold), two_sided=bool(two_sided),
    )


def cluster_table(result: ThresholdResult, *, min_distance=8.0, max_clusters=None):
    """The cluster table of a thresholded map (nilearn's :func:`get_clusters_table`).

    Columns: ``Cluster ID, X, Y, Z, Peak Stat, Cluster Size (mm3)``; one row per peak,
    sub-peaks (at least ``min_distance`` mm apart, at most 3 per cluster) have IDs such
    as ``1a`` and no size. Empty (with those columns) when nothing survives.

    Parameters
    ----------
    result : ThresholdResult
        From :func:`threshold_map`.
    min_distance : float, default=8.0
        Minimum distance between sub-peaks, in mm.
    max_clusters : int or None, default=None
        Keep only the clusters with the highest peaks, this many per sign. nilearn's
        table costs one pass over the whole volume per cluster (an unsmoothed map at
        p < 0.001 can have a thousand clusters: ~20 s). The rows kept are nilearn's rows
        for those clusters. Their IDs are nilearn's too, except that when two-sided
        tables are cut, negative clusters are numbered on from the rows shown (nilearn
        numbers them on from the count of all positive peak rows).

    Returns
    -------
    table : pandas.DataFrame
    n_clusters : int
        Number of clusters in the full table (both signs when two-sided).
    """
    from nilearn.image import new_img_like
    from nilearn.reporting import get_clusters_table
    from scipy import ndimage

    columns = ["Cluster ID", "X", "Y", "Z", "Peak Stat", "Cluster Size (mm3)"]
    if result.empty or not np.isfinite(result.threshold):
        return pd.DataFrame(columns=columns), 0
    data = np.nan_to_num(np.asanyarray(result.thresholded_img.dataobj, dtype=float))
    # nilearn labels each sign separately with 6-connectivity ("faces")
    structure = ndimage.generate_binary_structure(3, 1)
    keep = np.zeros(data.shape, dtype=bool)
    counts = []
    for sign in (1, -1) if result.two_sided else (1,):
        labels, n_found = ndimage.label(data * sign > result.threshold, structure)
        counts.append(n_found)
        if n_found == 0:
            continue
        ids = np.arange(1, n_found + 1)
        if max_clusters is not None and n_found > max_clusters:
            peaks = ndimage.maximum(data * sign, labels, ids)
            ids = ids[np.argsort(-peaks, kind="stable")[:max_clusters]]
        keep |= np.isin(labels, ids)
    n_clusters = int(sum(counts))
    if n_clusters == 0:
        return pd.DataFrame(columns=columns), 0
    image = result.thresholded_img
    if not keep.all():
        image = new_img_like(image, np.where(keep, data, 0.0), copy_header=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = get_clusters_table(
            image, stat_threshold=result.threshold,
            cluster_threshold=result.cluster_threshold, two_sided=result.two_sided,
            min_distance=min_distance,
        )
    return table, n_clusters
