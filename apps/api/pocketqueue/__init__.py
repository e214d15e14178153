"""PocketQueue: a job queue on Celery and Redis, with an HTTP API and PocketFlow nodes.

from pocketqueue import task

@task(name="videos.generate")
def generate(job, video_id: str) -> dict:
    job.progress(50, step="rendering")
    return {"video_id": video_id}
"""

from pocketqueue.jobs.models import Priority
from pocketqueue.jobs.registry import PermanentError
from pocketqueue.worker.tasks import JobCancelled, JobContext, task

__all__ = ["JobCancelled", "JobContext", "PermanentError", "Priority", "task"]
