"""The job record: its statuses, its fields, and how it is stored in a Redis hash."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from pocketqueue.errors import QueueError
from pocketqueue.jobs.payload import check_json

# Values read back from a record are checked as dispatch checks them, at the deepest
# nesting any setting allows: a record written by an older version (or by hand) that
# breaks the rules is shown with that field emptied and named in `unreadable`, instead
# of failing every read, wait and listing that touches it.
READ_DEPTH = 64

# The record format this code writes and understands (field `v` of every record). Raise it
# whenever a change means older workers would misread a record: during a rolling upgrade
# an older worker then hands such a job back for a newer one instead of running it. A
# newer version must always read every older format.
RECORD_FORMAT = 1


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"  # delayed: waits in PocketQueue's schedule until `run_at`
    QUEUED = "queued"  # on the broker, waiting for a worker
    PROCESSING = "processing"  # a worker claimed it and is running it
    RETRYING = "retrying"  # an attempt failed; waits in the schedule for its backoff
    COMPLETED = "completed"  # the task returned; `result` holds its return value
    PARTIAL = "partial"  # the task finished with some steps failed: `result` and `partial_errors`
    FAILED = "failed"  # no attempts left (or a permanent error); in the dead-letter set
    CANCELLED = "cancelled"  # cancelled before or while running; it will never run again

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE_STATUSES = frozenset(set(JobStatus) - FINISHED_STATUSES)


class Priority(StrEnum):
    """Which of the queue's lists a job's message goes to; workers drain `high` first."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def broker_priority(self) -> int:
        # kombu's Redis transport keeps one list per priority step and pops the lowest
        # number first (see `celery_priority_steps`), so high is 0.
        return {"high": 0, "normal": 3, "low": 6}[self.value]


class JobError(BaseModel):
    """Why an attempt failed."""

    type: str
    message: str
    traceback: str | None = None
    attempt: int | None = None  # which attempt raised it (None: the job never started)


class CeleryCaller(BaseModel):
    """What a plain Celery message asked beyond the job itself (a job a worker adopted).

    Kept on the record so every attempt honours it, whatever message carries that attempt
    (a retry or a recovery is published afresh from the record: see worker/adopt.py).
    """

    result: bool = False  # its outcome also goes to Celery's result backend (the message did not ignore it)
    # Celery canvas, as signature dicts: the steps Celery sends after this one succeeds
    # (`chain`), the tasks linked to its success (`link`) and to its failure (`link_error`).
    chain: list[dict[str, Any]] | None = None
    link: list[dict[str, Any]] | None = None
    link_error: list[dict[str, Any]] | None = None


class StageStatus(StrEnum):
    PENDING = "pending"  # not reached yet
    RUNNING = "running"  # its node is running (or was, when the attempt ended)
    COMPLETED = "completed"  # its node finished and the checkpoint after it is saved
    FAILED = "failed"  # its node raised (the job may retry: it resumes here)
    SKIPPED = "skipped"  # the flow ended on another branch


class Stage(BaseModel):
    """One node of a flow job (pocketqueue.pipelines): what the record shows of it."""

    name: str
    weight: float  # its share of the job's progress, in percent
    status: StageStatus = StageStatus.PENDING
    started_at: datetime | None = None  # its latest start
    finished_at: datetime | None = None
    attempts: int = 0  # how many times its node started
    error: str | None = None  # why its node last failed


class Job(BaseModel):
    """One job: one Celery task, tracked in a Redis hash under `job_id`."""

    job_id: str
    task: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus
    priority: Priority = Priority.NORMAL
    progress: int = Field(default=0, ge=0, le=100)
    step: str | None = None
    result: Any = None
    partial_errors: list[Any] | None = None
    error: JobError | None = None  # the last attempt's error
    attempt_errors: list[JobError] = Field(default_factory=list)  # every failed attempt's error, oldest first
    attempts: int = 0  # every start counts, including one cut short by a crash
    max_retries: int = 0
    created_at: datetime
    run_at: datetime | None = None  # when a scheduled or retrying job is due
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    idempotency_key: str | None = None
    unique_key: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)  # how a caller finds its jobs (`tag=book_id:42`)
    queue: str | None = None  # the queue it was dispatched to (None: written by a version before queues)
    celery: CeleryCaller | None = None  # a plain Celery message a worker adopted (None: dispatched by PocketQueue)
    batch: str | None = None  # the batch it is a child of (pipelines/batches.py)
    dispatched_by: str | None = None  # the name of the API key that dispatched it (None: no key)
    stages: list[Stage] | None = None  # a flow job's stages (None: not a flow job, or not started yet)
    # Fields of the record that could not be decoded (written by an older version, or
    # by hand), with why; they are shown empty. None for every record PocketQueue writes now.
    unreadable: dict[str, str] | None = None

    def to_hash(self, ttl_seconds: int) -> dict[str, str]:
        """The fields written when the job is created; workers fill in the rest."""
        fields = {
            "job_id": self.job_id,
            "task": self.task,
            "args": json.dumps(self.args),
            "kwargs": json.dumps(self.kwargs),
            "status": self.status.value,
            "priority": self.priority.value,
            "progress": "0",
            "attempts": "0",
            "max_retries": str(self.max_retries),
            "created_at": _timestamp(self.created_at),
            # Decided at dispatch so every worker expires the record the same way.
            "ttl": str(ttl_seconds),
            "v": str(RECORD_FORMAT),
        }
        if self.run_at is not None:
            fields["run_at"] = _timestamp(self.run_at)
        if self.idempotency_key is not None:
            fields["idempotency_key"] = self.idempotency_key
        if self.unique_key is not None:
            fields["unique_key"] = self.unique_key
        if self.tags:
            fields["tags"] = json.dumps(self.tags, separators=(",", ":"))
        if self.queue is not None:
            fields["queue"] = self.queue
        if self.batch is not None:
            fields["batch"] = self.batch
        if self.dispatched_by is not None:
            fields["dispatched_by"] = self.dispatched_by
        if self.celery is not None:
            fields["celery"] = self.celery.model_dump_json(exclude_none=True)
        return fields

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Job:
        """Decode a record read with `decode_responses=True` (str keys and values)."""
        unreadable: dict[str, str] = {}
        content = _Content(raw, unreadable)
        return cls(
            job_id=raw["job_id"],
            task=raw["task"],
            args=content.json("args", []),
            kwargs=content.json("kwargs", {}),
            status=JobStatus(raw["status"]),
            priority=Priority(raw.get("priority", "normal")),
            progress=int(raw.get("progress", "0")),
            step=raw.get("step") or None,
            result=content.json("result", None),
            partial_errors=content.json("partial_errors", None),
            error=content.error("error"),
            attempt_errors=[error for key in _attempt_error_fields(raw) if (error := content.error(key))],
            attempts=int(raw.get("attempts", "0")),
            max_retries=int(raw.get("max_retries", "0")),
            created_at=_datetime(raw["created_at"]),
            run_at=_datetime(raw["run_at"]) if "run_at" in raw else None,
            started_at=_datetime(raw["started_at"]) if "started_at" in raw else None,
            finished_at=_datetime(raw["finished_at"]) if "finished_at" in raw else None,
            worker=raw.get("worker") or None,
            idempotency_key=raw.get("idempotency_key") or None,
            unique_key=raw.get("unique_key") or None,
            tags=content.json("tags", {}),
            queue=raw.get("queue") or None,
            celery=content.celery_caller(),
            batch=raw.get("batch") or None,
            dispatched_by=raw.get("dispatched_by") or None,
            stages=content.stages(),
            unreadable=unreadable or None,
        )


class _Content:
    """Decodes a record's JSON fields, noting (not raising) those that cannot be shown."""

    def __init__(self, raw: Mapping[Any, Any], unreadable: dict[str, str]) -> None:
        self.raw = raw
        self.unreadable = unreadable

    def json(self, name: str, empty: Any) -> Any:
        text = self.raw.get(name)
        if text is None:
            return empty
        try:
            value = json.loads(text)
            check_json(value, name, READ_DEPTH)
        except (ValueError, RecursionError, QueueError) as exc:
            self.unreadable[name] = str(exc)[:500]
            return empty
        return value

    def celery_caller(self) -> CeleryCaller | None:
        value = self.json("celery", None)
        try:
            return CeleryCaller.model_validate(value) if value is not None else None
        except ValidationError as exc:
            self.unreadable["celery"] = str(exc)[:500]
            return None

    def stages(self) -> list[Stage] | None:
        text = self.raw.get("stages")
        if text is None:
            return None
        try:
            return [Stage.model_validate(stage) for stage in json.loads(text)]
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            self.unreadable["stages"] = str(exc)[:500]
            return None

    def error(self, name: str) -> JobError | None:
        text = self.raw.get(name)
        if text is None:
            return None
        try:
            error = JobError.model_validate_json(text)
            for part, value in (("message", error.message), ("traceback", error.traceback)):
                check_json(value, f"{name}.{part}", 1)
        except (ValidationError, QueueError) as exc:
            self.unreadable[name] = str(exc)[:500]
            return None
        return error


log = logging.getLogger(__name__)


def decode_record(job_id: str, raw: Mapping[Any, Any]) -> Job | None:
    """The job in `raw` (an HGETALL reply), or None if there is none or it cannot be a job at all.

    Fields a caller sent or a task returned are decoded leniently (see `Job.unreadable`).
    The fields PocketQueue's own scripts write (status, times, counters) can only be
    broken by hand; such a record is logged and read as missing, so it can never break
    a listing or a batch read for everyone else.
    """
    if not raw:
        return None
    try:
        return Job.from_hash(raw)
    except (KeyError, ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        log.warning("job %s: record cannot be decoded (%s: %s); read as missing", job_id, type(exc).__name__, exc)
        return None


# Each failed attempt's error is its own hash field, `error:<attempt>`, so recording one
# is a single HSET (no read-modify-write of a list), and a re-drive deletes them all.
ATTEMPT_ERROR_PREFIX = "error:"


def _attempt_error_fields(raw: Mapping[Any, Any]) -> list[str]:
    keys = [key for key in raw if key.startswith(ATTEMPT_ERROR_PREFIX)]
    return sorted(keys, key=lambda key: int(key[len(ATTEMPT_ERROR_PREFIX) :]))


def now_timestamp() -> str:
    """Seconds since the epoch, as stored in records and used as index scores."""
    return f"{datetime.now(UTC).timestamp():.6f}"


def _timestamp(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def _datetime(stamp: str) -> datetime:
    return datetime.fromtimestamp(float(stamp), tz=UTC)
