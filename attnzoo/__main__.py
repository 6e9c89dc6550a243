"""``python -m attnzoo`` (and ``torchrun -m attnzoo``) runs the command line."""

import sys

from attnzoo.cli import main

sys.exit(main())
