"""Benchmark attention overhead: ``python scripts/bench.py resnet50_se resnet50_cbam [options]``.

The same as ``attnzoo bench``; see ``docs/performance.md`` for the commands behind the published numbers.
"""

import sys

from attnzoo_cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
