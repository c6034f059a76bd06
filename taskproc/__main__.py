"""``python -m taskproc FILE.py -o CACHE``."""

import sys

from taskproc.cli._main import main

sys.exit(main())
