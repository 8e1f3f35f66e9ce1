import sys

from svgan.cli import main

sys.exit(main(["prepare", *sys.argv[1:]]))
