"""``python evaluate.py RUN_DIR``: the same as ``svgan evaluate``."""

import sys

from svgan.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
