"""``python -m attnzoo`` (and ``torchrun -m attnzoo``) runs the command line."""

import sys

from attnzoo_cli import main

sys.exit(main())
