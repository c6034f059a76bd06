"""``python -m taskproc FILE.py -o CACHE``."""

import sys

from taskproc.cli import main

sys.exit(main())
