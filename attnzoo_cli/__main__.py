"""``python -m attnzoo_cli`` runs the command line (``attnzoo`` and ``python -m attnzoo`` do the same)."""

import sys

from attnzoo_cli import main

sys.exit(main())
