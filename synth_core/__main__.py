"""``python -m synth_core``: the ``dpsynth`` command line (see :mod:`synth_core.cli`)."""

import sys

from synth_core.cli import main

sys.exit(main())
