"""``python -m taskproc FILE.py -o CACHE``."""

import sys

from .cli import main

sys.exit(main())
