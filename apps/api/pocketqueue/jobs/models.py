"""The job record: its statuses, its fields, and how it is stored in a Redis hash."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    QUEUED = "queued"  # accepted and on the broker, waiting for a worker
    PROCESSING = "processing"  # a worker claimed it and is running it
    COMPLETED = "completed"  # the task returned; `result` holds its return value
    FAILED = "failed"  # the task raised (or broke a limit); `error` says why
    CANCELLED = "cancelled"  # cancelled before or while running; it will never run again

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobError(BaseModel):
    """Why a job failed."""

    type: str
    message: str
    traceback: str | None = None


class Job(BaseModel):
    """One job: one Celery task, tracked in a Redis hash under `job_id`."""

    job_id: str
    task: str
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus
    progress: int = Field(default=0, ge=0, le=100)
    step: str | None = None
    result: Any = None
    error: JobError | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None

    def to_hash(self, ttl_seconds: int) -> dict[str, str]:
        """The fields written when the job is created; workers fill in the rest."""
        return {
            "job_id": self.job_id,
            "task": self.task,
            "args": json.dumps(self.args),
            "kwargs": json.dumps(self.kwargs),
            "status": self.status.value,
            "progress": "0",
            "attempts": "0",
            "created_at": _timestamp(self.created_at),
            # Decided at dispatch so every worker expires the record the same way.
            "ttl": str(ttl_seconds),
        }

    @classmethod
    def from_hash(cls, raw: Mapping[Any, Any]) -> Job:
        """Decode a record read with `decode_responses=True` (str keys and values)."""
        return cls(
            job_id=raw["job_id"],
            task=raw["task"],
            args=json.loads(raw.get("args", "[]")),
            kwargs=json.loads(raw.get("kwargs", "{}")),
            status=JobStatus(raw["status"]),
            progress=int(raw.get("progress", "0")),
            step=raw.get("step") or None,
            result=json.loads(raw["result"]) if "result" in raw else None,
            error=JobError.model_validate_json(raw["error"]) if "error" in raw else None,
            attempts=int(raw.get("attempts", "0")),
            created_at=_datetime(raw["created_at"]),
            started_at=_datetime(raw["started_at"]) if "started_at" in raw else None,
            finished_at=_datetime(raw["finished_at"]) if "finished_at" in raw else None,
            worker=raw.get("worker") or None,
        )


def now_timestamp() -> str:
    """Seconds since the epoch, as stored in records and used as index scores."""
    return f"{datetime.now(UTC).timestamp():.6f}"


def _timestamp(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def _datetime(stamp: str) -> datetime:
    return datetime.fromtimestamp(float(stamp), tz=UTC)
