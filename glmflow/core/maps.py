"""Writing statistical maps from in-mask values, without building whole volumes.

A contrast gives five maps of ~235k in-mask values on a 2 mm MNI grid of ~1.1M voxels.
Building each as a float64 volume (8.7 MB, mostly zeros) costs fresh memory: numpy asks
the kernel for huge pages on arrays of 4 MiB or more, and on a busy machine the first
touch of such an array can wait for memory compaction (tenths of a second for the five
maps). :class:`MaskedMapWriter` streams each file instead: nibabel's header, then the
volume slab by slab in the file's (Fortran) order, each slab filled from the sorted
in-mask values in a small reused buffer. The bytes are those ``nib.save`` writes for
the whole volume (a test compares them).
"""

from __future__ import annotations

import numpy as np

from glmflow.core.data import file_order
from glmflow.core.io import atomic_path, gzip_writer

#: Elements per slab (1 MiB of float64): under numpy's huge-page threshold.
SLAB_ELEMENTS = 2**17


class MaskedMapWriter:
    """Write NIfTI maps whose voxels outside ``mask`` are zero.

    Parameters
    ----------
    mask : array-like of bool, shape (X, Y, Z)
        The analysis mask; values are given in its C order (``volume[mask]``).
    affine : array-like, shape (4, 4)

    Notes
    -----
    The file is ``nib.save(nib.Nifti1Image(volume, affine), path)`` for the float64
    volume with ``volume[mask] = values`` (one volume per row for 2D values, as
    :meth:`glmflow.core.contrasts.ContrastResult.to_images` builds them). One writer
    serves several maps and threads (it holds no per-write state).
    """

    def __init__(self, mask, affine):
        mask = np.asarray(mask, bool)
        self.shape = mask.shape
        self.affine = np.asarray(affine, float)
        #: values[self._order] are the in-mask values in file order, at self._positions.
        self._positions, self._order = file_order(mask)
        self._n_volume = int(np.prod(self.shape))

    def write(self, values, path):
        """Write ``values`` (shape (n_voxels,) or (q, n_voxels)) to ``path`` atomically.

        Returns the path as a string.
        """
        values = np.asarray(values, dtype=np.float64)
        rows = values[np.newaxis] if values.ndim == 1 else values
        shape = self.shape if values.ndim == 1 else (*self.shape, rows.shape[0])
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as raw:
                if str(path).endswith(".gz"):
                    with gzip_writer(raw) as fobj:
                        self._write_file(fobj, rows, shape)
                else:
                    self._write_file(raw, rows, shape)
        return str(path)

    def _write_file(self, fobj, rows, shape):
        fobj.write(self._header_bytes(shape))
        slab = np.zeros(min(SLAB_ELEMENTS, self._n_volume))
        for row in rows:
            in_file_order = row[self._order]
            for start in range(0, self._n_volume, slab.size):
                stop = min(start + slab.size, self._n_volume)
                first, last = np.searchsorted(self._positions, (start, stop))
                part = slab[: stop - start]
                part.fill(0)
                part[self._positions[first:last] - start] = in_file_order[first:last]
                fobj.write(part.data)

    def _header_bytes(self, shape):
        """The bytes nibabel writes before the data of a float64 image of ``shape``.

        The header comes from a ``Nifti1Image`` over a zero-stride stand-in for the data
        (no memory), prepared as ``AnalyzeImage.to_file_map`` prepares it.
        """
        import io

        import nibabel as nib
        from nibabel.arraywriters import get_slope_inter, make_array_writer
        from nibabel.volumeutils import seek_tell

        stand_in = np.broadcast_to(np.float64(0), shape)
        img = nib.Nifti1Image(stand_in, self.affine)
        img.update_header()
        header = img.header
        writer = make_array_writer(stand_in, header.get_data_dtype(), header.has_data_slope,
                                   header.has_data_intercept)
        header.set_slope_inter(*get_slope_inter(writer))
        buffer = io.BytesIO()
        header.write_to(buffer)
        seek_tell(buffer, header.get_data_offset(), write0=True)
        return buffer.getvalue()
