"""Run a glmflow workflow on any Nipype plugin with sensible defaults.

One place decides how workflows execute, for the demo, the facade, the scripts and the
command: content hashing for the cache, fast polling, one BLAS thread per worker process,
the environment the SLURM/SGE plugins need, and one clear error when a node fails.
"""

from __future__ import annotations

import os
import pwd

PLUGINS = ("Linear", "MultiProc", "SLURM", "SGE", "SLURMGraph", "SGEGraph")

#: Seconds between scheduler/pool polls. Nipype's default (2 s) dominates small nodes.
POLL_SECONDS = {"MultiProc": 0.05, "SLURM": 0.5, "SGE": 0.5}


def prepare_environment():
    """Set the variables Nipype needs and that the batch plugins read.

    ``NIPYPE_NO_ET`` stops Nipype's version check from reaching the network; the SLURM and
    SGE plugins build job names from ``LOGNAME``, which containers often lack.
    """
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    if "LOGNAME" not in os.environ:
        os.environ["LOGNAME"] = os.environ.get("USER") or pwd.getpwuid(os.getuid()).pw_name


def configure(workflow, *, plugin="Linear", base_dir=None):
    """Apply glmflow's execution defaults to ``workflow`` (in place) and return it."""
    if base_dir is not None:
        workflow.base_dir = str(base_dir)
    execution = workflow.config.setdefault("execution", {})
    execution["hash_method"] = "content"
    execution["remove_unnecessary_outputs"] = False
    execution["crashfile_format"] = "txt"
    execution.setdefault("poll_sleep_duration", POLL_SECONDS.get(plugin, 0.5))
    return workflow


def run_workflow(workflow, *, plugin="Linear", plugin_args=None, base_dir=None):
    """Run ``workflow`` on ``plugin`` and return Nipype's executed graph.

    Parameters
    ----------
    workflow : nipype.pipeline.engine.Workflow
    plugin : str, default="Linear"
        One of ``Linear``, ``MultiProc``, ``SLURM``, ``SGE`` (or the Graph variants).
    plugin_args : dict, optional
        Passed to the plugin unchanged (``n_procs``, ``sbatch_args``, ``qsub_args``, ...).
    base_dir : str or Path, optional
        Where Nipype keeps its working directories (the cache).
    """
    if plugin not in PLUGINS:
        raise ValueError(f"plugin must be one of {', '.join(PLUGINS)}; got {plugin!r}.")
    prepare_environment()
    configure(workflow, plugin=plugin, base_dir=base_dir)
    return workflow.run(plugin=plugin, plugin_args=dict(plugin_args or {}))
