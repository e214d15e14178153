"""Poison messages: a message that would crash the worker is quarantined, never crash-looped.

Messages are built by hand and pushed past the API's checks, the way an older API, a plain
Celery client or a hand-written LPUSH would send them, to real worker processes on a queue
and key prefix of each test's own.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from conftest import WorkerProcess, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.dispatch import Planned
from pocketqueue.jobs.keys import Keys, queue_list
from pocketqueue.jobs.message import build_message, message_for
from pocketqueue.jobs.models import Job, JobError, JobStatus
from pocketqueue.jobs.worker_store import WorkerJobStore
from pocketqueue.runtime import open_runtime
from pocketqueue.worker.app import create_celery_app
from test_crash_recovery import job_of, kill_whole_worker, queued_messages, unacked_tags
from test_lifecycle import dispatch, private_settings, read

StartWorker = Callable[[Settings], WorkerProcess]

DEPTH = 500  # past billiard's pickle limit (~490): the depth that killed the worker's main process
DEAD_LETTER_TTL = 5000  # distinct from the record's own TTL, so the test sees which one was applied


@pytest.fixture
def isolated(redis_url: str) -> Settings:
    """A queue nobody consumes: the test plays the worker itself."""
    return poison_settings(redis_url)


@pytest.fixture
def store(isolated: Settings, redis_url: str) -> Iterator[WorkerJobStore]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield WorkerJobStore(client, Keys(isolated.queue_key_prefix))
    client.close()


def nested(depth: int) -> Any:
    """A value `depth` levels deep: {"a": {"a": ... 1}}."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def poison_settings(redis_url: str, **overrides: Any) -> Settings:
    return private_settings(redis_url, queue_dead_letter_ttl_seconds=DEAD_LETTER_TTL, **overrides)


async def plant(
    settings: Settings, kwargs: dict[str, Any], headers: dict[str, Any] | None = None, redelivered: bool = False
) -> str:
    """Write a queued job's record and its message (extra `headers` in it), skipping dispatch's checks.

    `redelivered` marks the message the way kombu marks one it restored to the queue.
    """
    job = Job(
        job_id=str(uuid.uuid4()),
        task="tests.add",
        args=[1, 2],
        kwargs=kwargs,
        status=JobStatus.QUEUED,
        created_at=datetime.now(UTC),
    )
    async with open_runtime(settings) as runtime:
        message, list_name = message_for(runtime.celery, job, settings.queue_name)
        envelope = json.loads(message)
        envelope["headers"].update(headers or {})
        if redelivered:
            envelope["headers"]["redelivered"] = envelope["properties"]["delivery_info"]["redelivered"] = True
        message = json.dumps(envelope)
        created = await runtime.store.create(Planned(job, message, list_name, None), settings.queue_job_ttl_seconds)
    assert created.outcome == "created"
    return job.job_id


async def normal_job_completes(settings: Settings, client: redis.Redis) -> None:
    async with open_runtime(settings) as runtime:
        job = await dispatch(runtime, "tests.add", 2, 3)
    wait_until(lambda: read(client, settings, job.job_id).get("status") == "completed", timeout=15)
    assert job_of(client, settings, job.job_id).result == {"sum": 5, "job_id": job.job_id}


def assert_quarantined(client: redis.Redis, settings: Settings, job_id: str, *why: str) -> Job:
    """The job failed as a PoisonMessage, sits in the dead letters, and its message is gone."""
    wait_until(lambda: read(client, settings, job_id).get("status") == "failed", timeout=15)
    job = job_of(client, settings, job_id)
    assert job.error is not None
    assert job.error.type == "PoisonMessage"
    for text in why:
        assert text in job.error.message, job.error.message
    assert job.attempts == 0  # it never started
    assert job.attempt_errors == []
    assert client.zscore(Keys(settings.queue_key_prefix).dead_letter, job_id) is not None
    assert DEAD_LETTER_TTL - 60 < client.ttl(f"{settings.queue_key_prefix}:job:{job_id}") <= DEAD_LETTER_TTL
    wait_until(lambda: not unacked_tags(client, settings, job_id), timeout=5)  # acknowledged
    assert queued_messages(client, settings, job_id) == 0
    return job


def assert_alive(worker: WorkerProcess) -> None:
    assert worker.process.poll() is None, worker.log()
    worker.wait_ready(timeout=5)  # and still answers a ping


async def test_a_deeply_nested_message_is_dead_lettered_and_never_crash_loops_the_worker(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = poison_settings(redis_url)
    poisoned = await plant(settings, {"x": nested(DEPTH)})
    worker = start_worker(settings)

    assert_quarantined(sync_redis, settings, poisoned, "nested deeper than 32 levels (QUEUE_MAX_JSON_DEPTH)")
    assert_alive(worker)
    await normal_job_completes(settings, sync_redis)
    wait_until(lambda: f"job {poisoned} quarantined (PoisonMessage)" in worker.log(), timeout=5)

    # A restart meets the next poison message as the first thing it reads, as a crash loop did.
    worker.stop()
    again = await plant(settings, {"x": nested(DEPTH)})
    restarted = start_worker(settings)
    assert_quarantined(sync_redis, settings, again, "QUEUE_MAX_JSON_DEPTH")
    assert_alive(restarted)
    await normal_job_completes(settings, sync_redis)


async def test_a_message_that_cannot_be_handed_to_a_pool_process_is_dead_lettered(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = poison_settings(redis_url)
    # Sound arguments, but a header nested too deep for the pickle that carries the job to
    # a pool process: only the guard around the hand-off itself can catch this one.
    poisoned = await plant(settings, {}, headers={"trace": nested(DEPTH)})
    worker = start_worker(settings)

    assert_quarantined(sync_redis, settings, poisoned, "could not be handed to a worker process (RecursionError")
    assert_alive(worker)
    await normal_job_completes(settings, sync_redis)
    worker.stop()
    assert worker.process.returncode == 0  # and it still shuts down cleanly


def test_a_poison_message_with_no_job_record_becomes_a_failed_job(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = poison_settings(redis_url)
    worker = start_worker(settings)
    job_id = str(uuid.uuid4())
    app = create_celery_app(settings)
    # What a plain Celery client's send_task would have put there (no PocketQueue record).
    message = build_message(app, job_id, "tests.add", [1, 2], {"x": nested(DEPTH)}, settings.queue_name)
    sync_redis.lpush(queue_list(settings.queue_name, 3), message)

    # Adopted as every record-less message is (worker/adopt.py), failed at once: it shows
    # in /status and the dead letters instead of vanishing.
    job = assert_quarantined(sync_redis, settings, job_id, "QUEUE_MAX_JSON_DEPTH")
    assert (job.task, job.args, job.kwargs) == ("tests.add", [1, 2], {})  # what a record can hold of it
    assert_alive(worker)


def stop_pool(worker: WorkerProcess) -> None:
    """Freeze the worker's pool processes: a job handed to one never starts."""
    pids = worker.child_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)


def take_unacked(client: redis.Redis, settings: Settings, job_id: str) -> str:
    """Remove the job's delivered, unacknowledged message from kombu's keeping and return it."""
    (tag,) = unacked_tags(client, settings, job_id)
    keys = Keys(settings.queue_key_prefix)
    raw = str(client.hget(keys.unacked, tag))
    client.hdel(keys.unacked, tag)
    client.zrem(keys.unacked_index, tag)
    return raw


def restore(client: redis.Redis, settings: Settings, unacked: str) -> None:
    """Put a message back on its queue marked redelivered, as kombu's restore does."""
    message = json.loads(unacked)[0]
    message["headers"]["redelivered"] = True
    message["properties"]["delivery_info"]["redelivered"] = True
    client.rpush(queue_list(settings.queue_name, message["properties"]["priority"]), json.dumps(message))


async def test_a_message_that_kills_the_worker_each_time_is_dead_lettered_after_max_deliveries(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    # Each delivery ends with the worker's main process killed while it holds the message
    # and before the job starts: what a message that crashes it (in ways no code can catch)
    # does. kombu would restore the message after the visibility timeout; the test restores
    # it itself, once the next worker is ready, so each delivery lands where it should.
    # Recovery 60 s: neither kombu's restore (visibility 30 s) nor the janitor's republish
    # (a lease of grace) comes into play; this test hands the message back itself.
    settings = poison_settings(redis_url, queue_max_deliveries=2, worker_concurrency=1, queue_recovery_seconds=60)
    worker = start_worker(settings)
    stop_pool(worker)
    job_id = await plant(settings, {})  # the first delivery: fresh, so not counted
    wait_until(lambda: unacked_tags(sync_redis, settings, job_id))  # the worker took it
    kill_whole_worker(worker)
    message = take_unacked(sync_redis, settings, job_id)
    assert read(sync_redis, settings, job_id)["status"] == "queued"

    worker = start_worker(settings)  # the second delivery: counted, and still handed on
    stop_pool(worker)
    restore(sync_redis, settings, message)
    wait_until(lambda: read(sync_redis, settings, job_id).get("deliveries") == "2")
    wait_until(lambda: unacked_tags(sync_redis, settings, job_id))
    kill_whole_worker(worker)
    message = take_unacked(sync_redis, settings, job_id)
    assert read(sync_redis, settings, job_id)["status"] == "queued"

    worker = start_worker(settings)  # the third: one more than QUEUE_MAX_DELIVERIES
    restore(sync_redis, settings, message)
    job = assert_quarantined(sync_redis, settings, job_id, "more than 2 times (QUEUE_MAX_DELIVERIES)")
    assert read(sync_redis, settings, job_id)["deliveries"] == "3"
    assert job.attempts == 0
    assert_alive(worker)
    await normal_job_completes(settings, sync_redis)


async def test_redeliveries_count_while_a_job_is_queued_never_while_it_runs(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    # The strictest limit: a single counted redelivery dead-letters a job.
    settings = poison_settings(redis_url, queue_max_deliveries=1, queue_recovery_seconds=4, worker_concurrency=2)
    assert settings.visibility_timeout == 2
    worker = start_worker(settings)
    runs_key = f"runs-{uuid.uuid4().hex}"
    async with open_runtime(settings) as runtime:
        running = await dispatch(runtime, "tests.runs", runs_key, sleep=6, result="once")
    # acks_late: the running job's message comes back every visibility timeout, and is dropped.
    wait_until(lambda: f"job {running.job_id} not run: running" in worker.log(), timeout=15)

    queued = await plant(settings, {}, redelivered=True)  # a queued job whose message came back: counted
    assert_quarantined(sync_redis, settings, queued, "more than 1 times (QUEUE_MAX_DELIVERIES)")

    wait_until(lambda: read(sync_redis, settings, running.job_id).get("status") == "completed", timeout=20)
    finished = job_of(sync_redis, settings, running.job_id)
    assert finished.result == "once"
    assert finished.attempts == 1
    assert sync_redis.lrange(runs_key, 0, -1) == [f"{running.job_id}:1"]
    assert "deliveries" not in read(sync_redis, settings, running.job_id)


def poison(most: int) -> JobError:
    return JobError(type="PoisonMessage", message=f"delivered more than {most} times")


async def test_the_delivery_count_quarantines_only_a_queued_job_and_resets_when_it_starts(
    isolated: Settings, store: WorkerJobStore
) -> None:
    queued = await plant(isolated, {})
    most = 3

    assert store.count_delivery(queued, "t2", most, poison(most), DEAD_LETTER_TTL) == ("ok", 2)
    assert store.count_delivery(queued, "t2", most, poison(most), DEAD_LETTER_TTL) == ("ok", 2)  # resent: once
    assert store.count_delivery(queued, "t3", most, poison(most), DEAD_LETTER_TTL) == ("ok", 3)
    assert store.count_delivery(queued, "t4", most, poison(most), DEAD_LETTER_TTL) == ("quarantined", 4)
    assert store.count_delivery(queued, "t5", most, poison(most), DEAD_LETTER_TTL) == ("failed", 0)
    job = store.get(queued)
    assert job is not None
    assert job.status == JobStatus.FAILED
    assert job.error == poison(most)
    assert store.redis.zscore(store.keys.dead_letter, queued) is not None
    assert store.redis.zscore(store.keys.index("queued"), queued) is None

    started = await plant(isolated, {})
    assert store.count_delivery(started, "t2", most, poison(most), DEAD_LETTER_TTL) == ("ok", 2)
    claim = store.claim(started, "worker-a", 60_000, "claim-1")
    assert claim.started
    assert "deliveries" not in store.redis.hgetall(store.keys.job(started))  # a start clears the count
    for n in range(5):  # its message comes back every visibility timeout while it runs
        assert store.count_delivery(started, f"r{n}", 1, poison(1), DEAD_LETTER_TTL) == ("processing", 0)

    assert store.count_delivery("no-such-job", "t2", most, poison(most), DEAD_LETTER_TTL) == ("missing", 0)
    assert not store.redis.exists(store.keys.job("no-such-job"))
