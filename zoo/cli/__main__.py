"""``python -m zoo.cli``."""

import sys

from . import main

sys.exit(main())
