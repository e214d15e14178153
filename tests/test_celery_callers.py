"""Celery's own callers: a plain Celery client's messages become jobs, and it gets Celery results.

The client here is a stock `Celery(broker=redis_url, backend=redis_url)` that knows nothing
of PocketQueue (no record written, no task code imported): what a service that has always
used Celery sends. One real worker serves every test in the file.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery, chain, group
from celery.exceptions import TaskRevokedError

from conftest import WorkerProcess, api_client, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys, queue_list
from pocketqueue.jobs.message import build_message
from pocketqueue.jobs.models import Job
from pocketqueue.worker.app import create_celery_app
from test_crash_recovery import job_of, queued_messages, runs_of, unacked_tags
from test_lifecycle import private_settings


@pytest.fixture(scope="module")
def settings(redis_url: str) -> Settings:
    return private_settings(
        redis_url, task_modules=["pq_test_tasks", "pq_celery_caller_tasks"], queue_dead_letter_ttl_seconds=600
    )


@pytest.fixture(scope="module")
def worker(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, tmp_path_factory.mktemp("callers") / "worker.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def plain(settings: Settings, worker: WorkerProcess) -> Iterator[Celery]:
    """A Celery app as a Celery user has one: its own, with Redis as broker and result backend."""
    url = settings.resolved_redis_url()
    app = Celery("plain", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_default_queue=settings.queue_name,
        # kombu's Redis transport files a prioritised message in `<queue><sep><step>`: these
        # name the lists PocketQueue's workers read (README, "Coming from Celery").
        broker_transport_options={"sep": ":", "priority_steps": [0, 3, 6]},
        broker_connection_retry_on_startup=True,
    )
    # This process imported the task modules, and Celery adds every shared task (what
    # `@task` registers) to each app it finalizes: take them out, as a client without the
    # task code has none.
    for name in [name for name in app.tasks if not name.startswith("celery.")]:
        app.tasks.unregister(name)
    yield app
    app.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


def add(plain: Celery, *args: int) -> Any:
    """A signature of callers.add, as a client without the task code writes one."""
    return plain.signature("callers.add", args=args)


def finished(client: redis.Redis, settings: Settings, job_id: str) -> Job:
    def done() -> Job | None:
        raw = client.hgetall(Keys(settings.queue_key_prefix).job(job_id))
        job = Job.from_hash(raw) if raw else None
        return job if job is not None and job.status.finished else None

    found: Job = wait_until(done, timeout=15)
    return found


async def test_send_task_becomes_a_job_and_its_result_comes_back_through_celery(
    plain: Celery, settings: Settings, client: redis.Redis, worker: WorkerProcess
) -> None:
    result = plain.send_task("callers.add", args=[2, 3])
    assert result.get(timeout=15) == 5
    assert result.state == "SUCCESS"

    async with api_client(settings) as api:
        response = await api.get(f"/api/queue/status/{result.id}")
    assert response.status_code == 200
    job = response.json()
    assert job["status"] == "completed"
    assert job["result"] == 5
    assert job["task"] == "callers.add"
    assert job["args"] == [2, 3]
    assert job["queue"] == settings.queue_name
    assert job["celery"]["result"] is True
    assert job["attempts"] == 1
    assert f"message {result.id} (task callers.add, from a plain Celery caller) adopted as a job" in worker.log()


def test_apply_async_countdown_and_priority_hold(plain: Celery, settings: Settings, client: redis.Redis) -> None:
    sent = time.monotonic()
    later = add(plain, 1, 1).apply_async(countdown=1, priority=0)
    low = add(plain, 2, 2).apply_async(priority=8)
    assert low.get(timeout=15) == 4
    assert later.get(timeout=15) == 2
    assert time.monotonic() - sent >= 1.0
    assert job_of(client, settings, later.id).priority == "high"
    assert job_of(client, settings, low.id).priority == "low"


def test_a_failing_task_is_a_celery_failure_and_a_dead_letter(
    plain: Celery, settings: Settings, client: redis.Redis
) -> None:
    result = plain.send_task("tests.fail", args=["boom"])
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=15)
    assert result.state == "FAILURE"
    assert "ValueError: boom" in result.traceback
    job = finished(client, settings, result.id)
    assert job.status == "failed"
    assert client.zscore(Keys(settings.queue_key_prefix).dead_letter, result.id) is not None


def test_an_adopted_job_is_retried_and_its_caller_gets_the_last_attempts_result(
    plain: Celery, settings: Settings, client: redis.Redis
) -> None:
    result = plain.send_task("callers.flaky")
    assert result.get(timeout=15) == 2  # attempt 1 failed; its retry was published from the record
    job = job_of(client, settings, result.id)
    assert job.status == "completed"
    assert [error.message for error in job.attempt_errors] == ["attempt 1 failed on purpose"]


def test_arguments_the_task_cannot_take_give_a_failed_job_not_a_dropped_message(
    plain: Celery, settings: Settings, client: redis.Redis
) -> None:
    result = plain.send_task("callers.add", args=[1, 2, 3])
    with pytest.raises(Exception, match="too many positional arguments") as raised:
        result.get(timeout=15)
    assert type(raised.value).__name__ == "InvalidArguments"
    job = finished(client, settings, result.id)
    assert job.status == "failed"
    assert job.error is not None
    assert job.error.type == "InvalidArguments"
    assert job.args == [1, 2, 3]
    assert client.zscore(Keys(settings.queue_key_prefix).dead_letter, result.id) is not None


def test_chain_and_group_of_pocketqueue_tasks_from_a_plain_client(
    plain: Celery, settings: Settings, client: redis.Redis
) -> None:
    chained = chain(add(plain, 1, 2), add(plain, 3), add(plain, 4)).apply_async()
    assert chained.get(timeout=20) == 10
    steps = [chained.parent.parent.id, chained.parent.id, chained.id]
    assert [job_of(client, settings, step).result for step in steps] == [3, 6, 10]

    # A step that is retried still leads on: its retry's message is published from the
    # record, which keeps the rest of the chain.
    retried = chain(plain.signature("callers.flaky"), add(plain, 10)).apply_async()
    assert retried.get(timeout=20) == 12
    assert job_of(client, settings, retried.parent.id).attempts == 2

    grouped = group(add(plain, i, i) for i in range(3)).apply_async()
    assert grouped.get(timeout=20) == [0, 2, 4]
    assert all(job_of(client, settings, child.id).status == "completed" for child in grouped.results)


def test_a_message_that_ignores_its_result_still_runs_and_writes_no_celery_result(
    plain: Celery, settings: Settings, client: redis.Redis
) -> None:
    job_id = plain.send_task("callers.add", args=[5, 5], ignore_result=True).id
    job = finished(client, settings, job_id)
    assert job.result == 10
    assert job.celery is not None
    assert job.celery.result is False
    assert not client.exists(f"celery-task-meta-{job_id}")


def test_a_redelivered_message_without_a_record_runs_once(
    plain: Celery, settings: Settings, client: redis.Redis
) -> None:
    key, job_id = f"runs-{uuid.uuid4()}", str(uuid.uuid4())
    for _ in range(2):  # as a broker that delivers a message twice
        plain.send_task("tests.runs", args=[key, 0.3, "ran"], task_id=job_id)
    assert plain.AsyncResult(job_id).get(timeout=15) == "ran"

    def both_consumed() -> bool:
        return not queued_messages(client, settings, job_id) and not unacked_tags(client, settings, job_id)

    wait_until(both_consumed, timeout=10)
    assert runs_of(client, key) == [f"{job_id}:1"]


async def test_cancelling_an_adopted_job_revokes_it_for_its_celery_caller(
    plain: Celery, settings: Settings, client: redis.Redis
) -> None:
    key = f"runs-{uuid.uuid4()}"
    result = plain.send_task("tests.runs", args=[key, 30])
    wait_until(lambda: runs_of(client, key), timeout=15)
    async with api_client(settings) as api:
        response = await api.delete(f"/api/queue/cancel/{result.id}")
    assert response.status_code == 200
    with pytest.raises(TaskRevokedError):
        result.get(timeout=15)
    assert job_of(client, settings, result.id).status == "cancelled"


def test_a_redelivered_message_without_a_record_is_adopted_before_a_pool_process_runs_it(
    settings: Settings, client: redis.Redis, worker: WorkerProcess
) -> None:
    # A message whose first taker died before adopting it (maybe because of it): the main
    # process adopts it, so its deliveries are counted (the poison-message bound).
    job_id = str(uuid.uuid4())
    envelope = json.loads(build_message(create_celery_app(settings), job_id, "callers.add", [7, 8], {}, "x"))
    envelope["headers"]["redelivered"] = envelope["properties"]["delivery_info"]["redelivered"] = True
    envelope["properties"]["delivery_info"]["routing_key"] = settings.queue_name
    pool = worker.child_pids()
    for pid in pool:  # frozen: whatever happens now happens in the main process
        os.kill(pid, signal.SIGSTOP)
    try:
        client.lpush(queue_list(settings.queue_name, 3), json.dumps(envelope))
        adopted = wait_until(lambda: client.hgetall(Keys(settings.queue_key_prefix).job(job_id)), timeout=10)
        assert (adopted["status"], adopted["attempts"]) == ("queued", "0")
    finally:
        for pid in pool:
            os.kill(pid, signal.SIGCONT)
    assert finished(client, settings, job_id).result == 15


def test_an_adopted_job_whose_process_died_fails_for_its_celery_caller(
    plain: Celery, settings: Settings, client: redis.Redis, worker: WorkerProcess
) -> None:
    # Crash recovery ends it (no retries left): the janitor's outcome reaches the caller too.
    key = f"runs-{uuid.uuid4()}"
    result = plain.send_task("tests.runs", args=[key, 30])
    wait_until(lambda: runs_of(client, key), timeout=15)
    for pid in worker.child_pids():
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(Exception, match="stopped renewing the lease") as raised:
        result.get(timeout=30)
    assert type(raised.value).__name__ == "WorkerLost"
    assert job_of(client, settings, result.id).status == "failed"
    assert runs_of(client, key) == [f"{result.id}:1"]
