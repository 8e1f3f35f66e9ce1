"""``python train.py --config configs/demo_brats.yaml --data PREPARED``: the same as ``svgan train``."""

import sys

from svgan.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
