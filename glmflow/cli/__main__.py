"""``python -m glmflow.cli`` is the ``glmflow`` command."""

import sys

from glmflow.cli import main

sys.exit(main())
