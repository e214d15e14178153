"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import json
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from pocketqueue.jobs.models import Job, Priority
from pocketqueue.jobs.request import MAX_DELAY_SECONDS, DispatchRequest

MAX_BATCH = 1000
MAX_WAIT_SECONDS = 300.0
DEFAULT_WAIT_SECONDS = 30.0
MAX_PAGE = 500
Key = Field(default=None, min_length=1, max_length=200)


class JobCreate(BaseModel):
    """A job to dispatch: a registered task and its arguments (JSON values)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"task": "pocketqueue.debug", "kwargs": {"sleep": 1, "result": "hi"}}]},
    )

    task: str = Field(min_length=1, max_length=200)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    max_retries: int | None = Field(default=None, ge=0, le=100, description="Overrides the task's retries")
    delay_seconds: float | None = Field(default=None, ge=0, le=MAX_DELAY_SECONDS, description="Run no sooner")
    eta: AwareDatetime | None = Field(default=None, description="Run no sooner than this (ISO 8601, with offset)")
    idempotency_key: str | None = Key
    unique_key: str | None = Key

    @model_validator(mode="after")
    def _strict_json(self) -> JobCreate:
        # Python's JSON parser accepts NaN and Infinity; they are not JSON, so a worker
        # (or another client reading the job) could not read them back.
        try:
            json.dumps([self.args, self.kwargs], allow_nan=False)
        except ValueError:
            raise ValueError("args and kwargs must be plain JSON (no NaN or Infinity)") from None
        if self.delay_seconds is not None and self.eta is not None:
            raise ValueError("give delay_seconds or eta, not both")
        return self

    def to_request(self, idempotency_key: str | None) -> DispatchRequest:
        return DispatchRequest(
            task=self.task,
            args=self.args,
            kwargs=self.kwargs,
            priority=self.priority,
            max_retries=self.max_retries,
            delay_seconds=self.delay_seconds,
            eta=self.eta,
            idempotency_key=idempotency_key or self.idempotency_key,
            unique_key=self.unique_key,
        )


class JobPublic(Job):
    """A job as the API shows it."""

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        return cls.model_validate(job, from_attributes=True)


class BatchStatusRequest(BaseModel):
    """Job ids to look up together."""

    model_config = ConfigDict(extra="forbid")

    job_ids: list[str] = Field(min_length=1, max_length=MAX_BATCH)


class BatchStatusPublic(BaseModel):
    """The jobs found, in request order, and the ids that were not."""

    jobs: list[JobPublic]
    missing: list[str]


class DeadLetterPage(BaseModel):
    """One page of the dead-letter set (failed jobs), newest first."""

    total: int
    offset: int
    limit: int
    jobs: list[JobPublic]


class RedriveRequest(BaseModel):
    """Which dead-lettered jobs to re-drive; an empty body re-drives them all."""

    model_config = ConfigDict(extra="forbid")

    job_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)
    task: str | None = Field(default=None, min_length=1, max_length=200)
    error_type: str | None = Field(default=None, min_length=1, max_length=200)


class RedrivePublic(BaseModel):
    """The jobs queued again, and those left alone with why (their status, or 'missing')."""

    redriven: list[str]
    skipped: dict[str, str]


class DebugJobCreate(BaseModel):
    """Arguments for the built-in `pocketqueue.debug` task."""

    model_config = ConfigDict(extra="forbid")

    sleep: float = Field(default=0, ge=0, le=3600)
    fail: bool = False
    result: Any = None
    steps: int = Field(default=0, ge=0, le=1000)


class RedisHealth(BaseModel):
    ok: bool
    latency_ms: float | None = None


class HealthPublic(BaseModel):
    """Whether the API, Redis and the workers answer."""

    api: str = "ok"
    redis: RedisHealth
    celery_ping: bool
    workers: list[str]


class RedisProbePublic(BaseModel):
    """A timed write-read-delete round trip to Redis."""

    ok: bool
    latency_ms: float
    redis_version: str | None = None


class TaskList(BaseModel):
    """Names of the tasks that can be dispatched."""

    tasks: list[str]
