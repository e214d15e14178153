"""`@flow_task`: a PocketFlow flow registered as a job task, run durably by the queue.

    @flow_task(name="books.process", stages={"extract": 20, "segment": 15, "audio": 65})
    def process_book() -> AsyncFlow:
        extract, segment, audio = Extract(), Segment(), Audio()
        extract >> segment >> audio
        return AsyncFlow(start=extract)

    process_book.delay(book_id=42)     # the keyword arguments seed the shared store

The factory is called once as the task registers (to check the stages) and once per
attempt (a fresh flow, so nodes never share state across jobs). Each attempt resumes
from the job's last checkpoint (runner.py). The job's result is the shared store as the
flow left it, so keep what you return in it, and drop what you do not need (it is also
what every checkpoint saves).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pocketflow import AsyncBatchFlow, BatchFlow, Flow

from pocketqueue.client.task import Task
from pocketqueue.pipelines import stages as stage_list
from pocketqueue.pipelines.runner import run_flow
from pocketqueue.worker.context import JobContext
from pocketqueue.worker.tasks import task


def flow_task(
    name: str,
    *,
    stages: Mapping[str, float] | None = None,
    max_retries: int | None = None,
    retry_delays: Iterable[float] | None = None,
    retry_on: Iterable[type[BaseException]] | None = None,
    queue: str | None = None,
    time_limit: int | None = None,
    soft_time_limit: int | None = None,
) -> Callable[[Callable[[], Flow]], Task[..., Any]]:
    """Register the flow `factory()` returns as the job task `name`.

    stages: each stage's weight in the job's progress, by stage name (every stage, or
      none for equal shares). A stage is a node, named for its class in snake case, or
      as `pocketqueue.stage(name, node)` names it.
    The other options are `@task`'s: retries and time limits apply to the whole job;
    a retry resumes after the last completed node.
    """
    given = dict(stages) if stages is not None else None

    def decorate(factory: Callable[[], Flow]) -> Task[..., Any]:
        flow = factory()
        if not isinstance(flow, Flow) or isinstance(flow, BatchFlow | AsyncBatchFlow):
            raise ValueError(f"flow task {name!r}: the factory must return a Flow or an AsyncFlow (not a batch flow)")
        stage_list.weights(list(stage_list.nodes_by_stage(flow)), given)  # raises on a clash or a bad weight

        async def run(job: JobContext, **shared: Any) -> dict[str, Any]:
            return await run_flow(job, factory, given, dict(shared))

        # The registry tells a re-import from a clash by the function's origin: the factory's.
        run.__name__, run.__qualname__, run.__module__ = factory.__name__, factory.__qualname__, factory.__module__
        run.__doc__ = factory.__doc__
        register = task(
            name,
            max_retries=max_retries,
            retry_delays=retry_delays,
            retry_on=retry_on,
            queue=queue,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
        )
        return register(run)

    return decorate
