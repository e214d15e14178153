"""Settings: the only place PocketQueue reads the environment (and `.env`)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pocketqueue.errors import ConfigurationError
from pocketqueue.keyring import ANONYMOUS, ApiKey, Keyring, RateLimit, parse_keys, parse_rate, read_key_lines

# Defaults a lower setting cuts down to fit (see _derived_defaults): with one of these
# unset, QUEUE_JOB_TTL_SECONDS=60 or QUEUE_TASK_TIME_LIMIT=60 alone must just work.
DEFAULT_IDEMPOTENCY_TTL_SECONDS = 86_400
DEFAULT_SOFT_TIME_LIMIT = 3_300
SOFT_SHARE_OF_HARD_LIMIT = 11 / 12  # 3300 of 3600: the task keeps a twelfth to clean up

# redis-server's AOF fsync policies PocketQueue offers; "no" is left out on purpose
# (the OS flushes when it likes, so a power loss could drop half a minute of jobs).
LocalRedisAppendFsync = Literal["everysec", "always"]


class Settings(BaseSettings):
    """Every knob, with its default; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Connection URLs may carry passwords, so they are secrets: never logged or returned.
    redis_url: SecretStr | None = None
    celery_broker_url: SecretStr | None = None

    data_dir: Path = Path("var")
    # Durability of the local Redis (started when REDIS_URL is unset); see the README.
    local_redis_appendfsync: LocalRedisAppendFsync = "everysec"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    task_modules: Annotated[list[str], NoDecode] = []
    worker_concurrency: int = Field(default=2, ge=1)
    log_level: str = "INFO"

    queue_name: str = Field(default="pocketqueue", min_length=1)
    # The queues a worker consumes (`worker --queues a,b` overrides it); empty: QUEUE_NAME.
    worker_queues: Annotated[list[str], NoDecode] = []
    queue_key_prefix: str = Field(default="pq", min_length=1)
    queue_job_ttl_seconds: int = Field(default=86_400, ge=1)
    queue_task_time_limit: int = Field(default=3_600, ge=1)
    queue_task_soft_time_limit: int = Field(default=DEFAULT_SOFT_TIME_LIMIT, ge=1)
    queue_recovery_seconds: int = Field(default=60, ge=4)
    queue_max_retries: int = Field(default=3, ge=0, le=100)
    queue_retry_delays: Annotated[list[float], NoDecode] = [5.0, 15.0, 45.0]
    queue_dead_letter_ttl_seconds: int = Field(default=604_800, ge=1)
    queue_idempotency_ttl_seconds: int = Field(default=DEFAULT_IDEMPOTENCY_TTL_SECONDS, ge=1)
    # 20 s: the hand-back that follows it is done well inside Kubernetes' default 30 s
    # (terminationGracePeriodSeconds); see the README for Docker's 10 s and systemd.
    queue_shutdown_grace_seconds: float = Field(default=20.0, ge=0)

    # Limits on what a caller can hand the queue (see jobs/payload.py for why each exists).
    # Nesting is capped at 64 whatever the setting: every hop a job's arguments take (the
    # API's JSON parser and response encoder, Celery's message, billiard's pickle to the
    # pool process) survives well past that, so no accepted job can crash a worker.
    queue_max_json_depth: int = Field(default=32, ge=1, le=64)
    queue_max_result_bytes: int = Field(default=1_048_576, ge=1)
    queue_max_batch_jobs: int = Field(default=1000, ge=1, le=100_000)
    # A message a worker receives again and again without its job ever starting (it
    # crashed the worker, or could not be handed to a pool process) is quarantined: the
    # job fails into the dead letters instead of crash-looping every worker.
    queue_max_deliveries: int = Field(default=5, ge=1, le=100)
    # How long a job may wait for a live worker that has registered its task (an API
    # deployed before its workers) before it fails with TaskNotRegistered.
    queue_unknown_task_seconds: float = Field(default=300.0, ge=0)
    # Celery task events (received, started, retried, failed, succeeded, revoked), so
    # Flower and `celery events` show the jobs without `celery control enable_events`.
    # Off, workers send them once asked, as Celery's do.
    queue_task_events: bool = True
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024)

    # Access (keyring.py; the README's "Running it in production"). Keys are
    # `name:role:secret` entries, comma-separated here or one a line in the file.
    queue_api_keys: SecretStr | None = None
    queue_api_keys_file: Path | None = None
    # With no keys the API is open; off loopback it refuses to start unless this says so.
    queue_allow_anonymous: bool = False
    queue_test_routes: bool = True  # /api/queue/test/redis and /test/debug (admin-only with keys)
    api_cors_origins: Annotated[list[str], NoDecode] = []  # none: no CORS headers at all
    # Dispatch rate per key (and for anonymous callers), e.g. 200/s; unset: unlimited.
    # QUEUE_RATE_LIMITS overrides it per key name: `web:1000/s,nightly:50/m`.
    queue_rate_limit: str | None = None
    queue_rate_limits: Annotated[list[str], NoDecode] = []
    queue_max_streams_per_key: int = Field(default=100, ge=1)  # open event streams, per API process
    queue_audit_max_entries: int = Field(default=10_000, ge=100)

    _keyring: Keyring = PrivateAttr(default_factory=lambda: Keyring(()))
    _rate_limits: dict[str, RateLimit] = PrivateAttr(default_factory=dict)
    _default_rate_limit: RateLimit | None = PrivateAttr(default=None)

    @field_validator("redis_url", "celery_broker_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `REDIS_URL=` in a .env file means "not set", not "connect to ''".
        return None if value in ("", None) else value

    @field_validator("queue_rate_limit", mode="before")
    @classmethod
    def _empty_is_unlimited(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @field_validator(
        "task_modules", "queue_retry_delays", "worker_queues", "api_cors_origins", "queue_rate_limits", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("queue_retry_delays")
    @classmethod
    def _positive_delays(cls, value: list[float]) -> list[float]:
        if not value or any(delay <= 0 for delay in value):
            raise ValueError("QUEUE_RETRY_DELAYS must be one or more positive numbers of seconds, e.g. 5,15,45")
        return value

    @field_validator("queue_name")
    @classmethod
    def _one_queue_name(cls, value: str) -> str:
        _check_queue_name("QUEUE_NAME", value)
        return value

    @field_validator("worker_queues")
    @classmethod
    def _queue_names(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_queue_name("WORKER_QUEUES", name)
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _derived_defaults(self) -> Settings:
        # A default that does not fit a lower setting the user chose is cut down to fit; a
        # value the user chose that does not fit is refused (by the checks below).
        unset = set(type(self).model_fields) - self.model_fields_set
        if "queue_task_soft_time_limit" in unset:
            share = max(1, int(self.queue_task_time_limit * SOFT_SHARE_OF_HARD_LIMIT))
            self.queue_task_soft_time_limit = min(DEFAULT_SOFT_TIME_LIMIT, share)
        if "queue_idempotency_ttl_seconds" in unset:
            shortest_record = min(self.queue_job_ttl_seconds, self.queue_dead_letter_ttl_seconds)
            self.queue_idempotency_ttl_seconds = min(DEFAULT_IDEMPOTENCY_TTL_SECONDS, shortest_record)
        return self

    @model_validator(mode="after")
    def _soft_limit_below_hard(self) -> Settings:
        if self.queue_task_soft_time_limit > self.queue_task_time_limit:
            raise ValueError(
                f"QUEUE_TASK_SOFT_TIME_LIMIT must not exceed QUEUE_TASK_TIME_LIMIT "
                f"({self.queue_task_soft_time_limit} > {self.queue_task_time_limit})"
            )
        return self

    @model_validator(mode="after")
    def _idempotency_within_record_life(self) -> Settings:
        # An idempotency key answers with the job it created; the record must outlive the
        # key (it does when the key's TTL, counted from dispatch, is no longer than the
        # record's, counted from finish), or a repeat would quietly create a second job.
        # A completed job's record lives QUEUE_JOB_TTL_SECONDS, a failed one's
        # QUEUE_DEAD_LETTER_TTL_SECONDS: the key may outlive neither.
        key_ttl = self.queue_idempotency_ttl_seconds
        for name, record_ttl in (
            ("QUEUE_JOB_TTL_SECONDS", self.queue_job_ttl_seconds),
            ("QUEUE_DEAD_LETTER_TTL_SECONDS", self.queue_dead_letter_ttl_seconds),
        ):
            if key_ttl > record_ttl:
                raise ValueError(
                    f"QUEUE_IDEMPOTENCY_TTL_SECONDS must not exceed {name} ({key_ttl} > {record_ttl}): a repeat "
                    "of a key whose job record has expired would create a second job; leave it unset to use "
                    "the shorter"
                )
        return self

    @model_validator(mode="after")
    def _access(self) -> Settings:
        # Parsed once here, so a bad key or rate stops start-up with a one-line message.
        try:
            entries = []
            if self.queue_api_keys is not None:
                entries += self.queue_api_keys.get_secret_value().split(",")
            if self.queue_api_keys_file is not None:
                entries += read_key_lines(self.queue_api_keys_file.read_text())
            self._keyring = Keyring(parse_keys(entries, "QUEUE_API_KEYS"))
            if self.queue_rate_limit is not None:
                self._default_rate_limit = parse_rate("QUEUE_RATE_LIMIT", self.queue_rate_limit)
            for entry in self.queue_rate_limits:
                name, _, rate = entry.partition(":")
                self._rate_limits[name.strip()] = parse_rate(f"QUEUE_RATE_LIMITS ({name.strip()})", rate)
        except OSError as exc:
            raise ValueError(f"QUEUE_API_KEYS_FILE: cannot read {self.queue_api_keys_file}: {exc.strerror}") from None
        except ConfigurationError as exc:
            raise ValueError(exc.detail) from None
        unknown = set(self._rate_limits) - {key.name for key in self._keyring.keys} - {ANONYMOUS}
        if unknown:
            raise ValueError(f"QUEUE_RATE_LIMITS names keys that are not configured: {', '.join(sorted(unknown))}")
        return self

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def rate_limit(self, key: ApiKey | None) -> RateLimit | None:
        """The dispatch rate of a key (None: anonymous), or None for unlimited."""
        return self._rate_limits.get(key.name if key else ANONYMOUS, self._default_rate_limit)

    def exposure_problem(self) -> str | None:
        """Why the API must not start as configured: open to anyone, off loopback."""
        if self._keyring or self.queue_allow_anonymous or _is_loopback(self.api_host):
            return None
        return (
            f"refusing to serve the API on {self.api_host} with no API keys: anyone who reaches it could "
            "dispatch, cancel and re-drive jobs. Set QUEUE_API_KEYS (see the README's \"Running it in "
            'production"), bind API_HOST=127.0.0.1, or set QUEUE_ALLOW_ANONYMOUS=true to serve it open on purpose.'
        )

    @property
    def consumed_queues(self) -> list[str]:
        """The queues a worker started with these settings consumes."""
        return self.worker_queues or [self.queue_name]

    @property
    def uses_local_redis(self) -> bool:
        return self.redis_url is None

    def resolved_redis_url(self) -> str:
        """The Redis to use: REDIS_URL, else the local server running under DATA_DIR."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        from pocketqueue.embedded import local_redis_url  # embedded imports config

        url = local_redis_url(self.data_dir)
        if url is None:
            raise ConfigurationError(
                f"REDIS_URL is unset and no local Redis is running under {self.data_dir}/. "
                "Start one with `python -m pocketqueue redis` (or run everything with `make run`)."
            )
        return url

    def broker_url(self) -> str:
        """Celery's broker: always the job store's Redis (set CELERY_BROKER_URL only to say so).

        The API writes a job's record and its Celery message in one Redis transaction,
        so the broker cannot be another server or database: messages sent there would
        never reach a worker.
        """
        redis_url = self.resolved_redis_url()
        if self.celery_broker_url is not None and self.celery_broker_url.get_secret_value() != redis_url:
            raise ConfigurationError(
                "CELERY_BROKER_URL must be the same Redis as REDIS_URL (job records and their messages "
                "are written in one transaction); leave it unset."
            )
        return redis_url

    # Crash recovery is bounded by QUEUE_RECOVERY_SECONDS; these are derived from it.

    @property
    def lease_seconds(self) -> float:
        # A running job's lease: renewed every third of it, so a job whose lease lapsed
        # belongs to a worker that died (or lost Redis) over a lease ago.
        return self.queue_recovery_seconds / 2

    @property
    def janitor_interval(self) -> float:
        # How often a worker looks for orphaned jobs (lapsed leases) and requeues them.
        return max(0.5, self.queue_recovery_seconds / 12)

    @property
    def visibility_timeout(self) -> int:
        # How long the broker waits before handing an unacknowledged message to another
        # worker. Short on purpose: the job record, not the broker, decides whether a job
        # runs, so a redelivered message of a running job is dropped, and a message
        # taken by a worker that died before starting it is back within the bound.
        return max(2, self.queue_recovery_seconds // 2)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def _check_queue_name(setting: str, value: str) -> None:
    # kombu names a queue's priority lists `<name>:<step>`, so a name holding ':' can be
    # another queue's list; Celery's --queues (ours, and `celery worker -Q`) splits on
    # ','; whitespace splits a name typed on any command line, and is invisible in .env.
    if ":" in value or "," in value or any(char.isspace() for char in value) or len(value) > 100:
        raise ValueError(
            f"{setting}: a queue name must be at most 100 characters without ':' (kombu's priority "
            f"separator), ',' or whitespace; got {value!r}"
        )


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, built on first use (never at import time)."""
    return Settings()
