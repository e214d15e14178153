import sys

from pocketqueue.cli import main

sys.exit(main())
