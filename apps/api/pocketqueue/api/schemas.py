"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.models import Job, Priority
from pocketqueue.jobs.request import MAX_DELAY_SECONDS, MAX_KEY_LENGTH, QUEUE_PATTERN, DispatchRequest
from pocketqueue.nodes.job_redrive import RedriveReport
from pocketqueue.observe.position import QueuePosition
from pocketqueue.observe.stats import QueueStats
from pocketqueue.observe.workers import WorkerView
from pocketqueue.pipelines.batches import Batch, BatchRequest

MAX_BATCH = 1000
MAX_WAIT_SECONDS = 300.0
DEFAULT_WAIT_SECONDS = 30.0
MAX_PAGE = 500
MAX_OFFSET = 1_000_000  # past this, page with filters instead: Redis walks the set to reach it
Key = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)
# A cursor as the API writes it, `<score>/<job id>` (a float's repr: digits, a fraction, an
# exponent), so that anything the schema admits is one the API can read back.
CURSOR_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,17})?(e[+-]?[0-9]{1,3})?/.{1,200}$"
JobIdField = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]


def _whole_number(value: Any) -> Any:
    # JSON has one number type: to JSON Schema (and every client generated from it) 3.0 is
    # the integer 3. Strictness is about `true` and `"3"`, not about how 3 is spelled.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# After the Field(...) in Annotated: before it, the bounds would drop out of the JSON Schema.
WholeNumber = BeforeValidator(_whole_number)

# Numbers and booleans in request bodies are exact: `{"sleep": false}` is not a number
# and `"5"` is not an int. Per field, not per model: FastAPI validates parsed Python
# values, so a strict model would also refuse ISO 8601 strings for times and enum values.
STRICT = ConfigDict(extra="forbid")


class JobCreate(BaseModel):
    """A job to dispatch: a registered task and its arguments (JSON values)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"task": "pocketqueue.debug", "kwargs": {"sleep": 1, "result": "hi"}}]},
    )

    task: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Priority.NORMAL
    max_retries: Annotated[int, Field(strict=True, ge=0, le=100), WholeNumber] | None = Field(
        default=None, description="Overrides the task's retries"
    )
    delay_seconds: float | None = Field(
        default=None, strict=True, ge=0, le=MAX_DELAY_SECONDS, description="Run no sooner (seconds)"
    )
    eta: AwareDatetime | None = Field(default=None, description="Run no sooner than this (ISO 8601, with offset)")
    idempotency_key: str | None = Key
    unique_key: str | None = Key
    tags: dict[str, str] = Field(
        default_factory=dict,
        max_length=16,
        description="Up to 16 name: value strings (names: letters, digits, `_.-`, up to 64; values up to 128 "
        "printable characters); find the job by them with `GET /jobs?tag=name:value`",
        examples=[{"book_id": "42"}],
    )
    queue: str | None = Field(
        default=None,
        pattern=QUEUE_PATTERN,
        description="The queue to run it on (default: the task's own, else QUEUE_NAME); "
        "workers consume the queues given by WORKER_QUEUES / `worker --queues`",
        examples=["videos"],
    )

    @field_validator("eta", mode="before")
    @classmethod
    def _eta_is_a_time(cls, value: Any) -> Any:
        # Lax parsing would take a number as seconds since 1970; the schema says a string.
        if value is not None and not isinstance(value, str):
            raise ValueError("eta must be an ISO 8601 time string with an offset, e.g. 2030-01-01T09:00:00Z")
        return value

    # What the schema cannot say (nesting depth, lone surrogates, NaN, 64-bit integers,
    # eta's bound, delay_seconds with eta) is checked by DispatchRequest.check, the path
    # every entry point shares: a 422 problem naming the limit, before anything is written.

    def to_request(self, idempotency_key: str | None, dispatched_by: str | None = None) -> DispatchRequest:
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
            tags=self.tags,
            queue=self.queue,
            dispatched_by=dispatched_by,
        )


class JobPublic(Job):
    """A job as the API shows it."""

    # Filled only where the status routes read them (observe/position.py); null otherwise.
    queue_position: int | None = Field(
        default=None, description="A queued job's place in line: how many queued jobs are ahead of it (0: next)"
    )
    estimated_start_seconds: float | None = Field(
        default=None,
        description="A queued job's expected wait before it starts, from the last 5 minutes' finishing rate "
        "(null: not queued, or no job finished lately)",
    )

    @classmethod
    def of(cls, job: Job, position: QueuePosition | None = None) -> JobPublic:
        public = cls.model_validate(job, from_attributes=True)
        if position is not None:
            public.queue_position = position.ahead
            public.estimated_start_seconds = position.estimated_start_seconds
        return public


class BatchCreate(BaseModel):
    """Jobs to dispatch as one batch, and the job to run once they have all ended."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "jobs": [{"task": "pocketqueue.debug", "kwargs": {"result": n}} for n in (1, 2)],
                    "on_complete": {"task": "pocketqueue.debug"},
                    "policy": "continue",
                }
            ]
        },
    )

    jobs: list[JobCreate] = Field(
        min_length=1, description="Dispatched together, all or none (at most QUEUE_MAX_BATCH_JOBS); no keys"
    )
    on_complete: JobCreate | None = Field(
        default=None,
        description="Dispatched once, when every job has ended, with the keyword argument `batch`: "
        "{batch_id, counts, jobs: {job_id: {status, result}}, results_included}",
    )
    policy: Literal["continue", "fail_fast"] = Field(
        default="continue",
        description="continue: a failed job is counted and the rest run on; fail_fast: the first failed job "
        "fails the batch, the jobs still active are cancelled and on_complete does not run",
    )

    def to_request(self, dispatched_by: str | None = None) -> BatchRequest:
        by = dispatched_by
        callback = self.on_complete.to_request(None, by) if self.on_complete is not None else None
        return BatchRequest([job.to_request(None, by) for job in self.jobs], callback, self.policy)


class BatchPublic(BaseModel):
    """A batch: its state, its jobs' counts per final status, and its callback."""

    batch_id: str
    state: Literal["running", "completed", "failed"]
    policy: str
    total: int = Field(description="How many jobs it holds")
    done: int = Field(description="How many of them have ended")
    counts: dict[str, int] = Field(description="Ended jobs per final status")
    jobs: list[str]
    created_at: datetime
    finished_at: datetime | None
    on_complete: str | None = Field(description="The callback's task")
    on_complete_job: str | None = Field(description="The callback's job, once dispatched")

    @classmethod
    def of(cls, batch: Batch) -> BatchPublic:
        return cls.model_validate(batch, from_attributes=True)


class BatchStatusRequest(BaseModel):
    """Job ids to look up together."""

    model_config = STRICT

    job_ids: list[JobIdField] = Field(min_length=1, max_length=MAX_BATCH)


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

    model_config = STRICT

    job_ids: list[JobIdField] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)
    task: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)
    error_type: str | None = Field(default=None, min_length=1, max_length=200)
    cursor: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="Carry on a bulk re-drive where the last answer's `next_cursor` says",
    )

    def position(self) -> tuple[float, str] | None:
        """The cursor as (score, job id), or None to start from the oldest failed job."""
        if self.cursor is None:
            return None
        score, job_id = self.cursor.split("/", 1)
        try:
            return float(score), job_id
        except ValueError:
            raise InvalidRequest(f"cursor {self.cursor!r} is not one this API returned") from None


class RedrivePublic(BaseModel):
    """The jobs queued again, those left alone with why, and where to carry on (a bulk re-drive)."""

    redriven: list[str]
    skipped: dict[str, str]
    next_cursor: str | None = Field(
        default=None,
        description="Set when a bulk re-drive stopped after 5,000 dead letters: send it as `cursor` to carry on",
    )

    @classmethod
    def of(cls, report: RedriveReport) -> RedrivePublic:
        after = report.next_cursor
        cursor = None if after is None else f"{after[0]!r}/{after[1]}"
        return cls(redriven=report.redriven, skipped=report.skipped, next_cursor=cursor)


class DebugJobCreate(BaseModel):
    """Arguments for the built-in `pocketqueue.debug` task."""

    model_config = STRICT

    sleep: float = Field(default=0, strict=True, ge=0, le=3600)
    fail: bool = Field(default=False, strict=True)
    result: Any = None
    steps: Annotated[int, Field(strict=True, ge=0, le=1000), WholeNumber] = 0


class RedisHealth(BaseModel):
    ok: bool
    latency_ms: float | None = None


class StalledWorker(BaseModel):
    """A live worker that is not doing its share, and why (see `GET /workers`)."""

    name: str
    reason: str


class HealthPublic(BaseModel):
    """Whether the API and Redis answer, which workers are live (their heartbeats) and which are stalled."""

    api: str = "ok"
    redis: RedisHealth
    workers: list[str] = Field(description="Live workers, from the worker registry (their heartbeats)")
    stalled: list[StalledWorker] = Field(
        default_factory=list, description="Live workers that do not consume, or consume in name only"
    )
    celery_ping: bool | None = Field(
        default=None, description="With `?ping=true`: whether any worker answered a broadcast ping (takes 1 s)"
    )
    pinged: list[str] | None = Field(default=None, description="With `?ping=true`: the workers that answered it")


class RedisProbePublic(BaseModel):
    """A timed write-read-delete round trip to Redis."""

    ok: bool
    latency_ms: float
    redis_version: str | None = None


class TaskList(BaseModel):
    """Names of the tasks that can be dispatched."""

    tasks: list[str]


class JobList(BaseModel):
    """One page of the job listing, newest first; carry on with `cursor=<next_cursor>`."""

    jobs: list[JobPublic]
    next_cursor: str | None = Field(description="null when nothing is left")


class StatsPublic(QueueStats):
    """Queue depth, delayed jobs, jobs per status, recent throughput, run times per task, dead letters.

    Throughput windows count the current minute so far: "the last 5 minutes" is the 5 whole
    minutes before this one plus this one, and `per_minute` divides by that real length.
    """

    @classmethod
    def of(cls, stats: QueueStats) -> StatsPublic:
        return cls.model_validate(stats, from_attributes=True)


class WorkerPublic(WorkerView):
    """A live worker: who it is, what it runs (with progress), whether it consumes or is stalled."""


class WorkersPublic(BaseModel):
    """Every live worker, by name, from the worker registry."""

    workers: list[WorkerPublic]
    stall_seconds: float = Field(
        description="A consuming worker that receives nothing while a job waits this long, with a free slot, is "
        "stalled (QUEUE_RECOVERY_SECONDS); it is flagged within this plus one heartbeat"
    )
