"""PocketQueue: a job queue on Celery and Redis, with an HTTP API and PocketFlow nodes.

from pocketqueue import task

@task(name="videos.generate")
def generate(job, video_id: str) -> dict:
    job.progress(50, step="rendering")
    return {"video_id": video_id}

generate.delay("v1").result(timeout=60)
"""

from typing import TYPE_CHECKING, Any

from pocketqueue.client.handle import AsyncJobHandle, JobHandle
from pocketqueue.client.task import Task
from pocketqueue.errors import JobFailed, JobTimeout, QueueError
from pocketqueue.jobs.models import Priority
from pocketqueue.jobs.registry import PermanentError
from pocketqueue.pipelines.flow_task import flow_task
from pocketqueue.pipelines.runner import StageContext, current_stage
from pocketqueue.pipelines.stages import stage
from pocketqueue.schedules import Schedule, schedule
from pocketqueue.worker.tasks import JobCancelled, JobContext, task

if TYPE_CHECKING:
    from pocketqueue.client.aio import AsyncClient
    from pocketqueue.client.sync import Client

__all__ = [
    "AsyncClient",
    "AsyncJobHandle",
    "Client",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobHandle",
    "JobTimeout",
    "PermanentError",
    "Priority",
    "QueueError",
    "Schedule",
    "StageContext",
    "Task",
    "current_stage",
    "flow_task",
    "schedule",
    "stage",
    "task",
]


def __getattr__(name: str) -> Any:
    # The clients import the runtime, which imports the worker's Celery app: loaded on first use.
    if name in ("Client", "AsyncClient"):
        import pocketqueue.client

        return getattr(pocketqueue.client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
