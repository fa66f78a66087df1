"""From fMRIPrep derivatives to BIDS-derivatives statistics: the parts that need no nipype.

``layout``       find runs: raw events + sidecars (with BIDS inheritance), fMRIPrep BOLD, mask,
                 confounds (volume spaces, GIFTI hemisphere pairs, CIFTI-2); parse BIDS names.
``stats_model``  BIDS Stats Models (run level) → design options, event variables, contrasts.
``confounds``    fMRIPrep confounds through nilearn's ``load_confounds`` → DataFrame + sample mask.
``run``          one run's design matrix, sample mask and contrast matrices from the above.

Like :mod:`glmflow.core`, nothing here imports nipype.
"""
