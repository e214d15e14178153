"""The event loop that runs `async def` tasks: one per pool process, reused for every job.

A loop per job (asyncio.run) would cost its set-up and tear-down on each job and close
whatever the task's libraries cached on the loop (connection pools, clients). A forked
child starts its own: a loop must never cross a fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Coroutine
from typing import Any

_loop: tuple[int, asyncio.AbstractEventLoop] | None = None


def process_loop() -> asyncio.AbstractEventLoop:
    """This process's loop for tasks, made on first use (and again after a fork)."""
    global _loop
    if _loop is None or _loop[0] != os.getpid() or _loop[1].is_closed():
        _loop = (os.getpid(), asyncio.new_event_loop())
    return _loop[1]


def run_coroutine(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a task's coroutine to its end on the process's loop; its exception propagates.

    If something interrupts the loop itself (the soft time limit's exception, raised by a
    signal handler wherever the loop is), the task is cancelled and unwound before the
    error goes on, so the next job finds a clean loop.
    """
    loop = process_loop()
    future = loop.create_task(coroutine)
    try:
        return loop.run_until_complete(future)
    except BaseException:
        if not future.done():
            future.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(future)
        raise
