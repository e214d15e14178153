"""Keep `python -m pocketqueue up`'s children running: restart one that exits, with backoff.

Only Ctrl-C or SIGTERM to `up` stops the system. A worker that crashes, is killed, or is
told to shut down (`celery -A pocketqueue.worker control shutdown`) comes back on its own,
and so do the API and the local Redis (its AOF keeps accepted jobs, and it restarts on the
same port, so the worker and the API reconnect without being restarted themselves).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from pocketqueue.errors import QueueError

Process = subprocess.Popen[bytes]

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
# A child that stayed up this long has recovered: its next crash waits FIRST_DELAY_SECONDS
# again instead of continuing the doubling of an old, unrelated streak of crashes.
STABLE_AFTER_SECONDS = 60.0
# What `python -m pocketqueue` returns for settings that cannot work (see cli.main); on a
# child's first run it is a start-up error that a restart would only repeat.
CONFIGURATION_ERROR_EXIT = 2


def describe_exit(code: int) -> str:
    """`code -9 (signal SIGKILL)`: an exit code as an operator reads it."""
    if code < 0:
        try:
            return f"code {code} (signal {signal.Signals(-code).name})"
        except ValueError:
            return f"code {code} (signal {-code})"
    if code == 0:
        return "code 0 (shut down on request, e.g. `celery control shutdown`; only Ctrl-C or SIGTERM stops `up`)"
    return f"code {code}"


@dataclass
class Child:
    """A process `up` keeps running: how to start and stop it, and its restart history."""

    name: str
    start: Callable[[], Process]
    stop: Callable[[Process], None]
    process: Process | None = None
    started_at: float = 0.0
    restarts: int = 0  # since `up` started, for the log line
    next_delay: float = FIRST_DELAY_SECONDS
    restart_at: float | None = None  # set while it waits out its backoff

    def launch(self) -> None:
        self.process = self.start()
        self.started_at = time.monotonic()
        self.restart_at = None

    def exit_code(self) -> int | None:
        """The exit code if the process has exited (and was not yet seen doing so)."""
        if self.process is None or self.restart_at is not None:
            return None
        return self.process.poll()

    def schedule_restart(self, now: float) -> float:
        """Back off (1 s, 2 s, 4 s ... capped) and return the delay."""
        if now - self.started_at >= STABLE_AFTER_SECONDS:
            self.next_delay = FIRST_DELAY_SECONDS
        delay = self.next_delay
        self.next_delay = min(delay * 2, MAX_DELAY_SECONDS)
        self.restarts += 1
        self.restart_at = now + delay
        return delay


class Supervisor:
    """Starts children in order, restarts any that exits, and stops them in reverse order."""

    def __init__(self) -> None:
        self.children: list[Child] = []
        self.failure: str | None = None  # why it gave up, if it did

    def start(self, child: Child) -> None:
        self.children.append(child)
        child.launch()

    def keep_running(self) -> bool:
        """One round of checks (called every fraction of a second); False once it gives up."""
        now = time.monotonic()
        for child in self.children:  # in start order: Redis is back before the others need it
            code = child.exit_code()
            if code is not None:
                self._exited(child, code, now)
            elif child.restart_at is not None and now >= child.restart_at:
                self._restart(child)
            if self.failure is not None:
                _say(self.failure)
                return False
        return True

    def _exited(self, child: Child, code: int, now: float) -> None:
        assert child.process is not None
        _kill_leftovers(child.process)
        if code == CONFIGURATION_ERROR_EXIT and child.restarts == 0:
            self.failure = f"{child.name} could not start ({describe_exit(code)}, see above); stopping everything."
            return
        delay = child.schedule_restart(now)
        _say(f"{child.name} exited with {describe_exit(code)}; restarting in {delay:g} s (restart {child.restarts})")

    def _restart(self, child: Child) -> None:
        try:
            child.launch()
        except QueueError as exc:  # e.g. the local Redis's port was taken meanwhile
            self.failure = f"could not restart {child.name}: {exc.detail}; stopping everything."

    def stop_all(self) -> None:
        # Reverse order: the API stops taking jobs before the worker finishes its own,
        # and Redis, which both need until then, goes last.
        for child in reversed(self.children):
            if child.process is not None:
                child.stop(child.process)


def _kill_leftovers(process: Process) -> None:
    """SIGKILL what is left of a dead child's process group (start_new_session made one).

    A killed worker's prefork pool processes would finish the job in hand unsupervised,
    out of reach of `up`'s Ctrl-C, possibly alongside its redelivery to the new worker.
    While any of them lives, the kernel does not reuse the group's id for a new process.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left: the usual case
        os.killpg(process.pid, signal.SIGKILL)


def _say(message: str) -> None:
    print(f"pocketqueue up: {message}", file=sys.stderr, flush=True)
