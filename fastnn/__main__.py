"""``python -m fastnn`` is the ``fastnn`` command."""

import sys

from .cli import main

sys.exit(main())
