"""``python -m lifelong.cli``: the command line, as the ``lifelong`` script runs it."""

import sys

from lifelong.cli import main

sys.exit(main())
