"""The error users see when a workflow run does not finish.

Nipype reports failures in many shapes: a ``RuntimeError`` carrying a traceback string, a
``TypeError`` from its own crash reporter when a batch job was killed (nipype 1.11), an
``IndexError`` when ``sbatch``/``qsub`` printed no job id. :func:`glmflow.execution.run_workflow`
turns all of them into one :class:`WorkflowError` that names what failed and where to look.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from glmflow.core.errors import GLMFlowError


@dataclass
class NodeFailure:
    """What is known about one node that did not finish.

    Attributes
    ----------
    node : str
        Nipype's full node name, e.g. ``first_level_wf.fit.a0`` (a map item).
    reason : str
        The last line of the node's traceback, or why the job ended without a result.
    job_id : str or None
        The batch job id (SLURM/SGE), None for local plugins.
    job_state : str or None
        What the scheduler says about the job (``CANCELLED``, ``failed 100 : ...``), if known.
    log_files : list of str
        The job's stdout/stderr files (SLURM/SGE).
    crash_file : str or None
        Nipype's crash file with the full traceback.
    work_dir : str or None
        The node's working directory (the cache entry).
    killed : bool
        True when the job left the queue without writing a result (killed by the scheduler
        or a user, out of memory, out of time, node failure).
    inputs : dict
        The node's defined inputs, as short text.
    """

    node: str
    reason: str
    job_id: str | None = None
    job_state: str | None = None
    log_files: list = field(default_factory=list)
    crash_file: str | None = None
    work_dir: str | None = None
    killed: bool = False
    inputs: dict = field(default_factory=dict)

    def describe(self, plugin=None):
        """One paragraph: node, job, reason, and the files to read."""
        where = f" in {plugin} job {self.job_id}" if self.job_id else ""
        reason = self.reason.replace("\n", "\n    ")
        head = f"Node '{self.node}' failed{where}: {reason}"
        lines = [head]
        if self.inputs:
            lines.append("  inputs: " + ", ".join(f"{k}={v}" for k, v in self.inputs.items()))
        if self.job_state:
            lines.append(f"  scheduler state: {self.job_state}")
        if self.job_id:
            logs = ", ".join(self.log_files) if self.log_files else "(no job log found)"
            lines.append(f"  job log: {logs}")
        if self.crash_file:
            lines.append(f"  crash file: {self.crash_file}")
        if self.work_dir:
            lines.append(f"  node directory: {self.work_dir}")
        return "\n".join(lines)


class WorkflowError(GLMFlowError, RuntimeError):
    """A workflow run stopped because a node failed or its batch job was killed.

    Subclasses ``RuntimeError``, which is what Nipype raises, so existing handlers keep
    working. Completed nodes stay in the cache: running again with the same ``base_dir``
    resumes from there.

    Attributes
    ----------
    failures : list of NodeFailure
        Every node that failed, in the order Nipype reported them (may be empty when the
        run failed before any node ran, e.g. the scheduler could not be reached).
    plugin : str
        The plugin the workflow ran on.
    """

    def __init__(self, message, *, failures=(), plugin=None):
        super().__init__(message)
        self.failures = list(failures)
        self.plugin = plugin

    @property
    def node(self):
        """Full name of the first failed node, or None."""
        return self.failures[0].node if self.failures else None

    @property
    def job_id(self):
        """Batch job id of the first failed node, or None."""
        return self.failures[0].job_id if self.failures else None

    @property
    def log_files(self):
        """Job log files of the first failed node."""
        return self.failures[0].log_files if self.failures else []
