"""Workflow factories (``init_*_wf``) that wire glmflow's interfaces into Nipype graphs."""

from glmflow.workflows.first_level import init_first_level_wf

__all__ = ["init_first_level_wf"]
