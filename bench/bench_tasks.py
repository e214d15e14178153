"""The benchmark's own no-op tasks: PocketQueue's sync and async ones, and RQ's function.

Workers find the PocketQueue tasks with TASK_MODULES=bench_tasks (bench/ is on their
PYTHONPATH). The two PocketQueue tasks differ only in `async def`, so a drain of each
prices the event loop and nothing else.
"""

from __future__ import annotations

import itertools
from typing import Any

from pocketflow import AsyncFlow, AsyncNode

from pocketqueue.pipelines.flow_task import flow_task
from pocketqueue.pipelines.stages import stage
from pocketqueue.worker.tasks import JobContext, task

SYNC_NOOP = "bench.pq_noop"
ASYNC_NOOP = "bench.pq_async_noop"
FLOW_NOOP = "bench.pq_flow_noop"
FLOW_STAGES = 5
TASK_MODULE = "bench_tasks"


@task(name=SYNC_NOOP)
def noop(job: JobContext) -> None:
    """Does nothing: the cost measured is the queue's own."""


@task(name=ASYNC_NOOP)
async def async_noop(job: JobContext) -> None:
    """Does nothing, on the pool process's event loop."""


class _Noop(AsyncNode):  # type: ignore[misc]
    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> None:
        shared["n"] = shared.get("n", 0) + 1  # a store that changes, as a real stage's does


@flow_task(name=FLOW_NOOP)
def flow_noop() -> AsyncFlow:
    """FLOW_STAGES no-op nodes: the cost measured is the checkpoints' (against `noop`)."""
    nodes = [stage(f"s{n}", _Noop()) for n in range(FLOW_STAGES)]
    for before, after in itertools.pairwise(nodes):
        before >> after
    return AsyncFlow(start=nodes[0])


def rq_noop() -> None:
    """What RQ enqueues (by its import path; no RQ worker runs it here)."""
