"""Run a benchmark case with proposed (not yet integrated) changes patched in.

This measures what two changes outside ``glmflow/core`` would give, before they are made:

* ``--hash-cache``: Nipype's content hashing (``hash_method="content"``) reads every input
  file completely each time a node's inputs are hashed: a 1-run workflow hashes the BOLD
  file ~18 times. Memoising ``hash_infile`` per (path, size, mtime, inode) hashes each
  file once per process.
* ``--spill``: ``FitGLM`` loads the run with ``load_masked_run(..., spill_dir=TMPDIR)``,
  so the masked run waits on local disk instead of in memory.

Usage::

    python benchmarks/proposals.py --hash-cache --spill -- wf-linear <data.json> <out_dir>
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")


def install_hash_cache():
    """Memoise nipype's ``hash_infile`` (where nipype imported it by name too)."""
    from nipype.interfaces.base import specs, support
    from nipype.utils import filemanip

    original = filemanip.hash_infile
    cache = {}

    def hash_infile(afile, chunk_len=8192, crypto=hashlib.md5, raise_notfound=False):
        try:
            st = os.stat(afile)
        except OSError:
            return original(afile, chunk_len, crypto, raise_notfound)
        key = (os.path.realpath(afile), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev,
               crypto)
        if key not in cache:
            cache[key] = original(afile, chunk_len, crypto, raise_notfound)
        return cache[key]

    filemanip.hash_infile = specs.hash_infile = support.hash_infile = hash_infile


def install_spill():
    """Make FitGLM keep the masked run on local disk (TMPDIR) while fitting."""
    import glmflow.interfaces.fit as fit

    fit.load_masked_run = functools.partial(fit.load_masked_run,
                                            spill_dir=tempfile.gettempdir())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hash-cache", action="store_true")
    parser.add_argument("--spill", action="store_true")
    parser.add_argument("case", nargs=argparse.REMAINDER, help="arguments of cases.py")
    args = parser.parse_args(argv)
    if args.hash_cache:
        install_hash_cache()
    if args.spill:
        install_spill()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cases

    cases.main([a for a in args.case if a != "--"])


if __name__ == "__main__":
    main()
