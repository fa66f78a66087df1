"""The ``glmflow`` command.

``glmflow demo OUTPUT_DIR`` runs the self-contained demo; anything else is the BIDS-app
interface (``glmflow BIDS_DIR OUTPUT_DIR participant ...``).
"""

from __future__ import annotations

import os
import sys


def main(argv=None):
    """Dispatch to the demo or to the BIDS-app command."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        from glmflow.cli.demo import main as demo_main

        return demo_main(argv[1:])
    try:
        from glmflow.cli.bids_app import main as bids_main
    except ImportError:  # pragma: no cover - the BIDS app ships with the package
        print("usage: glmflow demo OUTPUT_DIR", file=sys.stderr)
        return 2
    return bids_main(argv)


if __name__ == "__main__":
    sys.exit(main())
