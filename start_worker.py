"""Start a PocketQueue worker: the same as `python -m pocketqueue worker`."""

import sys

from pocketqueue.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker"]))
