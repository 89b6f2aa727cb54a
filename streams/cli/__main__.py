"""``python -m streams.cli``: the ``loyalty`` command."""

import sys

from streams.cli import main

sys.exit(main())
