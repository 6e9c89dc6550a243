"""Script entry point for ``attnzoo leaderboard``, taking the same arguments: ``python scripts/leaderboard.py --help``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from attnzoo_cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["leaderboard", *sys.argv[1:]]))
