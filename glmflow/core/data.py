"""Masks and masked run data.

A run is read volume by volume (one pass over the file, gzip decompressed as a stream),
optionally resampled and smoothed per volume, and reduced to its in-mask voxels at once, so
the full 4D array never sits in memory. The values, their dtype (float32 unless the file
holds float64 or scaled data) and their layout are exactly those nilearn's ``NiftiMasker``
produces, which is what keeps the statistics identical to nilearn's.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener
from nibabel.volumeutils import apply_read_scaling

from glmflow.core.buffers import mapped_zeros
from glmflow.core.errors import ImageError, InputFileError, MaskError

#: Memory for the group of volumes gathered before a spilled run's blocks are written
#: (twice 16 MiB halves the writes: 0.17 s instead of 0.21 s for a 2 mm MNI run).
SPILL_BUFFER_BYTES = 32 * 2**20

try:  # optional: ISA-L inflates ~3x faster than zlib
    from isal.igzip_lib import DECOMP_GZIP, IgzipDecompressor, IsalError
except ImportError:  # pragma: no cover - depends on the environment
    IgzipDecompressor = None
    IsalError = OSError

#: Compressed bytes read at a time.
INFLATE_CHUNK_BYTES = 4 * 2**20


def load_img(img, *, what="BOLD image"):
    """Load a NIfTI image from a path (or pass an image through) with a clear error."""
    if isinstance(img, (str, Path)):
        path = Path(img)
        if not path.is_file():
            raise InputFileError(f"The {what} {path} does not exist.")
        try:
            return nib.load(path)
        except Exception as exc:  # nibabel raises several types for unreadable files
            raise InputFileError(f"The {what} {path} is not a readable NIfTI file: {exc}") from exc
    if isinstance(img, nib.spatialimages.SpatialImage):
        return img
    raise ImageError(f"The {what} must be a NIfTI path or image; got {type(img).__name__}.")


def check_4d(img, *, name):
    """Raise :class:`ImageError` unless ``img`` is 4D (a 3D image is not a run)."""
    if len(img.shape) != 4:
        raise ImageError(
            f"{name} has shape {img.shape}: a run must be a 4D image (x, y, z, time); "
            f"got {len(img.shape)}D."
        )


def _stored_volumes(filename, offset, n_vols, n_bytes):
    """Yield the stored bytes of each volume of an image file, in order (one pass).

    ``.gz`` files are inflated with ISA-L (:class:`_GzipStream`) when ``python-isal`` is
    installed, else read as nibabel opens them. The file is read to its end, so a damaged
    gzip stream fails its CRC check even after the last volume.
    """
    if IgzipDecompressor is not None and str(filename).endswith(".gz"):
        stream = _GzipStream(filename)
    else:
        stream = ImageOpener(filename, "rb")
    with stream:
        if len(stream.read(offset)) != offset:
            raise InputFileError(f"{filename} is truncated: it ends inside its header.")
        for index in range(n_vols):
            volume = stream.read(n_bytes)
            if len(volume) != n_bytes:
                raise InputFileError(
                    f"{filename} is truncated: volume {index} of {n_vols} is incomplete.")
            yield volume
        while stream.read(INFLATE_CHUNK_BYTES):  # to the end: the gzip trailers' CRC checks
            pass


class _GzipStream:
    """A gzip file (one or several members) read forward with ISA-L.

    ``read(size)`` inflates straight into one ``bytes`` object: no intermediate buffer or
    copy, and the inflate calls release the GIL.
    """

    def __init__(self, filename):
        self._compressed = open(filename, "rb", buffering=0)  # closed by __exit__
        self._inflater = IgzipDecompressor(flag=DECOMP_GZIP)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._compressed.close()

    def read(self, size):
        """The next ``size`` inflated bytes (fewer at the end of the data)."""
        pieces = []
        while size:
            if self._inflater.eof:  # the end of a gzip member: another may follow
                rest = self._inflater.unused_data or self._compressed.read(INFLATE_CHUNK_BYTES)
                if not rest:
                    break
                self._inflater = IgzipDecompressor(flag=DECOMP_GZIP)
                piece = self._inflater.decompress(rest, size)
            elif self._inflater.needs_input:
                more = self._compressed.read(INFLATE_CHUNK_BYTES)
                if not more:
                    raise EOFError("the compressed stream ends early")
                piece = self._inflater.decompress(more, size)
            else:
                piece = self._inflater.decompress(b"", size)
            pieces.append(piece)
            size -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _is_streamable(img):
    proxy = img.dataobj
    return not (
        isinstance(proxy, np.ndarray) or img.get_filename() is None or not hasattr(proxy, "offset")
    )


#: Volumes decompressed ahead of the one being masked.
READ_AHEAD = 3


class ReadCancelled(Exception):
    """A read stopped because its ``cancel`` event was set."""


def _raw_volumes(img, cancel=None):
    """Yield each volume's stored values, a flat read-only array in file (Fortran) order.

    The file is read (and decompressed) in a background thread, up to
    :data:`READ_AHEAD` volumes ahead: decompression releases the GIL, so it runs while
    the caller masks the previous volume. Setting the ``cancel`` event stops the read
    with :class:`ReadCancelled`.
    """
    proxy = img.dataobj
    filename, n_vols, dtype = img.get_filename(), img.shape[3], proxy.dtype
    n_bytes = int(np.prod(img.shape[:3])) * dtype.itemsize
    slots, ready, stop = queue.Queue(), queue.Queue(), threading.Event()
    for _ in range(READ_AHEAD):
        slots.put(None)

    def produce():
        try:
            for volume in _stored_volumes(filename, proxy.offset, n_vols, n_bytes):
                slots.get()  # at most READ_AHEAD volumes wait for the caller
                if stop.is_set():
                    return
                ready.put(volume)
        except (EOFError, OSError, ValueError, IsalError) as exc:  # a damaged file
            error = exc if isinstance(exc, InputFileError) else InputFileError(
                f"{filename} cannot be read to its end (truncated or corrupt): {exc}")
            ready.put(error)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
            ready.put(exc)

    reader = threading.Thread(target=produce, name="glmflow-read", daemon=True)
    reader.start()
    try:
        for _ in range(n_vols):
            if cancel is not None and cancel.is_set():
                raise ReadCancelled(f"Reading {filename} was cancelled.")
            item = ready.get()
            if isinstance(item, BaseException):
                raise item
            yield np.frombuffer(item, dtype)
            slots.put(None)  # the caller is done with this volume
        reader.join()
        if not ready.empty():  # the end of the file was damaged (after the last volume)
            item = ready.get()
            if isinstance(item, BaseException):
                raise item
    finally:
        stop.set()
        slots.put(None)  # wakes the reader if it waits for a slot
        reader.join()


def _scale_factors(proxy):
    """Slope and intercept typed as nibabel's ``ArrayProxy._get_scaled(dtype=None)``."""
    slope = np.asanyarray(proxy.slope)
    inter = np.asanyarray(proxy.inter)
    if np.can_cast(inter, slope.dtype):
        inter = inter.astype(slope.dtype)
    return slope, inter


def iter_volumes(img):
    """Yield the 3D volumes of a 4D image in order, reading the file once.

    For a file-backed image the data are streamed from disk (decompressing ``.gz`` on the
    fly); the values equal ``np.asanyarray(img.dataobj)[..., t]``. The volumes may be
    read-only.
    """
    if not _is_streamable(img):
        data = np.asanyarray(img.dataobj)
        for index in range(img.shape[3]):
            yield data[..., index]
        return
    slope, inter = _scale_factors(img.dataobj)
    for raw in _raw_volumes(img):
        yield apply_read_scaling(raw.reshape(img.shape[:3], order="F"), slope, inter)


class SpilledRun:
    """A masked run ``(n_scans, n_voxels)`` kept on disk, read back by blocks of voxels.

    The voxels are stored in file order (``voxel_order[j]`` is the mask-order index of
    stored column ``j``): gathering them from each volume that way reads the volume
    forward, about three times faster than in the mask's (C) order. The file holds
    consecutive blocks of ``block_size`` stored columns, each a C-ordered
    ``(n_scans, block)`` array, so reading a block is one contiguous read
    (:meth:`stored`). Indexing (``run[:, cols]``, ``run[rows]``) and ``np.asarray(run)``
    give the mask's order, as :func:`load_masked_run` does in memory.

    The file has no name (:func:`_unnamed_file`), so nothing is left behind when the
    process ends, even when it is killed. Its space is released when the object is closed
    (:meth:`close`: by a background thread, as freeing the pages of a large file takes a
    while, 0.03 s for a 2 mm MNI run) or garbage collected.
    """

    def __init__(self, fd, n_scans, n_voxels, dtype, block_size, voxel_order):
        self.shape = (int(n_scans), int(n_voxels))
        self.dtype = np.dtype(dtype)
        self.block_size = int(block_size)
        self.voxel_order = np.asarray(voxel_order)
        self.ndim = 2
        self._fd = fd

    def _block_bounds(self, index):
        start = index * self.block_size
        return start, min(start + self.block_size, self.shape[1])

    def _read_block(self, index):
        start, stop = self._block_bounds(index)
        n_scans = self.shape[0]
        out = np.empty((n_scans, stop - start), self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        offset = n_scans * start * self.dtype.itemsize
        filled = 0
        while filled < len(view):
            n_read = os.preadv(self._fd, [view[filled:]], offset + filled)
            if n_read <= 0:
                raise InputFileError("The spilled run (a temporary file) is truncated.")
            filled += n_read
        return out

    def stored(self, cols):
        """Stored columns ``cols`` (a slice, in file order): a new C-ordered array."""
        start, stop, step = cols.indices(self.shape[1])
        if step != 1 or stop <= start:
            raise ValueError(f"stored() takes a forward slice of columns; got {cols!r}.")
        first, last = start // self.block_size, (stop - 1) // self.block_size
        if first == last and self._block_bounds(first) == (start, stop):
            return self._read_block(first)  # the usual case: chunks are blocks
        out = np.empty((self.shape[0], stop - start), self.dtype)
        for index in range(first, last + 1):
            b_start, b_stop = self._block_bounds(index)
            lo, hi = max(start, b_start), min(stop, b_stop)
            out[:, lo - start:hi - start] = self._read_block(index)[:, lo - b_start:hi - b_start]
        return out

    def voxels(self, cols):
        """Mask-order indices of stored columns ``cols``."""
        return self.voxel_order[cols]

    def __getitem__(self, key):
        return np.ascontiguousarray(np.asarray(self)[key])

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, self.dtype)
        for index in range(-(-self.shape[1] // self.block_size)):
            start, stop = self._block_bounds(index)
            out[:, self.voxel_order[start:stop]] = self._read_block(index)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __len__(self):
        return self.shape[0]

    def close(self, background=True):
        """Release the file (idempotent), by default in a background thread."""
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is None:
            return
        if background:
            threading.Thread(target=os.close, args=(fd,), name="glmflow-release",
                             daemon=True).start()
        else:
            os.close(fd)

    def __del__(self):
        # No thread from here: __del__ may run inside threading's own locked sections.
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn down os
            self.close(background=False)


def _spill_masked_stream(img, mask, spill_dir, block_size, cancel=None):
    """As :func:`_load_masked_stream`, written by voxel blocks to a file in ``spill_dir``.

    Volumes are gathered a few at a time and each block's rows appended at its place in
    the file, so memory holds one small group of volumes. The voxels are gathered, and
    stored, in the file's order (see :class:`SpilledRun`).
    """
    from glmflow.core.glm import chunk_size_for

    slope, inter = _scale_factors(img.dataobj)
    positions, voxel_order = file_order(mask)
    plain = slope == 1 and inter == 0
    n_scans, n_voxels = img.shape[3], positions.size
    block = int(block_size or chunk_size_for(n_scans))
    fd = _unnamed_file(spill_dir)
    try:
        buffer = None
        filled = first_row = 0
        for index, raw in enumerate(_raw_volumes(img, cancel=cancel)):
            if buffer is None:
                dtype = _float_dtype(apply_read_scaling(raw[:1], slope, inter).dtype)
                group = max(1, int(SPILL_BUFFER_BYTES // (n_voxels * dtype.itemsize)))
                buffer = mapped_zeros((min(group, n_scans), n_voxels), dtype)  # core/buffers
            if plain and raw.dtype == dtype:
                np.take(raw, positions, out=buffer[filled])
            else:
                buffer[filled] = apply_read_scaling(raw.take(positions), slope, inter)
            filled += 1
            if filled == buffer.shape[0] or index == n_scans - 1:
                _write_rows(fd, buffer[:filled], first_row, n_scans, block, dtype.itemsize)
                first_row += filled
                filled = 0
        return SpilledRun(fd, n_scans, n_voxels, dtype, block, voxel_order)
    except BaseException:
        os.close(fd)
        raise


def file_order(mask):
    """The in-mask voxels of a 3D ``mask`` in the order a NIfTI file stores them (Fortran).

    Returns
    -------
    positions : ndarray of int
        Their flat positions in a stored volume, ascending.
    voxel_order : ndarray of int
        ``voxel_order[j]`` is the mask-order (C-order, ``volume[mask]``) index of the
        voxel at ``positions[j]``.
    """
    positions = np.ravel_multi_index(np.nonzero(mask), mask.shape, order="F")
    voxel_order = np.argsort(positions, kind="stable")
    return positions[voxel_order], voxel_order


def _unnamed_file(folder):
    """A read-write descriptor of a new file in ``folder`` that has no name.

    ``tempfile.TemporaryFile``'s: ``O_TMPFILE`` where the file system supports it, else a
    named file unlinked at once. The space is the process's until the descriptor closes.
    """
    with tempfile.TemporaryFile(dir=folder, buffering=0) as fobj:
        return os.dup(fobj.fileno())


def _write_rows(fd, rows, first_row, n_scans, block, itemsize):
    """Write scans ``first_row...`` of every voxel block at their place in the file."""
    n_voxels = rows.shape[1]
    for start in range(0, n_voxels, block):
        stop = min(start + block, n_voxels)
        data = np.ascontiguousarray(rows[:, start:stop])
        offset = (n_scans * start + first_row * (stop - start)) * itemsize
        os.pwrite(fd, memoryview(data.reshape(-1).view(np.uint8)), offset)


def _load_masked_stream(img, mask, cancel=None):
    """The in-mask values of every volume, gathered straight from the file's bytes.

    Equal to ``volume[mask]`` for each volume of :func:`iter_volumes`: the in-mask
    positions (in the mask's C order) are located in the Fortran-ordered file data once,
    and the read scaling, being elementwise, is applied to the gathered values only.
    """
    slope, inter = _scale_factors(img.dataobj)
    positions = np.ravel_multi_index(np.nonzero(mask), mask.shape, order="F")
    out = None
    for index, raw in enumerate(_raw_volumes(img, cancel=cancel)):
        values = apply_read_scaling(raw.take(positions), slope, inter)
        if out is None:
            out = np.empty((img.shape[3], positions.size), dtype=_float_dtype(values.dtype))
        out[index] = values
    return out


def same_grid(img_a, img_b):
    """True when two images share voxel grid (3D shape and affine)."""
    return img_a.shape[:3] == img_b.shape[:3] and np.allclose(img_a.affine, img_b.affine)


def compute_mask(bold_files, mask_file=None, *, target_affine=None, target_shape=None):
    """Return the analysis mask as a binary ``Nifti1Image``.

    Parameters
    ----------
    bold_files : list of str, Path or image
        The runs (all on one grid).
    mask_file : str, Path or image, optional
        A given mask. Without one, nilearn's multi-run EPI mask of the runs is computed
        (as ``FirstLevelModel`` does).
    target_affine, target_shape : optional
        Resample to this grid (the mask with nearest neighbour, as nilearn's masker does).

    Notes
    -----
    A given mask on another grid than the runs (and no target grid) is resampled to the
    runs' grid with nearest-neighbour interpolation. nilearn instead resamples every
    volume of the data to the mask's grid, which interpolates the data and costs memory.
    """
    # nilearn is imported only where it is used (computing an EPI mask, resampling): its
    # import costs a process over a second, and a given mask on the runs' grid needs none.
    runs = [load_img(f) for f in bold_files]
    for source, img in zip(bold_files, runs, strict=True):
        check_4d(img, name=_describe(source))
    if mask_file is None:
        from nilearn.maskers import MultiNiftiMasker

        masker = MultiNiftiMasker(
            mask_strategy="epi", target_affine=target_affine, target_shape=target_shape
        )
        mask_img = masker.fit(runs).mask_img_
    else:
        mask_img = load_img(mask_file, what="mask")
        if len(mask_img.shape) == 4 and mask_img.shape[3] == 1:
            mask_img = nib.Nifti1Image(np.asanyarray(mask_img.dataobj)[..., 0], mask_img.affine)
        if len(mask_img.shape) != 3:
            raise MaskError(f"The mask must be a 3D image; got shape {mask_img.shape}.")
        try:
            mask_data = binary_mask_data(mask_img)
        except ValueError as exc:
            raise MaskError(f"Invalid mask {_describe(mask_file)}: {exc}") from exc
        mask_img = nib.Nifti1Image(mask_data.astype(np.int8), mask_img.affine)
        if target_affine is not None or target_shape is not None:
            from nilearn.maskers import NiftiMasker

            mask_img = NiftiMasker(
                mask_img=mask_img, target_affine=target_affine, target_shape=target_shape
            ).fit().mask_img_
        elif not same_grid(mask_img, runs[0]):
            from nilearn.image import resample_img

            mask_img = resample_img(
                mask_img,
                target_affine=runs[0].affine,
                target_shape=runs[0].shape[:3],
                interpolation="nearest",
                force_resample=True,
                copy_header=True,
            )
    data = np.asarray(mask_img.dataobj) > 0
    if not data.any():
        raise MaskError(
            f"The mask {_describe(mask_file)} is empty on the data grid "
            f"{runs[0].shape[:3]}: no voxel left to analyse (is it in another space?)."
        )
    return nib.Nifti1Image(data.astype(np.uint8), mask_img.affine)


def binary_mask_data(mask_img):
    """A 3D mask's values as booleans, with the checks of nilearn's ``load_mask_img``.

    Non-finite values become 0 (with nilearn's warning); the mask must hold one non-zero
    value, or two values one of which is 0. Raises ValueError with nilearn's messages.
    """
    data = np.array(np.asanyarray(mask_img.dataobj))
    non_finite = ~np.isfinite(data)
    if non_finite.any():
        warnings.warn("Non-finite values detected. These values will be replaced with zeros.",
                      stacklevel=3)
        data[non_finite] = 0
    values = np.unique(data)
    if len(values) == 1:
        if values[0] == 0:
            raise ValueError("The mask is invalid as it is empty: it masks all data.")
    elif len(values) == 2:
        if 0 not in values:
            raise ValueError(
                f"Background of the mask must be represented with 0. Given mask contains: "
                f"{values}."
            )
    else:
        raise ValueError(
            f"Given mask is not made of 2 values: {values}. Cannot interpret as true or false."
        )
    return data.astype(bool)


def _describe(mask_file):
    return str(mask_file) if isinstance(mask_file, (str, Path)) else "(computed/in-memory)"


def load_masked_run(
    bold, mask_img, *, smoothing_fwhm=None, target_affine=None, target_shape=None,
    spill_dir=None, block_size=None, cancel=None,
):
    """Read one run through the mask: a ``(n_scans, n_voxels)`` C-ordered array.

    The values, dtype and layout equal ``NiftiMasker(mask_img, smoothing_fwhm,
    target_affine, target_shape).fit().transform(bold)`` (before any cleaning), but the
    run is streamed, so peak memory is the masked array plus one volume.

    With ``spill_dir`` (and no resampling or smoothing) the masked run is not kept in
    memory: it is written, in blocks of ``block_size`` voxels, to an uncompressed
    temporary file in that folder and returned as a :class:`SpilledRun`, which
    :func:`glmflow.core.glm.fit_glm` reads back one block at a time (peak memory: a few
    blocks instead of the whole run; the file has no name and is released with the
    object).

    ``cancel`` (a ``threading.Event``) stops a streamed read with :class:`ReadCancelled`
    once set (see :mod:`glmflow.core.read_ahead`).
    """
    img = load_img(bold)
    check_4d(img, name=_describe(bold) if isinstance(bold, (str, Path)) else "The BOLD image")
    mask = np.asarray(mask_img.dataobj) > 0
    resample = target_affine is not None or target_shape is not None
    if not resample and not same_grid(img, mask_img):
        raise ImageError(
            f"The run {_describe(bold)} (grid {img.shape[:3]}) is not on the mask's grid "
            f"{mask.shape}; compute the mask for these runs or give target_affine."
        )
    # nilearn's masker leaves a run that is already on the mask's grid alone; otherwise it
    # resamples the run to the mask's bounding box (crop_img, one voxel of padding), and
    # smoothing then sees that box's edges. The in-mask voxels keep their order.
    resample = resample and not same_grid(img, mask_img)
    if resample:
        from nilearn.image import crop_img

        mask_img = crop_img(mask_img, copy=False, copy_header=True)
        mask = np.asarray(mask_img.dataobj) > 0
    if not resample and smoothing_fwhm is None and _is_streamable(img):
        if spill_dir is not None:
            return _spill_masked_stream(img, mask, spill_dir, block_size, cancel)
        return _load_masked_stream(img, mask, cancel)
    n_scans = img.shape[3]
    # nilearn resamples the whole 4D run and then clips it to the range of the *run*
    # (min(data, 0), max(data, 0)), not of each volume. Smoothing comes after clipping, so
    # with smoothing the range is read first (an extra pass over the file); without it,
    # the masked values are clipped at the end, which is the same elementwise operation.
    clip_range = _run_range(img) if resample and smoothing_fwhm is not None else None
    low = high = None
    out = None
    for index, volume in enumerate(iter_volumes(img)):
        if resample:
            if clip_range is None:
                low = _nan_extreme(np.nanmin, volume, low)
                high = _nan_extreme(np.nanmax, volume, high)
            volume = _resample_volume(volume, img.affine, mask_img, clip_range)
        if smoothing_fwhm is not None:
            affine = mask_img.affine if resample else img.affine
            volume = _smooth_volume(volume, affine, smoothing_fwhm)
        if out is None:
            # The masker's dtype rule applies to what resampling/smoothing produced.
            out = np.empty((n_scans, int(mask.sum())), dtype=_float_dtype(volume.dtype))
        out[index] = volume[mask]
    if resample and clip_range is None:
        out.clip(min(low, 0), max(high, 0), out=out)
    return out


def _nan_extreme(function, volume, current):
    value = function(volume)
    if current is None or np.isnan(current):
        return value
    return current if np.isnan(value) else function([current, value])


def _run_range(img):
    """``(min(data, 0), max(data, 0))`` over the whole run, as nilearn's resample_img clips."""
    low = high = None
    for volume in iter_volumes(img):
        low = _nan_extreme(np.nanmin, volume, low)
        high = _nan_extreme(np.nanmax, volume, high)
    return min(low, 0), max(high, 0)


def _float_dtype(dtype):
    """nilearn's rule (signal._ensure_float): floats stay, 8-byte ints -> float64, else float32."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype
    return np.dtype(np.float64 if dtype.itemsize == 8 else np.float32)


def _resample_volume(volume, affine, mask_img, clip_range=None):
    # nilearn resamples the 4D image volume by volume with a spline of order 3, then clips
    # to the run's range: clipping is left to the caller (``clip_range`` or at the end).
    from nilearn.image import resample_img

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resampled = resample_img(
            nib.Nifti1Image(np.asarray(volume), affine),
            target_affine=mask_img.affine,
            target_shape=mask_img.shape[:3],
            interpolation="continuous",
            force_resample=True,
            copy_header=True,
            clip=False,
        )
    data = np.asanyarray(resampled.dataobj)
    if clip_range is not None:
        data.clip(*clip_range, out=data)
    return data


def _smooth_volume(volume, affine, fwhm):
    # Same filter and dtype handling as nilearn.image.smooth_img on the 4D image: the
    # Gaussian is separable and applied line by line, so per-volume results are identical.
    from nilearn.image.image import smooth_array

    return smooth_array(np.array(volume), affine, fwhm=fwhm, ensure_finite=True, copy=False)
