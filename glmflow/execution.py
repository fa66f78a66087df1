"""Run a glmflow workflow on any Nipype plugin with sensible defaults.

One place decides how workflows execute, for the demo, the facade, the scripts and the
command: content hashing for the cache, fast polling, one BLAS thread per worker process,
the environment the SLURM/SGE plugins need, honest per-node resource requests, and one
clear :class:`~glmflow.core.run_errors.WorkflowError` when a node fails or its batch job is
killed.

Nipype's plugins are used through thin subclasses (Nipype accepts a plugin instance in
``Workflow.run``). They add what the stock plugins lack:

* every failed node is recorded with its batch job id, job log and crash file;
* a job that leaves the queue without a result (killed, out of memory, out of time) is
  reported as such, instead of the ``TypeError`` nipype 1.11's crash reporter raises;
* each batch job asks the scheduler for the node's ``mem_gb``/``n_procs`` and writes its log
  to the workflow's ``batch`` folder; BLAS uses as many threads as the job was given.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import hashlib
import math
import os
import pwd
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import traceback as tb_module
from dataclasses import dataclass
from pathlib import Path

from glmflow.core import read_ahead
from glmflow.core.errors import ParameterError
from glmflow.core.lock import WorkdirLock
from glmflow.core.run_errors import NodeFailure, WorkflowError
from glmflow.core.versions import file_version

PLUGINS = ("Linear", "MultiProc", "SLURM", "SGE", "SLURMGraph", "SGEGraph")

#: Seconds between scheduler/pool polls. Nipype's default (2 s) dominates small nodes.
POLL_SECONDS = {"MultiProc": 0.05, "SLURM": 0.5, "SGE": 0.5}

#: Variables that set the size of BLAS / OpenMP thread pools.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

#: Memory of a fresh Python that has imported nipype, nilearn and the interfaces (GiB);
#: measured 0.2 GiB (VmHWM), plus headroom.
BASE_MEM_GB = 0.3


# --------------------------------------------------------------------------- environment
#: Digests of input files per version: {(path, size, mtime, ctime, inode, device, hash): hex}.
_FILE_HASHES = {}
#: Versions being hashed right now: {key: Event set when done}.
_HASHING = {}
_HASH_LOCK = threading.Lock()


def _reset_hashing_after_fork():
    # A forked MultiProc worker has no hashing thread: forget its pending work and lock.
    global _HASH_LOCK
    _HASH_LOCK = threading.Lock()
    _HASHING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_hashing_after_fork)


def _hash_file(path, crypto, chunk_bytes=2**20):
    """Hex digest of a file's content (hashlib releases the GIL while it digests)."""
    digest = crypto()
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as fobj:
        while n_read := fobj.readinto(buffer):
            digest.update(view[:n_read])
    return digest.hexdigest()


def file_digest(path, crypto=hashlib.md5):
    """The content digest of ``path``, computed once per file version in this process.

    The digest is Nipype's (``hash_infile``: MD5 of the content), so batch jobs, which
    hash with Nipype's own function, agree with the submitting process. The key holds
    the size, modification and change times, inode and device, so a changed file (even
    one rewritten in place with its old time stamp) is hashed anew; an unchanged one is
    read once however many nodes take it. A caller asking for a version that another
    thread is hashing waits for that result.
    """
    key = (*file_version(path), crypto)
    while True:
        with _HASH_LOCK:
            if key in _FILE_HASHES:
                return _FILE_HASHES[key]
            running = _HASHING.get(key)
            if running is None:
                running = _HASHING[key] = threading.Event()
                break
        running.wait()  # then read the result, or hash it here if that attempt failed
    try:
        digest = _hash_file(path, crypto)
        with _HASH_LOCK:
            _FILE_HASHES[key] = digest
        return digest
    finally:
        with _HASH_LOCK:
            _HASHING.pop(key, None)
        running.set()


def prefetch_digests(paths):
    """Hash ``paths`` in background threads (the engine will ask for them later).

    Nipype hashes a node's input files only when it reaches the node; starting early lets
    the hashing of the BOLD runs overlap with the engine's set-up, and several runs are
    hashed at once. Returns the (started) threads.
    """
    pending = queue.SimpleQueue()
    for path in paths:
        pending.put(path)

    def work():
        while True:
            try:
                path = pending.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(OSError):
                file_digest(path)

    # One thread per core: MD5 releases the GIL, so several runs hash at once.
    threads = [threading.Thread(target=work, name="glmflow-hash", daemon=True)
               for _ in range(min(len(paths), available_cores()))]
    for thread in threads:
        thread.start()
    return threads


def hash_infile_original(afile, chunk_len=8192, crypto=hashlib.md5, raise_notfound=False):
    """Nipype's own ``hash_infile`` (before :func:`_install_hash_cache` replaces it)."""
    from nipype.utils import filemanip

    function = getattr(filemanip.hash_infile, "_glmflow_original", filemanip.hash_infile)
    return function(afile, chunk_len, crypto, raise_notfound)


def _install_hash_cache():
    """Replace Nipype's content hashing of input files by :func:`file_digest`.

    With content hashing Nipype reads every input file again for each node that takes it
    (about 18 full reads of the BOLD file per run). :func:`file_digest` gives the same
    digest from one read per file version (and :func:`prefetch_digests` can compute it
    ahead); the key changes whenever the file does, so a changed input is hashed anew.
    """
    from nipype.interfaces.base import specs, support
    from nipype.utils import filemanip

    if getattr(filemanip.hash_infile, "_glmflow", False):
        return
    original = filemanip.hash_infile

    def hash_infile(afile, chunk_len=8192, crypto=hashlib.md5, raise_notfound=False):
        try:
            return file_digest(afile, crypto)
        except OSError:
            return original(afile, chunk_len, crypto, raise_notfound)

    hash_infile._glmflow = True
    hash_infile._glmflow_original = filemanip.hash_infile
    filemanip.hash_infile = specs.hash_infile = support.hash_infile = hash_infile


def prepare_environment():
    """Set the variables Nipype needs and that the batch plugins read.

    ``NIPYPE_NO_ET`` stops Nipype's version check from reaching the network; the SLURM and
    SGE plugins build job names from ``LOGNAME``, which containers often lack.
    """
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    if "LOGNAME" not in os.environ:
        os.environ["LOGNAME"] = os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name
    _install_hash_cache()


@contextlib.contextmanager
def _thread_environment(n_threads):
    """Set the BLAS thread variables for the duration of a run (inherited by workers)."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    try:
        for name in THREAD_VARIABLES:
            os.environ[name] = str(n_threads)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _is_nipype_default(execution, key):
    """True if ``execution[key]`` is unset or still Nipype's global default.

    Workflows start with a full copy of Nipype's config, so ``setdefault`` never applies;
    a value equal to the global default was not chosen by the user.
    """
    from nipype import config as nipype_config

    if key not in execution:
        return True
    default = nipype_config.get("execution", key, None)
    return str(execution[key]) == str(default) or (
        key == "crashdump_dir" and str(execution[key]) == os.getcwd()
    )


def configure(workflow, *, plugin="Linear", base_dir=None):
    """Apply glmflow's execution defaults to ``workflow`` (in place) and return it.

    Content hashing (the cache survives copies and touches), text crash files kept with
    the cache in ``<base_dir>/<workflow>/crash``, and polling every
    :data:`POLL_SECONDS` unless the caller chose a value.
    """
    if base_dir is not None:
        workflow.base_dir = str(base_dir)
    execution = workflow.config.setdefault("execution", {})
    execution["hash_method"] = "content"
    execution["remove_unnecessary_outputs"] = False
    execution["crashfile_format"] = "txt"
    if _is_nipype_default(execution, "poll_sleep_duration"):
        execution["poll_sleep_duration"] = POLL_SECONDS.get(plugin, 0.5)
    if workflow.base_dir and _is_nipype_default(execution, "crashdump_dir"):
        execution["crashdump_dir"] = str(Path(workflow.base_dir) / workflow.name / "crash")
    return workflow


# --------------------------------------------------------------------------- resources
@dataclass(frozen=True)
class NodeResources:
    """What one node asks the scheduler (and MultiProc) for."""

    mem_gb: float
    n_procs: int = 1


def _round_up(gib, step=0.1):
    return round(math.ceil(gib / step - 1e-9) * step, 3)


def _image_geometry(bold_file):
    """(voxels per volume, volumes) from the header only; GIFTI counts vertices x arrays."""
    import nibabel as nib

    img = nib.load(str(bold_file))
    if hasattr(img, "darrays"):  # GIFTI: one data array per volume
        n_vol = len(img.darrays)
        n_vox = int(img.darrays[0].data.shape[0]) if n_vol else 0
        return n_vox, n_vol
    shape = img.shape
    n_vox = int(math.prod(shape[:3]))
    n_vol = int(shape[3]) if len(shape) > 3 else 1
    return n_vox, n_vol


def estimate_node_resources(bold_files, *, n_regressors=40, minimize_memory=True):
    """Memory each kind of glmflow node needs for these runs.

    The estimates come from the data size read from the image headers (nothing is
    loaded), with coefficients from peak-memory measurements (``VmHWM`` of a fresh process
    running one interface, simulated runs of 2 MiB to 1 GiB in float64): the mask holds one
    run in float64 (peak = base + 1.0 x run); the fit streams the run through a file on
    local disk and voxel chunks (peak below base + 0.05 x run on 2 mm MNI runs, 1 or 2
    threads); with ``minimize_memory=False`` it also holds the residual and predicted
    series and writes them as full 4D images (peak = base + 1.0-1.6 x run); contrasts
    hold each run's betas and covariances. Each coefficient below has at least 20 %
    headroom.

    Parameters
    ----------
    bold_files : str, Path or list of them
        The runs (4D NIfTI or GIFTI).
    n_regressors : int, default=40
        Upper bound on design columns, for the size of the model files.
    minimize_memory : bool, default=True
        As the fit's ``minimize_memory``: False keeps residuals and predicted series.

    Returns
    -------
    dict
        Maps interface class name (``FitGLM``, ``ComputeMask``, ``EstimateContrast``,
        ``MakeDesignMatrix``, ``GLMReport``) to :class:`NodeResources`.
    """
    if isinstance(bold_files, (str, os.PathLike)):
        bold_files = [bold_files]
    geometry = [_image_geometry(f) for f in bold_files]
    if not geometry:
        raise ParameterError("estimate_node_resources needs at least one BOLD file; got none.")
    gib = 1024.0**3
    run_bytes = max(n_vox * n_vol for n_vox, n_vol in geometry) * 8 / gib
    vol_bytes = max(n_vox for n_vox, _ in geometry) * 8 / gib
    models = len(geometry) * vol_bytes * (n_regressors + 2)
    return {
        "MakeDesignMatrix": NodeResources(_round_up(BASE_MEM_GB)),
        "ComputeMask": NodeResources(_round_up(BASE_MEM_GB + 1.2 * run_bytes)),
        "FitGLM": NodeResources(_round_up(
            BASE_MEM_GB + 0.05 + (0.1 if minimize_memory else 2.0) * run_bytes)),
        "EstimateContrast": NodeResources(_round_up(BASE_MEM_GB + 3.0 * models)),
        "GLMReport": NodeResources(_round_up(BASE_MEM_GB + 4.0 * vol_bytes * len(geometry))),
    }


def _all_nodes(workflow):
    for name in workflow.list_node_names():
        yield workflow.get_node(name)


def _keeps_outputs(node):
    """Whether a node's fit keeps its residuals and predicted series.

    Only fit nodes are asked: reading a missing input of a MapNode adds it as a trait
    (and traits prints an exception from the MapNode's handler).
    """
    return (type(node.interface).__name__ in FIT_INTERFACES
            and node.inputs.minimize_memory is False)


def apply_node_resources(workflow, bold_files):
    """Set ``mem_gb`` (and ``n_procs``) on the glmflow nodes of ``workflow``, in place.

    Nodes are matched by interface class, so the function works on any workflow built
    from glmflow's interfaces, nested or not. Other nodes keep their settings.

    Returns
    -------
    dict
        Full node name -> :class:`NodeResources` that was applied.
    """
    estimates = estimate_node_resources(bold_files)
    keeping = None  # estimates for fits that keep their outputs, read only if needed
    applied = {}
    for node in _all_nodes(workflow):
        res = estimates.get(type(node.interface).__name__)
        if res is not None and _keeps_outputs(node):
            if keeping is None:
                keeping = estimate_node_resources(bold_files, minimize_memory=False)
            res = keeping[type(node.interface).__name__]
        if res is None:
            continue
        node._mem_gb = res.mem_gb  # Node.mem_gb has no setter
        node.n_procs = res.n_procs
        applied[node.fullname] = res
    return applied


#: Interfaces whose voxel chunks can be fitted on several threads (``num_threads``).
FIT_INTERFACES = ("FitGLM", "FitSurfaceGLM")


def available_cores():
    """CPUs this process may run on (its affinity mask, e.g. a batch job's allocation)."""
    with contextlib.suppress(AttributeError, OSError):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def fit_threads_for(plugin, plugin_args, n_fits):
    """Threads each fit uses by default, so that the fits together fill the machine.

    Linear runs one node at a time: each fit uses every core, as BLAS would. MultiProc
    shares its ``n_procs`` among the runs fitted at once (a single run gets them all,
    four runs on two processes get one each). Batch jobs use one thread, so they ask the
    scheduler for one cpu. ``plugin_args["fit_threads"]`` overrides all of these.
    """
    if plugin_args.get("fit_threads") is not None:
        threads = plugin_args["fit_threads"]
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ParameterError(
                f"plugin_args['fit_threads'] must be a positive integer; got {threads!r}.")
        return threads
    if plugin == "Linear":
        return available_cores()
    if plugin == "MultiProc":
        n_procs = int(plugin_args.get("n_procs") or available_cores())
        return max(1, n_procs // max(1, n_fits))
    return 1


#: Contrast interfaces, which evaluate the two tails and write the maps on threads.
CONTRAST_INTERFACES = ("EstimateContrast", "EstimateSurfaceContrast")


def apply_fit_threads(workflow, n_threads):
    """Set ``n_procs`` (hence the interface's ``num_threads``) of the fit and contrast nodes."""
    for node in _all_nodes(workflow):
        if type(node.interface).__name__ in FIT_INTERFACES + CONTRAST_INTERFACES:
            node.n_procs = n_threads


def _start_read_ahead(workflow, bold_files):
    """Start reading the first run for the workflow's fit step (Linear plugin only).

    Only for a workflow whose one volume fit step has not run in this working directory
    (a rerun is probably served from the cache) and reads its run as it is, with a mask
    given as a file: then the masked run the fit will ask for is known before any step
    runs (:mod:`glmflow.core.read_ahead`). Anything unusual (a bad mask, say) is left to
    the steps, which report it.
    """
    from glmflow.core.data import compute_mask, load_img, same_grid
    from glmflow.interfaces.fit import read_arguments, streamed

    fits = [node for node in _all_nodes(workflow) if type(node.interface).__name__ == "FitGLM"]
    mask_file = None
    with contextlib.suppress(Exception):
        mask_file = workflow.get_node("inputnode").inputs.mask_file
    if len(fits) != 1 or not isinstance(mask_file, (str, os.PathLike)):
        return
    fit = fits[0]
    if not streamed(fit.inputs) or Path(workflow.base_dir, *fit.fullname.split(".")).exists():
        return
    try:
        run = load_img(bold_files[0])
        if not same_grid(load_img(mask_file, what="mask"), run):
            return  # resampled by the mask step: leave it to the steps
        mask_img = compute_mask(bold_files[:1], mask_file)
        arguments = read_arguments(fit.inputs, run.shape[3])
    except Exception:  # noqa: BLE001 - the mask and fit steps will report it
        return
    read_ahead.start(bold_files[0], mask_img, **arguments)


def _bold_files_of(workflow):
    """The ``bold_files`` set on the workflow's inputnode, or None."""
    with contextlib.suppress(Exception):
        value = workflow.get_node("inputnode").inputs.bold_files
        if isinstance(value, (str, os.PathLike)):
            value = [value]
        if value and all(isinstance(v, (str, os.PathLike)) and os.path.exists(v) for v in value):
            return list(value)
    return None


# --------------------------------------------------------------------------- failures
_EXC_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)):?\s?(.*)$")


def _reason_from_traceback(text, max_lines=12):
    """The innermost ``SomeError: message`` of a traceback, with the message's extra lines.

    Nipype nests the interface's traceback inside its own (tab-indented), so the last
    error line is the root cause; the lines after it belong to its message (glmflow's
    errors list what was expected there).
    """
    if isinstance(text, (list, tuple)):
        text = "".join(text)
    # drop nipype's tab indentation but keep the message's own (carets line up)
    lines = [ln.rstrip().lstrip("\t") for ln in str(text or "").splitlines()]
    lines = [ln for ln in lines if ln.strip()]
    for index in range(len(lines) - 1, -1, -1):
        match = _EXC_LINE.match(lines[index])
        if match:
            name = match.group(1).rsplit(".", 1)[-1]  # glmflow.core.errors.X -> X
            head = f"{name}: {match.group(3)}".rstrip() if match.group(3) else name
            return "\n".join([head, *lines[index + 1 : index + max_lines]])
    return lines[-1] if lines else "unknown error"


def _crash_file_for(crash_dir, node_id, since=None):
    """The newest crash file of a node (written after ``since``, a time stamp), or None."""
    if not crash_dir:
        return None
    hits = sorted(glob.glob(os.path.join(crash_dir, f"crash-*-{node_id}-*")), key=os.path.getmtime)
    if since is not None:
        hits = [h for h in hits if os.path.getmtime(h) >= since - 1]
    return hits[-1] if hits else None


class _RecordingMixin:
    """Records each failed node (Distributed plugins: MultiProc, SLURM, SGE)."""

    _glmflow_plugin = "local"

    def _init_records(self):
        self.failures = []
        self._current_taskid = None

    def _clean_queue(self, jobid, graph, result=None):
        self._current_jobid = jobid
        try:
            return super()._clean_queue(jobid, graph, result=result)
        finally:
            self._current_jobid = None

    def _node_label(self, node):
        """Full node name; a MapNode item is named after its MapNode plus the item index."""
        jobid = getattr(self, "_current_jobid", None)
        parent = (getattr(self, "mapnodesubids", None) or {}).get(jobid)
        if parent is not None:
            mapnode = self.procs[parent]
            item = node.name[len(mapnode.name) + 1 :] if node.name.startswith("_") else node.name
            return f"{mapnode.fullname}[{item}]"
        return node.fullname

    def _get_result(self, taskid):
        self._current_taskid = taskid
        result = super()._get_result(taskid)
        if not (result and result.get("traceback")):
            self._current_taskid = None
        return result

    def _report_crash(self, node, result=None):
        killed = False
        if result is not None:
            tb = result.get("traceback")
            if isinstance(tb, str):
                # nipype 1.11 passes a string when a batch job vanished; its reporter then
                # does ``str += list`` and raises TypeError. Give it the list it expects.
                killed = "results file does not exist" in tb
                result = dict(result, traceback=tb.splitlines(keepends=True))
            text = "".join(result.get("traceback") or [])
        else:
            text = "".join(tb_module.format_exception(*sys.exc_info()))
        crash_file = super()._report_crash(node, result=result)
        taskid, self._current_taskid = self._current_taskid, None
        failure = NodeFailure(
            node=self._node_label(node),
            reason=_reason_from_traceback(text),
            crash_file=crash_file,
            work_dir=_safe_output_dir(node),
            inputs=_node_inputs(node),
            killed=killed,
        )
        self._describe_job(failure, taskid)
        self.failures.append(failure)
        return crash_file

    def _describe_job(self, failure, taskid):
        """Add what the scheduler knows (batch plugins override)."""


class _LocalGlueMixin:
    """Run nipype's list-reshaping utility nodes and MapNode collation in this process.

    A batch job costs a fresh interpreter and a scheduler round trip (~1-2 s), a MultiProc
    task a pickled node and a pool round trip. Merge, Select, Split, Rename... only reshape
    lists, and collating a MapNode's cached items is cheap. (``Function`` nodes may do real
    work, so they stay jobs unless marked ``run_without_submitting``.)
    ``plugin_args={"local_glue_nodes": False}`` submits everything.
    """

    _local_glue = True

    def _prerun_check(self, graph):
        super()._prerun_check(graph)
        if self._local_glue:
            for node in graph.nodes():
                interface = type(node.interface)
                # Function nodes may do real work: they stay jobs unless their workflow
                # marked them run_without_submitting
                if interface.__module__.startswith("nipype.interfaces.utility") and (
                    interface.__name__ != "Function"
                ):
                    node.run_without_submitting = True

    def _submit_mapnode(self, jobid):
        expanded = super()._submit_mapnode(jobid)
        if not expanded and self._local_glue:
            # the items were just made separate tasks; the MapNode itself now only collates
            self.procs[jobid].run_without_submitting = True
        return expanded


def _safe_output_dir(node):
    with contextlib.suppress(Exception):
        return node.output_dir()
    return None


def _run_node_with_threads(node, updatehash, taskid):
    """MultiProc worker: run a node with at most ``node.n_procs`` BLAS threads."""
    from nipype.pipeline.plugins.multiproc import run_node
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, int(node.n_procs or 1))):
        return run_node(node, updatehash, taskid)


class _YoungGenerationGC:
    """Stands in for the ``gc`` module in Nipype's MultiProc loop (see its plugin)."""

    @staticmethod
    def collect(generation=2):
        return gc.collect(0)


_YOUNG_GC = _YoungGenerationGC()


#: Core modules the steps import when they run (pandas, scipy's linalg and special).
STEP_MODULES = ("glmflow.core.design", "glmflow.core.validation", "glmflow.core.glm",
                "glmflow.core.contrasts", "glmflow.core.io")


def _make_multiproc_plugin(plugin_args):
    import importlib

    from nipype.pipeline.plugins.multiproc import MultiProcPlugin

    # The pool forks its workers from this process when the first step is submitted:
    # imported here once, the steps' modules (0.25 s) are not imported again in each
    # worker. (On Linear they are imported by the steps, while the run is read ahead.)
    for name in STEP_MODULES:
        importlib.import_module(name)

    class GlmflowMultiProcPlugin(_LocalGlueMixin, _RecordingMixin, MultiProcPlugin):
        _glmflow_plugin = "MultiProc"

        def __init__(self, plugin_args=None):
            super().__init__(plugin_args=plugin_args)
            self._local_glue = bool((plugin_args or {}).get("local_glue_nodes", True))
            self._init_records()

        def _send_procs_to_workers(self, updatehash=False, graph=None):
            # Nipype runs a full gc.collect() before every submission round and after each
            # in-process node: 0.14 s each once nilearn and scipy are loaded, 3.3 s of a
            # 4-run fit. A young-generation collection frees the nodes' debris as well.
            from nipype.pipeline.plugins import multiproc

            multiproc.gc = _YOUNG_GC
            try:
                return super()._send_procs_to_workers(updatehash=updatehash, graph=graph)
            finally:
                multiproc.gc = gc

        def _submit_job(self, node, updatehash=False):
            # as MultiProcPlugin._submit_job, with a thread limit around the node
            self._taskid += 1
            if getattr(node.interface, "terminal_output", "") == "stream":
                node.interface.terminal_output = "allatonce"
            future = self.pool.submit(_run_node_with_threads, node, updatehash, self._taskid)
            future.add_done_callback(self._async_callback)
            self._task_obj[self._taskid] = future
            return self._taskid

    return GlmflowMultiProcPlugin(plugin_args=plugin_args)


# --------------------------------------------------------------------------- batch plugins
def _has_option(args, short=None, long=None):
    """True if the shell-style ``args`` contain ``-x``/``-xVALUE`` or ``--long[=...]``."""
    try:
        tokens = shlex.split(args or "")
    except ValueError:
        tokens = (args or "").split()
    for tok in tokens:
        if short and (tok == short or (tok.startswith(short) and not tok.startswith("--"))):
            return True
        if long and (tok == long or tok.startswith(long + "=")):
            return True
    return False


def _option_value(args, short=None, long=None):
    try:
        tokens = shlex.split(args or "")
    except ValueError:
        return None
    for i, tok in enumerate(tokens):
        if tok in (short, long) and i + 1 < len(tokens):
            return tokens[i + 1]
        if long and tok.startswith(long + "="):
            return tok.split("=", 1)[1]
        if short and tok.startswith(short) and not tok.startswith("--") and len(tok) > 2:
            return tok[2:]
    return None


def _batch_dir(node):
    # where nipype's create_pyscript puts the job scripts
    if node._hierarchy:
        return os.path.join(node.base_dir, node._hierarchy.split(".")[0], "batch")
    return os.path.join(node.base_dir, "batch")


def _run_quiet(cmd, timeout=15):
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


class _BatchMixin(_LocalGlueMixin, _RecordingMixin):
    """Resource requests, job logs and job records for the SLURM and SGE plugins."""

    _args_key = "sbatch_args"
    #: plugin_args keys understood by glmflow, removed before nipype sees them
    _own_keys = ("request_resources", "sge_memory_resource", "sge_pe", "local_glue_nodes")

    def _setup_batch(self, plugin_args):
        plugin_args = plugin_args or {}
        self._request_resources = bool(plugin_args.get("request_resources", True))
        self._sge_memory_resource = plugin_args.get("sge_memory_resource", "mem_free")
        self._sge_pe = plugin_args.get("sge_pe", "smp")
        self._local_glue = bool(plugin_args.get("local_glue_nodes", True))
        self._jobs = {}
        # BLAS gets the cpus the scheduler granted, one unless the node asked for more
        exports = "\n".join(
            f"export {name}=${{{self._cpu_variable}:-1}}" for name in THREAD_VARIABLES
        )
        self._template = self._template.rstrip("\n") + "\n" + exports + "\n"
        self._init_records()

    def _global_args(self):
        return getattr(self, "_sbatch_args", None) or getattr(self, "_qsub_args", None) or ""

    def _submit_job(self, node, updatehash=False):
        # ``node`` is nipype's private deepcopy, so its plugin_args can be extended safely.
        node_args = dict(node.plugin_args or {})
        own = node_args.get(self._args_key, "")
        combined = own if node_args.get("overwrite") else f"{self._global_args()} {own}"
        extra = self._extra_args(node, combined, _batch_dir(node))
        if extra:
            node_args[self._args_key] = f"{own} {extra}".strip()
            node.plugin_args = node_args
        return super()._submit_job(node, updatehash=updatehash)

    def _submit_batchtask(self, scriptfile, node):
        try:
            taskid = super()._submit_batchtask(scriptfile, node)
        except (IndexError, AttributeError, RuntimeError, OSError) as exc:
            raise WorkflowError(
                f"Could not submit node '{node.fullname}' to {self._glmflow_plugin}: "
                f"{type(exc).__name__}: {exc}. Is the scheduler up "
                f"({'sinfo' if self._glmflow_plugin == 'SLURM' else 'qstat -f'}) and are the "
                "plugin_args valid?",
                plugin=self._glmflow_plugin,
            ) from exc
        args = node.plugin_args.get(self._args_key, "") if node.plugin_args else ""
        combined = (
            args if (node.plugin_args or {}).get("overwrite") else f"{self._global_args()} {args}"
        )
        self._jobs[taskid] = dict(
            node=node.fullname, batch_dir=os.path.dirname(scriptfile), args=combined
        )
        return taskid

    def _describe_job(self, failure, taskid):
        if taskid is None or taskid not in self._jobs:
            return
        failure.job_id = str(taskid)
        failure.log_files = self._log_files(taskid, self._jobs[taskid])
        if failure.killed:
            failure.job_state = self._job_state(taskid)
            failure.reason = (
                "the job ended without writing a result (killed by the scheduler or a user, "
                "out of memory or time, or the compute node failed)"
            )


class _SlurmMixin(_BatchMixin):
    _glmflow_plugin = "SLURM"
    _args_key = "sbatch_args"
    _cpu_variable = "SLURM_CPUS_PER_TASK"

    def _extra_args(self, node, combined, batch_dir):
        extra = []
        if self._request_resources:
            if not _has_option(combined, long="--mem") and not _has_option(
                combined, long="--mem-per-cpu"
            ):
                extra.append(f"--mem={max(1, math.ceil(node.mem_gb * 1024))}M")
            if not _has_option(combined, "-c", "--cpus-per-task"):
                extra.append(f"--cpus-per-task={max(1, int(node.n_procs or 1))}")
        if not _has_option(combined, "-o", "--output"):
            extra.append("-o " + shlex.quote(os.path.join(batch_dir, "slurm-%j.out")))
        return " ".join(extra)

    def _log_files(self, taskid, job):
        pattern = _option_value(job["args"], "-o", "--output") or os.path.join(
            job["batch_dir"], "slurm-%j.out"
        )
        out = pattern.replace("%j", str(taskid)).replace("%A", str(taskid))
        files = [os.path.abspath(out)]
        err = _option_value(job["args"], "-e", "--error")
        if err:
            files.append(os.path.abspath(err.replace("%j", str(taskid))))
        return [f for f in dict.fromkeys(files) if os.path.exists(f)] or files

    def _job_state(self, taskid):
        rc, out = _run_quiet(["scontrol", "-o", "show", "job", str(taskid)])
        if rc != 0:
            return None
        fields = dict(re.findall(r"(\w+)=(\S*)", out))
        parts = [fields.get("JobState")]
        if fields.get("Reason") and fields["Reason"] != "None":
            parts.append(f"reason {fields['Reason']}")
        if fields.get("ExitCode"):
            parts.append(f"exit code {fields['ExitCode']}")
        return ", ".join(p for p in parts if p) or None


class _SgeMixin(_BatchMixin):
    _glmflow_plugin = "SGE"
    _args_key = "qsub_args"
    _cpu_variable = "NSLOTS"

    def _extra_args(self, node, combined, batch_dir):
        extra = []
        if self._request_resources:
            mem = self._sge_memory_resource
            if mem and f"{mem}=" not in combined and "h_vmem=" not in combined:
                extra.append(f"-l {mem}={max(1, math.ceil(node.mem_gb * 1024))}M")
            n_procs = max(1, int(node.n_procs or 1))
            if n_procs > 1 and self._sge_pe and not _has_option(combined, "-pe"):
                extra.append(f"-pe {self._sge_pe} {n_procs}")
        if not _has_option(combined, "-o"):
            extra.append("-o " + shlex.quote(batch_dir))
        if not _has_option(combined, "-e") and not _has_option(combined, "-j"):
            extra.append("-j y")  # one log per job
        return " ".join(extra)

    def _log_files(self, taskid, job):
        found = []
        for folder in {job["batch_dir"], _option_value(job["args"], "-o") or job["batch_dir"]}:
            if os.path.isdir(folder):
                found += sorted(glob.glob(os.path.join(folder, f"*.[oe]{taskid}")))
            elif folder and os.path.exists(folder):
                found.append(folder)
        return [os.path.abspath(f) for f in dict.fromkeys(found)] or [
            os.path.join(job["batch_dir"], f"<job name>.o{taskid}")
        ]

    def _job_state(self, taskid):
        # accounting is flushed a moment after the job ends
        for _ in range(3):
            rc, out = _run_quiet(["qacct", "-j", str(taskid)])
            if rc == 0:
                fields = {}
                for line in out.splitlines():
                    key, _, value = line.partition(" ")
                    fields[key] = value.strip()
                return f"failed {fields.get('failed', '?')}, exit status " + fields.get(
                    "exit_status", "?"
                )
            time.sleep(1)
        return None


def _make_batch_plugin(plugin, plugin_args):
    if plugin == "SLURM":
        from nipype.pipeline.plugins.slurm import SLURMPlugin as base

        mixin = _SlurmMixin
    else:
        from nipype.pipeline.plugins.sge import SGEPlugin as base

        mixin = _SgeMixin

    class GlmflowBatchPlugin(mixin, base):
        def __init__(self, plugin_args=None):
            nipype_args = {
                k: v for k, v in (plugin_args or {}).items() if k not in _BatchMixin._own_keys
            }
            super().__init__(plugin_args=nipype_args)
            self._setup_batch(plugin_args)

    GlmflowBatchPlugin.__name__ = f"Glmflow{plugin}Plugin"
    return GlmflowBatchPlugin(plugin_args=plugin_args)


def check_scheduler(plugin):
    """Raise :class:`WorkflowError` unless the SLURM/SGE client tools reach a scheduler.

    Nipype would otherwise fail late and obscurely (``IndexError`` after its retries).
    """
    if plugin.startswith("SLURM"):
        tool, cmd = "sbatch", ["scontrol", "ping"]
    elif plugin.startswith("SGE"):
        tool, cmd = "qsub", ["qstat", "-f"]
    else:
        return
    if shutil.which(tool) is None:
        raise WorkflowError(
            f"plugin={plugin!r} needs the {tool} command, which is not on PATH.", plugin=plugin
        )
    rc, out = _run_quiet(cmd, timeout=30)
    if rc != 0 or (plugin.startswith("SLURM") and "UP" not in out):
        raise WorkflowError(
            f"plugin={plugin!r}: the scheduler does not answer (`{' '.join(cmd)}` said: "
            f"{out[-300:] or 'nothing'}). Start it or run on MultiProc.",
            plugin=plugin,
        )


# --------------------------------------------------------------------------- Graph plugins
#: nipype's default job templates of the Graph plugins (we add the BLAS thread variables)
_GRAPH_TEMPLATES = {
    "SLURMGraph": ("#!/bin/bash", "SLURM_CPUS_PER_TASK"),
    "SGEGraph": ("#$ -V\n#$ -S /bin/sh", "NSLOTS"),
}


def _graph_plugin_args(plugin, plugin_args):
    args = dict(plugin_args)
    # nipype 1.11's SLURMGraph sets this attribute only when plugin_args is non-empty
    args.setdefault("dont_resubmit_completed_jobs", False)
    if "template" not in args:
        template, cpu_variable = _GRAPH_TEMPLATES[plugin]
        exports = "\n".join(f"export {v}=${{{cpu_variable}:-1}}" for v in THREAD_VARIABLES)
        args["template"] = f"{template}\n{exports}\n"
    return args


def _queued_graph_jobs(plugin, base_dir, script_of):
    """{job id: (name, state, reason)} of queued jobs whose script lies under ``base_dir``."""
    import xml.etree.ElementTree as ET

    jobs = {}
    if plugin == "SLURMGraph":
        _, out = _run_quiet(["squeue", "-h", "-o", "%i|%j|%T|%r|%o"])
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 5 and parts[4].startswith(base_dir):
                jobs[parts[0]] = tuple(parts[1:4])
        return jobs
    rc, out = _run_quiet(["qstat", "-xml"])
    if rc != 0 or not out.strip().startswith("<"):
        return jobs
    for job in ET.fromstring(out).iter("job_list"):
        job_id = job.findtext("JB_job_number")
        if job_id not in script_of:
            _, text = _run_quiet(["qstat", "-j", job_id])
            match = re.search(r"^script_file:\s+(\S+)", text, re.M)
            script_of[job_id] = match.group(1) if match else ""
        if script_of[job_id].startswith(base_dir):
            jobs[job_id] = (job.findtext("JB_name") or "", job.findtext("state") or "", "")
    return jobs


def _wait_for_graph(workflow, plugin, graph, started):
    """Wait until the Graph plugin's jobs left the queue; raise if a node has no result.

    The Graph plugins submit every node at once with dependencies and return. A failed node
    leaves its dependents waiting forever on SLURM (``DependencyNeverSatisfied``) or in an
    error state on SGE: those are cancelled, and reported as not run.
    """
    base_dir = str(Path(workflow.base_dir).resolve())
    poll = float(workflow.config["execution"]["poll_sleep_duration"])
    names, script_of, cancelled = {}, {}, set()
    cancel = "scancel" if plugin == "SLURMGraph" else "qdel"
    while True:
        jobs = _queued_graph_jobs(plugin, base_dir, script_of)
        for job_id, (name, state, reason) in jobs.items():
            names[name] = job_id
            stuck = "DependencyNeverSatisfied" in reason or (plugin == "SGEGraph" and "E" in state)
            if stuck and job_id not in cancelled:
                _run_quiet([cancel, job_id])
                cancelled.add(job_id)
        if not jobs:
            break
        time.sleep(max(poll, 0.5))

    import networkx as nx

    crash_dir = workflow.config["execution"].get("crashdump_dir")
    failures, not_run, bad = [], [], set()
    for node in nx.topological_sort(graph):
        # a failed MapNode still leaves a result file (without outputs): trust crash files
        crash = _crash_file_for(crash_dir, node._id, since=started)
        result = os.path.join(node.output_dir(), f"result_{node.name}.pklz")
        if crash is None and os.path.exists(result):
            continue
        bad.add(node)
        if any(pred in bad for pred in graph.predecessors(node)):
            not_run.append(node.fullname)
            continue
        safe_id = node._id.replace("-", "_").replace(".", "_").replace(":", "_")
        job_id = next((i for n, i in names.items() if re.fullmatch(rf"j\d+_{safe_id}", n)), None)
        logs = sorted(
            glob.glob(
                os.path.join(base_dir, "**", "batch", f"batchscript_*_{node._id}.sh.[oe]"),
                recursive=True,
            ),
            key=os.path.getmtime,
        )[-2:]
        failure = NodeFailure(
            node=node.fullname,
            reason=_reason_from_traceback(Path(crash).read_text(errors="replace"))
            if crash
            else "the job ended without writing a result (killed by the scheduler or a user, "
            "out of memory or time, or the compute node failed)",
            job_id=job_id,
            log_files=logs,
            crash_file=crash,
            work_dir=_safe_output_dir(node),
            inputs=_node_inputs(node),
            killed=crash is None,
        )
        failures.append(failure)
    if failures:
        text = _summarise(failures, plugin, None)
        if not_run:
            text += "\nNot run because of it: " + ", ".join(not_run)
        raise WorkflowError(text, failures=failures, plugin=plugin)
    return graph


# --------------------------------------------------------------------------- running
def import_nipype_plugins():
    """Import Nipype's plugin package without letting it import IPython.

    ``nipype.pipeline.plugins`` imports IPython, where it is installed, only to offer its
    IPython/ipyparallel plugin, which glmflow does not use: 0.4 s and 750 modules per
    process (and more at exit). The import is blocked for that moment only, unless IPython
    is already loaded (then it costs nothing); Nipype then marks its IPython plugin
    unavailable in this process.
    """
    if "nipype.pipeline.plugins" in sys.modules:
        return
    block = "IPython" not in sys.modules
    if block:
        sys.modules["IPython"] = None  # makes "import IPython" fail at once
    try:
        import nipype.pipeline.plugins  # noqa: F401
    finally:
        if block and "IPython" in sys.modules and sys.modules["IPython"] is None:
            del sys.modules["IPython"]


def _make_plugin(plugin, plugin_args):
    import_nipype_plugins()
    if plugin == "MultiProc":
        return _make_multiproc_plugin(plugin_args)
    if plugin in ("SLURM", "SGE"):
        return _make_batch_plugin(plugin, plugin_args)
    if plugin == "Linear":
        return _make_linear_plugin(plugin_args)
    return None  # the Graph plugins run by name


def _make_linear_plugin(plugin_args):
    from nipype.pipeline.plugins.linear import LinearPlugin

    class GlmflowLinearPlugin(LinearPlugin):
        """Linear, remembering which nodes raised (through nipype's status callback)."""

        def __init__(self, plugin_args=None):
            super().__init__(plugin_args=plugin_args)
            self.failed_nodes = []
            self.failures = []
            user_callback = self._status_callback

            # Kept on the instance, not in plugin_args: MapNodes pickle their plugin_args.
            def callback(node, status):
                if status == "exception":
                    self.failed_nodes.append(node)
                if user_callback is not None:
                    user_callback(node, status)

            self._status_callback = callback

    return GlmflowLinearPlugin(plugin_args=plugin_args)


def _node_inputs(node, limit=200):
    """The node's defined inputs as short text (what the failing step was given)."""
    try:
        values = node.inputs.get()
    except Exception:  # noqa: BLE001 - a report must never fail on a broken node
        return {}
    shown = {}
    for name, value in sorted(values.items()):
        if name == "glmflow_version" or value is None or type(value).__name__ == "_Undefined":
            continue
        text = repr(value)
        shown[name] = text if len(text) <= limit else text[: limit - 3] + "..."
    return shown


def _summarise(failures, plugin, exc):
    if not failures:
        return (
            f"The workflow did not finish on {plugin}: {type(exc).__name__}: "
            f"{_reason_from_traceback(str(exc)) if str(exc) else ''}"
        )
    head = (
        f"{len(failures)} nodes failed on {plugin}; the first one:\n" if len(failures) > 1 else ""
    )
    text = head + failures[0].describe(plugin)
    if len(failures) > 1:
        text += "\nAlso failed: " + ", ".join(f.node for f in failures[1:])
    return (
        text + "\nCompleted nodes are cached: run again with the same working directory to resume."
    )


def run_workflow(workflow, *, plugin="Linear", plugin_args=None, base_dir=None):
    """Run ``workflow`` on ``plugin`` and return Nipype's executed graph.

    Parameters
    ----------
    workflow : nipype.pipeline.engine.Workflow
    plugin : str, default="Linear"
        One of ``Linear``, ``MultiProc``, ``SLURM``, ``SGE`` (or the Graph variants).
    plugin_args : dict, optional
        Passed to the plugin (``n_procs``, ``sbatch_args``, ``qsub_args``, ``max_jobs``,
        ``template``...). glmflow also reads, for SLURM/SGE: ``request_resources``
        (default True: add each node's ``--mem``/``--cpus-per-task`` or ``-l mem_free``/``-pe``
        unless the arguments already request memory/cpus), ``sge_memory_resource``
        (default ``"mem_free"``; e.g. ``"h_vmem"`` where that complex is consumable) and
        ``sge_pe`` (default ``"smp"``, used only for nodes with ``n_procs > 1``); for all
        plugins, ``fit_threads``: threads per GLM fit (default: see
        :func:`fit_threads_for`; the results do not depend on it).
    base_dir : str or Path, optional
        Where Nipype keeps its working directories (the cache).

    Raises
    ------
    WorkflowError
        A node failed or its batch job was killed; the message names the node, the job id,
        the job log and the crash file. Running again with the same ``base_dir`` resumes.
    """
    if plugin not in PLUGINS:
        raise ParameterError(f"plugin must be one of {', '.join(PLUGINS)}; got {plugin!r}.")
    prepare_environment()
    configure(workflow, plugin=plugin, base_dir=base_dir)
    check_scheduler(plugin)
    plugin_args = dict(plugin_args or {})
    bold_files = _bold_files_of(workflow)
    n_fits = len(bold_files) if bold_files else sum(
        1 for node in _all_nodes(workflow) if type(node.interface).__name__ in FIT_INTERFACES)
    fit_threads = fit_threads_for(plugin, plugin_args, n_fits)
    plugin_args.pop("fit_threads", None)

    # One run at a time per working directory: a second one fails at once, clearly.
    lock = WorkdirLock(workflow.base_dir).acquire() if workflow.base_dir else None
    try:
        # First thing once the directory is ours: reading the run is the longest wait.
        if plugin == "Linear" and bold_files and workflow.base_dir:
            _start_read_ahead(workflow, bold_files)
        if bold_files:
            prefetch_digests(bold_files)
            apply_node_resources(workflow, bold_files)
        apply_fit_threads(workflow, fit_threads)
        runner = _make_plugin(plugin, plugin_args)  # bad plugin arguments: their own error
        return _run(workflow, plugin, plugin_args, runner)
    finally:
        read_ahead.discard_all()
        if lock is not None:
            lock.release()


def _run(workflow, plugin, plugin_args, runner):
    """Run the workflow on its plugin; a failure becomes one :class:`WorkflowError`."""
    started = time.time()
    parallel = plugin != "Linear"
    threads = contextlib.nullcontext() if not parallel else _thread_environment(1)
    try:
        with threads:
            if runner is not None:
                return workflow.run(plugin=runner)
            graph = workflow.run(
                plugin=plugin, plugin_args=_graph_plugin_args(plugin, plugin_args)
            )
        return _wait_for_graph(workflow, plugin, graph, started)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        failures = list(getattr(runner, "failures", []))
        crash_dir = workflow.config["execution"].get("crashdump_dir")
        for node in getattr(runner, "failed_nodes", []):  # Linear
            crash = _crash_file_for(crash_dir, node._id, since=started)
            text = Path(crash).read_text(errors="replace") if crash else str(exc)
            failures.append(
                NodeFailure(
                    node=node.fullname,
                    reason=_reason_from_traceback(text),
                    crash_file=crash,
                    work_dir=_safe_output_dir(node),
                    inputs=_node_inputs(node),
                )
            )
        if isinstance(exc, WorkflowError) and not failures:
            raise
        raise WorkflowError(
            _summarise(failures, plugin, exc), failures=failures, plugin=plugin
        ) from exc
