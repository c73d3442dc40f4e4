"""``python -m compat.cli``: the ``modelport`` command."""

import sys

from . import main

sys.exit(main())
