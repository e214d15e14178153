"""The benchmark's own no-op tasks: PocketQueue's sync and async ones, and RQ's function.

Workers find the PocketQueue tasks with TASK_MODULES=bench_tasks (bench/ is on their
PYTHONPATH). The two PocketQueue tasks differ only in `async def`, so a drain of each
prices the event loop and nothing else.
"""

from __future__ import annotations

from pocketqueue.worker.tasks import JobContext, task

SYNC_NOOP = "bench.pq_noop"
ASYNC_NOOP = "bench.pq_async_noop"
TASK_MODULE = "bench_tasks"


@task(name=SYNC_NOOP)
def noop(job: JobContext) -> None:
    """Does nothing: the cost measured is the queue's own."""


@task(name=ASYNC_NOOP)
async def async_noop(job: JobContext) -> None:
    """Does nothing, on the pool process's event loop."""


def rq_noop() -> None:
    """What RQ enqueues (by its import path; no RQ worker runs it here)."""
