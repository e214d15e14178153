"""PocketQueue's errors: one base class, each subclass knows its HTTP status.

    QueueError                      500  (base; never raised bare)
    ├── ConfigurationError          500  settings that cannot work (caught at start-up)
    ├── InvalidRequest              422  the request cannot become a job
    │   └── InvalidArguments        422  args/kwargs do not fit the task's signature
    ├── Unauthorized                401  no API key, or one that is not configured
    ├── Forbidden                   403  the key's role may not do this
    ├── CrossSiteRefused            403  a cookie-authenticated change without the CSRF header
    ├── TooManyRequests             429  over a limit; `Retry-After` says when to come back
    │   ├── RateLimited             429  the key's dispatch rate
    │   └── TooManyStreams          429  the key's concurrent event streams
    ├── NotFound                    404
    │   ├── TaskNotRegistered       404  no task registered under that name
    │   └── JobNotFound             404  no job with that id (or it expired)
    ├── Conflict                    409
    │   ├── JobAlreadyFinished      409  e.g. cancelling a completed job
    │   ├── JobNotFailed            409  re-driving a job that is not in the dead-letter set
    │   ├── IdempotencyKeyReused    409  an Idempotency-Key sent again with a different body
    │   └── UniqueJobActive         409  another active job holds the unique_key
    ├── JobFailed                   502  a job awaited with `.result()` failed or was cancelled
    ├── JobTimeout                  504  a job awaited with `.result()` had not finished in time
    └── ServiceUnavailable          503
        └── RedisUnavailable        503  Redis did not answer
            └── DispatchOutcomeUnknown  503  Redis stopped answering mid-dispatch: the job may exist

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

    def extensions(self) -> dict[str, str]:
        """Extra members for the problem body (e.g. the id of the job concerned)."""
        return {}

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. `Retry-After` on a 429)."""
        return {}


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


class Unauthorized(QueueError):
    status_code = 401
    title = "Unauthorized"
    slug = "unauthorized"

    def headers(self) -> dict[str, str]:
        # RFC 9110: a 401 names the scheme it takes.
        return {"WWW-Authenticate": 'Bearer realm="pocketqueue"'}


class Forbidden(QueueError):
    status_code = 403
    title = "Forbidden"
    slug = "forbidden"

    def __init__(self, key_name: str, role: str, needed: str) -> None:
        super().__init__(f"Key {key_name!r} has the {role} role; this needs the {needed} role (or higher).")
        self.needed = needed

    def extensions(self) -> dict[str, str]:
        return {"required_role": self.needed}


class CrossSiteRefused(QueueError):
    status_code = 403
    title = "Cross-site request refused"
    slug = "cross-site-request"

    def __init__(self) -> None:
        super().__init__(
            "A request authenticated by the dashboard's session cookie that changes something must carry "
            "the header X-PocketQueue-CSRF: 1 (the dashboard sends it; a cross-site form cannot)."
        )


class TooManyRequests(QueueError):
    status_code = 429
    title = "Too many requests"
    slug = "too-many-requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(TooManyRequests):
    title = "Rate limit reached"
    slug = "rate-limited"


class TooManyStreams(TooManyRequests):
    title = "Too many event streams"
    slug = "too-many-streams"


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
        super().__init__(f"Job {job_id!r} is already {status}; only jobs that have not finished can be cancelled.")
        self.job_id = job_id
        self.status = status


class JobNotFailed(Conflict):
    title = "Job is not failed"
    slug = "job-not-failed"

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"Job {job_id!r} is {status}; only failed (dead-lettered) jobs can be re-driven.")
        self.job_id = job_id
        self.status = status

    def extensions(self) -> dict[str, str]:
        return {"job_id": self.job_id, "job_status": self.status}


class IdempotencyKeyReused(Conflict):
    title = "Idempotency key reused"
    slug = "idempotency-key-reused"

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"Idempotency key {key!r} already created job {job_id!r} from a different request body; "
            "send the same body to get that job back, or use a new key for a new job."
        )
        self.job_id = job_id

    def extensions(self) -> dict[str, str]:
        return {"job_id": self.job_id}


class UniqueJobActive(Conflict):
    title = "A job with this unique_key is active"
    slug = "unique-job-active"

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"Job {job_id!r} holds unique_key {key!r} and has not finished; "
            "wait for it (GET /api/queue/wait/{job_id}) or cancel it first."
        )
        self.job_id = job_id

    def extensions(self) -> dict[str, str]:
        return {"job_id": self.job_id}


class JobFailed(QueueError):
    """`handle.result()`: the job failed (or was cancelled); carries its error and traceback.

    502 if a route lets it through: the work that request stood on failed.
    """

    status_code = 502
    title = "Job failed"
    slug = "job-failed"

    def __init__(
        self, job_id: str, status: str, error_type: str, message: str, remote_traceback: str | None = None
    ) -> None:
        super().__init__(f"Job {job_id!r} {status}: {error_type}: {message}")
        self.job_id = job_id
        self.status = status
        self.error_type = error_type  # the exception's class name in the task, e.g. "ValueError"
        self.message = message
        self.remote_traceback = remote_traceback  # the task's traceback, as the worker saw it

    def extensions(self) -> dict[str, str]:
        return {"job_id": self.job_id, "status": self.status, "error_type": self.error_type}


class JobTimeout(QueueError, TimeoutError):
    """`handle.result(timeout)`: the job had not finished when the timeout passed (it goes on)."""

    status_code = 504
    title = "Job not finished in time"
    slug = "job-timeout"

    def __init__(self, job_id: str, status: str, timeout: float) -> None:
        super().__init__(f"Job {job_id!r} is still {status} after {timeout:g} s; it goes on (wait again or cancel it).")
        self.job_id = job_id
        self.status = status

    def extensions(self) -> dict[str, str]:
        return {"job_id": self.job_id, "status": self.status}


class ServiceUnavailable(QueueError):
    status_code = 503
    title = "Service unavailable"
    slug = "service-unavailable"


class RedisUnavailable(ServiceUnavailable):
    title = "Redis unavailable"
    slug = "redis-unavailable"

    def __init__(self, detail: str = "Redis did not answer; retry shortly.") -> None:
        super().__init__(detail)


class DispatchOutcomeUnknown(RedisUnavailable):
    title = "Dispatch outcome unknown"
    slug = "dispatch-outcome-unknown"

    def __init__(self, job_id: str) -> None:
        # The script may have reached Redis before the connection failed (or reach it when
        # a cut link returns: the kernel still holds it): only the record can tell.
        super().__init__(
            f"Redis stopped answering while job {job_id!r} was being written, so it may or may not exist: "
            f"GET /api/queue/status/{job_id} tells (404: it was not created). To retry a dispatch safely, "
            "send an Idempotency-Key."
        )
        self.job_id = job_id

    def extensions(self) -> dict[str, str]:
        return {"job_id": self.job_id}
