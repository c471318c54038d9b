"""``python -m bitrobust.cli``."""

import sys

from bitrobust.cli import main

sys.exit(main())
