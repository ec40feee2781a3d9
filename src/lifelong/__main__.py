"""`python -m lifelong`: the command line, as the `lifelong` script."""

import sys

from lifelong.cli import main

sys.exit(main())
