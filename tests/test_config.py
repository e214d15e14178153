"""Settings: defaults, parsing, secrets, and the local-Redis fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pocketqueue.config import Settings
from pocketqueue.errors import ConfigurationError


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "API_PORT", "TASK_MODULES", "QUEUE_JOB_TTL_SECONDS", "DATA_DIR", "QUEUE_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    s = settings()
    assert s.redis_url is None
    assert s.uses_local_redis
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)
    assert s.data_dir == Path("var")
    assert s.queue_job_ttl_seconds == 86_400
    assert s.task_modules == []
    # The broker's redelivery is kept short (the record decides what runs); recovery is bounded.
    assert (s.queue_recovery_seconds, s.lease_seconds, s.visibility_timeout) == (60, 30, 30)
    assert (s.queue_max_retries, s.queue_retry_delays) == (3, [5.0, 15.0, 45.0])
    assert (s.queue_idempotency_ttl_seconds, s.queue_dead_letter_ttl_seconds) == (86_400, 604_800)


def test_env_example_lists_every_setting() -> None:
    text = (Path(__file__).parents[1] / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"# {name.upper()}=" in text, name


def test_task_modules_is_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASK_MODULES", " app.tasks, other.jobs ,,")
    assert settings().task_modules == ["app.tasks", "other.jobs"]


def test_empty_redis_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "")
    assert settings().uses_local_redis


def test_the_broker_defaults_to_the_redis_url() -> None:
    s = settings(redis_url="redis://:pw@example:6390/2")
    assert s.broker_url() == "redis://:pw@example:6390/2"


def test_a_broker_other_than_the_job_store_is_refused() -> None:
    # Messages are written in the same transaction as the job record; a broker elsewhere
    # would silently never see them.
    assert settings(redis_url="redis://a/0", celery_broker_url="redis://a/0").broker_url() == "redis://a/0"
    with pytest.raises(ConfigurationError, match="CELERY_BROKER_URL must be the same Redis"):
        settings(redis_url="redis://a/0", celery_broker_url="redis://a/1").broker_url()


def test_urls_are_secret_in_repr_and_logs() -> None:
    s = settings(redis_url="rediss://:hunter2@example:6380/0")
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())


def test_soft_limit_may_not_exceed_hard_limit() -> None:
    with pytest.raises(ValidationError, match="SOFT_TIME_LIMIT"):
        settings(queue_task_time_limit=10, queue_task_soft_time_limit=20)


def test_no_redis_url_and_no_local_redis_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="python -m pocketqueue redis"):
        settings(data_dir=tmp_path).resolved_redis_url()


def test_idempotency_keys_may_not_outlive_the_records_they_point_to() -> None:
    with pytest.raises(ValidationError, match="QUEUE_IDEMPOTENCY_TTL_SECONDS"):
        settings(queue_job_ttl_seconds=60, queue_idempotency_ttl_seconds=120)


def test_retry_delays_are_positive_seconds_from_a_comma_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_RETRY_DELAYS", "1, 2.5,10")
    assert settings().queue_retry_delays == [1.0, 2.5, 10.0]
    monkeypatch.setenv("QUEUE_RETRY_DELAYS", "5,0")
    with pytest.raises(ValidationError, match="positive"):
        settings()


def test_a_lower_record_ttl_alone_cuts_the_idempotency_default_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Set alone, a shorter record life must not stop start-up over a default nobody chose.
    monkeypatch.setenv("QUEUE_JOB_TTL_SECONDS", "60")
    assert settings().queue_idempotency_ttl_seconds == 60
    monkeypatch.delenv("QUEUE_JOB_TTL_SECONDS")
    monkeypatch.setenv("QUEUE_DEAD_LETTER_TTL_SECONDS", "90")
    assert settings().queue_idempotency_ttl_seconds == 90
    assert settings(queue_job_ttl_seconds=60).queue_idempotency_ttl_seconds == 60  # the shorter of the two
    monkeypatch.setenv("QUEUE_IDEMPOTENCY_TTL_SECONDS", "30")
    assert settings().queue_idempotency_ttl_seconds == 30  # a value the user chose, and fits, is kept


def test_idempotency_keys_may_not_outlive_failed_records_either() -> None:
    # A failed job's record expires after QUEUE_DEAD_LETTER_TTL_SECONDS; a repeat of its key
    # after that would quietly create a second job.
    with pytest.raises(ValidationError, match="must not exceed QUEUE_DEAD_LETTER_TTL_SECONDS"):
        settings(queue_dead_letter_ttl_seconds=60, queue_idempotency_ttl_seconds=120)


def test_a_lower_hard_time_limit_alone_cuts_the_soft_limit_default_to_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_TASK_TIME_LIMIT", "60")
    assert settings().queue_task_soft_time_limit == 55  # the default's share: 3300 of 3600
    assert settings(queue_task_time_limit=1).queue_task_soft_time_limit == 1
    with pytest.raises(ValidationError, match="QUEUE_TASK_SOFT_TIME_LIMIT must not exceed"):
        settings(queue_task_time_limit=60, queue_task_soft_time_limit=61)


@pytest.mark.parametrize("name", ["jobs:3", "jobs,urgent", "my jobs", "jobs\t", " jobs"])
def test_queue_names_that_kombu_or_celery_would_split_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="QUEUE_NAME: a queue name must be"):
        settings(queue_name=name)
    assert settings(queue_name="jobs-urgent_v2.eu").queue_name == "jobs-urgent_v2.eu"
