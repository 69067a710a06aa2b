"""Entry point for ``python -m ciea``."""

import sys

from ciea.cli import main

sys.exit(main())
