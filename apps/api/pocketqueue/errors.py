"""PocketQueue's errors: one base class, each subclass knows its HTTP status.

    QueueError                      500  (base; never raised bare)
    ├── ConfigurationError          500  settings that cannot work (caught at start-up)
    ├── InvalidRequest              422  the request cannot become a job
    │   └── InvalidArguments        422  args/kwargs do not fit the task's signature
    ├── NotFound                    404
    │   ├── TaskNotRegistered       404  no task registered under that name
    │   └── JobNotFound             404  no job with that id (or it expired)
    ├── Conflict                    409
    │   └── JobAlreadyFinished      409  e.g. cancelling a completed job
    └── ServiceUnavailable          503
        └── RedisUnavailable        503  Redis did not answer

The API turns every one of them into an RFC 9457 `application/problem+json` body.
"""

from __future__ import annotations


class QueueError(Exception):
    """Base of every error PocketQueue raises on purpose."""

    status_code: int = 500
    title: str = "Internal error"
    slug: str = "internal-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigurationError(QueueError):
    title = "Configuration error"
    slug = "configuration-error"


class InvalidRequest(QueueError):
    status_code = 422
    title = "Invalid request"
    slug = "invalid-request"


class InvalidArguments(InvalidRequest):
    title = "Arguments do not fit the task"
    slug = "invalid-arguments"


class NotFound(QueueError):
    status_code = 404
    title = "Not found"
    slug = "not-found"


class TaskNotRegistered(NotFound):
    title = "Task not registered"
    slug = "task-not-registered"

    def __init__(self, task: str) -> None:
        super().__init__(f"No task named {task!r} is registered. Registered tasks are listed by GET /api/queue/tasks.")
        self.task = task


class JobNotFound(NotFound):
    title = "Job not found"
    slug = "job-not-found"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"No job with id {job_id!r} (never created, or expired).")
        self.job_id = job_id


class Conflict(QueueError):
    status_code = 409
    title = "Conflict"
    slug = "conflict"


class JobAlreadyFinished(Conflict):
    title = "Job already finished"
    slug = "job-already-finished"

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"Job {job_id!r} is already {status}; only queued or running jobs can be cancelled.")
        self.job_id = job_id
        self.status = status


class ServiceUnavailable(QueueError):
    status_code = 503
    title = "Service unavailable"
    slug = "service-unavailable"


class RedisUnavailable(ServiceUnavailable):
    title = "Redis unavailable"
    slug = "redis-unavailable"

    def __init__(self, detail: str = "Redis did not answer; retry shortly.") -> None:
        super().__init__(detail)
