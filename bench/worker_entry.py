"""Start a Celery worker (PocketQueue's or the plain one) that says when it is ready.

    python worker_entry.py pocketqueue READY_FILE   # what `python -m pocketqueue worker` runs
    python worker_entry.py plain READY_FILE         # `celery -A plain_celery worker`, same settings

READY_FILE is created on Celery's `worker_ready` signal, so the benchmark can time a
drain from the moment the worker is ready rather than from process start (imports,
broker connection and mingle take a second or two).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from celery.signals import worker_ready


def main(argv: list[str]) -> int:
    kind, ready_file = argv
    ready = Path(ready_file)

    def announce(**_: Any) -> None:
        ready.touch()

    worker_ready.connect(announce, weak=False)
    if kind == "pocketqueue":
        from pocketqueue.cli import main as pocketqueue_main

        return pocketqueue_main(["worker"])
    if kind == "plain":
        from plain_celery import QUEUE, app_from_env

        app_from_env().worker_main(
            [
                "worker",
                f"--loglevel={os.environ.get('LOG_LEVEL', 'WARNING')}",
                "--concurrency=2",
                f"--queues={QUEUE}",
                f"--hostname=plain.{os.getpid()}@%h",
            ]
        )
        return 0
    raise SystemExit(f"unknown worker kind {kind!r}: use 'pocketqueue' or 'plain'")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
