"""Numerical core of glmflow: plain functions over numpy, scipy, nibabel and nilearn.

Nothing in this package imports nipype (``tests/test_core_no_nipype.py`` enforces it), so
the numbers can be tested, and reused, without a workflow engine.
"""
