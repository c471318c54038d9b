"""``python -m bitrobust``: the same as the ``bitrobust`` command."""

import sys

from bitrobust.cli import main

sys.exit(main())
