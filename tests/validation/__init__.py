"""Tests of glmflow.core.validation and glmflow.core.expressions."""
