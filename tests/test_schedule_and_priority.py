"""Priorities and PocketQueue's own schedule, shown with a real Redis and real workers.

- Priorities: a worker drains `high` before `normal` before `low` (FIFO within each).
- Delays (`delay_seconds` / `eta`): the job waits in `{prefix}:schedule`, never on the
  broker, and starts no earlier than its `run_at`; a delay longer than the broker's
  visibility timeout still runs once; a cancelled scheduled job never runs.
- Queued and scheduled jobs survive a Redis restart (AOF) and then run exactly once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from conftest import WorkerProcess, api_client, wait_until
from pocketqueue.config import Settings
from pocketqueue.embedded import LocalRedis
from pocketqueue.jobs.keys import Keys, queue_list, queue_lists
from pocketqueue.jobs.models import Job, JobStatus, Priority
from pocketqueue.nodes import DispatchRequest, TaskCancelNode
from pocketqueue.runtime import open_runtime
from test_api import assert_problem
from test_lifecycle import private_settings, read, submit

StartWorker = Callable[[Settings], WorkerProcess]

# kombu's Redis transport keeps unacknowledged messages here (its default key names).


def runs_key() -> str:
    return f"pqtest-runs:{uuid.uuid4().hex}"


def run_request(key: str, priority: Priority = Priority.NORMAL, **options: Any) -> DispatchRequest:
    return DispatchRequest("tests.runs", kwargs={"key": key}, priority=priority, **options)


def ids_in(client: redis.Redis, list_name: str) -> list[str]:
    """Job ids of the messages in a queue list, in the order a worker pops them (oldest first)."""
    messages: list[str] = client.lrange(list_name, 0, -1)  # type: ignore[assignment]
    return [json.loads(message)["headers"]["id"] for message in reversed(messages)]


def broker_copies(client: redis.Redis, settings: Settings, job_id: str) -> list[str]:
    """Where the broker holds a message for `job_id`: queue lists, and kombu's unacked hash."""
    found = [name for name in queue_lists(settings.queue_name) if job_id in ids_in(client, name)]
    unacked: dict[str, str] = client.hgetall(Keys(settings.queue_key_prefix).unacked)  # type: ignore[assignment]
    found += ["unacked" for entry in unacked.values() if json.loads(entry)[0].get("headers", {}).get("id") == job_id]
    return found


def runs(client: redis.Redis, key: str) -> list[str]:
    entries: list[str] = client.lrange(key, 0, -1)  # type: ignore[assignment]
    return entries


def status(client: redis.Redis, settings: Settings, job_id: str) -> str | None:
    return read(client, settings, job_id).get("status")


def assert_scheduled(client: redis.Redis, settings: Settings, job: Job) -> None:
    """The job waits in PocketQueue's schedule until its run_at, with no message anywhere."""
    assert job.status == JobStatus.SCHEDULED
    assert job.run_at is not None
    keys = Keys(settings.queue_key_prefix)
    record = read(client, settings, job.job_id)
    assert record["status"] == "scheduled"
    assert record["run_at"] == f"{job.run_at.timestamp():.6f}"
    assert client.zscore(keys.schedule, job.job_id) == pytest.approx(job.run_at.timestamp())
    assert client.zscore(keys.index("scheduled"), job.job_id) is not None
    assert client.zscore(keys.index("queued"), job.job_id) is None
    assert broker_copies(client, settings, job.job_id) == []


def assert_ran_once_after(client: redis.Redis, settings: Settings, job: Job, key: str) -> None:
    """Completed in one attempt, started no earlier than its run_at."""
    assert job.run_at is not None
    record = read(client, settings, job.job_id)
    assert record["status"] == "completed", record
    assert record["attempts"] == "1"
    assert "run_at" not in record  # cleared when the job started
    started_at = float(record["started_at"])
    assert started_at >= job.run_at.timestamp(), (started_at, job.run_at.timestamp())
    assert runs(client, key).count(f"{job.job_id}:1") == 1
    assert not [entry for entry in runs(client, key) if entry.startswith(job.job_id) and entry != f"{job.job_id}:1"]


def watch_until_due(client: redis.Redis, settings: Settings, job: Job, key: str) -> None:
    """Sample the job until its run_at: still scheduled, off the broker, not run.

    A sample counts only if it was read before run_at, however late a loaded machine
    gets round to checking it (so a slow sample can never look like an early run).
    """
    assert job.run_at is not None
    due = job.run_at.timestamp()
    while time.time() < due:
        seen = (status(client, settings, job.job_id), broker_copies(client, settings, job.job_id), runs(client, key))
        if time.time() >= due:
            break
        assert seen[0] == "scheduled"
        assert seen[1] == []
        assert not [entry for entry in seen[2] if entry.startswith(job.job_id)]
        time.sleep(0.05)


def wait_completed_and_acknowledged(client: redis.Redis, settings: Settings, job_id: str) -> None:
    """Wait for the job to complete and its message to be acknowledged: no copy is left to deliver again."""
    wait_until(lambda: status(client, settings, job_id) == "completed", timeout=20)
    wait_until(lambda: not broker_copies(client, settings, job_id), timeout=10)


# 1. Priorities -------------------------------------------------------------------------


async def test_a_worker_runs_high_then_normal_then_low_each_in_dispatch_order(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, worker_concurrency=1)
    key = runs_key()
    dispatched: dict[Priority, list[str]] = {priority: [] for priority in Priority}
    async with open_runtime(settings) as runtime:
        for _ in range(4):  # interleaved: low, normal, high, low, normal, high, ...
            for priority in (Priority.LOW, Priority.NORMAL, Priority.HIGH):
                job = await submit(runtime, run_request(key, priority))
                assert job.status == JobStatus.QUEUED
                assert job.priority == priority
                dispatched[priority].append(job.job_id)

    # With no worker yet, each message sits in its priority's list, oldest at the tail.
    for priority, step in ((Priority.HIGH, 0), (Priority.NORMAL, 3), (Priority.LOW, 6)):
        assert ids_in(sync_redis, queue_list(settings.queue_name, step)) == dispatched[priority]
        for job_id in dispatched[priority]:
            assert read(sync_redis, settings, job_id)["priority"] == priority.value
    assert runs(sync_redis, key) == []

    start_worker(settings)  # one process: jobs run one at a time, in the order it takes them
    all_ids = [job_id for ids in dispatched.values() for job_id in ids]
    wait_until(lambda: all(status(sync_redis, settings, job_id) == "completed" for job_id in all_ids), timeout=30)
    order = [entry.rsplit(":", 1)[0] for entry in runs(sync_redis, key)]
    assert order == dispatched[Priority.HIGH] + dispatched[Priority.NORMAL] + dispatched[Priority.LOW]
    assert all(entry.endswith(":1") for entry in runs(sync_redis, key))
    assert all(sync_redis.llen(name) == 0 for name in queue_lists(settings.queue_name))


# 2. Delays -----------------------------------------------------------------------------


@pytest.mark.parametrize("when", ["delay_seconds", "eta"])
async def test_a_delayed_job_waits_in_the_schedule_and_starts_no_earlier_than_run_at(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis, when: str
) -> None:
    settings = private_settings(redis_url)
    worker = start_worker(settings)
    key = runs_key()
    async with open_runtime(settings) as runtime:
        before = datetime.now(UTC)
        if when == "delay_seconds":
            job = await submit(runtime, run_request(key, delay_seconds=2))
            assert job.run_at is not None
            assert before + timedelta(seconds=2) <= job.run_at <= datetime.now(UTC) + timedelta(seconds=2)
        else:
            # An aware datetime in another zone: the instant counts, not the wall-clock digits.
            eta = (datetime.now(UTC) + timedelta(seconds=2)).astimezone(timezone(timedelta(hours=5, minutes=30)))
            job = await submit(runtime, run_request(key, eta=eta))
            assert job.run_at == eta
        assert_scheduled(sync_redis, settings, job)
        watch_until_due(sync_redis, settings, job, key)  # a worker is running all along

        finished = await runtime.watcher.wait_for(runtime.store, job.job_id, 20)
    assert finished is not None
    assert finished.status == JobStatus.COMPLETED
    assert_ran_once_after(sync_redis, settings, job, key)
    assert runs(sync_redis, key) == [f"{job.job_id}:1"]
    assert sync_redis.zscore(Keys(settings.queue_key_prefix).schedule, job.job_id) is None
    assert f"job {job.job_id} not run" not in worker.log()


async def test_http_dispatch_schedules_with_delay_seconds_or_an_eta_with_an_offset(
    client: httpx.AsyncClient, worker: WorkerProcess, settings: Settings, sync_redis: redis.Redis
) -> None:
    key = runs_key()
    delayed = await client.post(
        "/api/queue/dispatch", json={"task": "tests.runs", "kwargs": {"key": key}, "delay_seconds": 2}
    )
    eta = (datetime.now(UTC) + timedelta(seconds=2)).astimezone(timezone(timedelta(hours=-3)))
    at_eta = await client.post(
        "/api/queue/dispatch", json={"task": "tests.runs", "kwargs": {"key": key}, "eta": eta.isoformat()}
    )
    jobs = []
    for response in (delayed, at_eta):
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "scheduled"
        assert body["run_at"] is not None
        job = Job.model_validate(body)
        assert_scheduled(sync_redis, settings, job)
        jobs.append(job)
    assert jobs[1].run_at == eta

    for job in jobs:
        done = await client.get(f"/api/queue/wait/{job.job_id}", params={"timeout": 20})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed"
        assert done.json()["run_at"] is None
        assert_ran_once_after(sync_redis, settings, job, key)
    assert sorted(runs(sync_redis, key)) == sorted(f"{job.job_id}:1" for job in jobs)


async def test_http_dispatch_refuses_both_delay_and_eta_and_an_eta_without_an_offset(
    client: httpx.AsyncClient, settings: Settings, sync_redis: redis.Redis
) -> None:
    keys = Keys(settings.queue_key_prefix)
    scheduled_before = sync_redis.zcard(keys.schedule)
    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()
    both = {"task": "tests.runs", "kwargs": {"key": "never"}, "delay_seconds": 2, "eta": soon}
    body = assert_problem(await client.post("/api/queue/dispatch", json=both), 422, "invalid-request")
    assert "not both" in json.dumps(body)
    naive = {"task": "tests.runs", "kwargs": {"key": "never"}, "eta": "2030-01-01T12:00:00"}
    body = assert_problem(await client.post("/api/queue/dispatch", json=naive), 422, "invalid-request")
    assert "eta" in json.dumps(body)
    assert sync_redis.zcard(keys.schedule) == scheduled_before  # nothing was scheduled


# 3. A delay longer than the visibility timeout --------------------------------------------


async def test_a_job_delayed_past_the_visibility_timeout_runs_exactly_once(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    assert settings.visibility_timeout == 2
    workers = [start_worker(settings), start_worker(settings)]
    key = runs_key()
    async with open_runtime(settings) as runtime:
        job = await submit(runtime, run_request(key, delay_seconds=5))
    assert_scheduled(sync_redis, settings, job)
    # Two visibility timeouts and more pass; the message is nowhere a broker could redeliver it.
    watch_until_due(sync_redis, settings, job, key)
    wait_completed_and_acknowledged(sync_redis, settings, job.job_id)
    assert_ran_once_after(sync_redis, settings, job, key)
    assert runs(sync_redis, key) == [f"{job.job_id}:1"]
    assert sum(f"job {job.job_id} not run" in worker.log() for worker in workers) == 0


# 4. Cancelling a scheduled job -------------------------------------------------------------


@pytest.mark.parametrize("via", ["node", "http"])
async def test_a_cancelled_scheduled_job_never_runs(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis, via: str
) -> None:
    settings = private_settings(redis_url)
    keys = Keys(settings.queue_key_prefix)
    key = runs_key()
    async with open_runtime(settings) as runtime:
        cancelled = await submit(runtime, run_request(key, delay_seconds=2))
        # A job due after the cancelled one: once it has run, the janitor has passed the
        # cancelled job's due time.
        control = await submit(runtime, run_request(key, delay_seconds=2.5))
        assert_scheduled(sync_redis, settings, cancelled)
        if via == "node":
            shared: dict[str, Any] = {"runtime": runtime, "job_id": cancelled.job_id}
            assert await TaskCancelNode().run_async(shared) == "cancelled"
            assert shared["job"].status == JobStatus.CANCELLED
        else:
            async with api_client(settings) as client:
                response = await client.delete(f"/api/queue/cancel/{cancelled.job_id}")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled"

    def assert_cancelled_for_good() -> None:
        record = read(sync_redis, settings, cancelled.job_id)
        assert record["status"] == "cancelled"
        assert record["attempts"] == "0"
        assert "run_at" not in record
        assert "started_at" not in record
        assert sync_redis.zscore(keys.schedule, cancelled.job_id) is None
        assert sync_redis.zscore(keys.index("scheduled"), cancelled.job_id) is None
        assert sync_redis.zscore(keys.index("cancelled"), cancelled.job_id) is not None
        assert broker_copies(sync_redis, settings, cancelled.job_id) == []

    assert_cancelled_for_good()
    assert sync_redis.zscore(keys.schedule, control.job_id) is not None  # the other one stays scheduled

    worker = start_worker(settings)
    wait_until(lambda: status(sync_redis, settings, control.job_id) == "completed", timeout=20)
    assert control.run_at is not None
    assert cancelled.run_at is not None
    assert time.time() > cancelled.run_at.timestamp() + 0.5  # past its due time and a janitor tick
    assert_cancelled_for_good()
    assert runs(sync_redis, key) == [f"{control.job_id}:1"]
    assert cancelled.job_id not in worker.log()


# 5. A Redis restart -------------------------------------------------------------------------


async def test_queued_and_scheduled_jobs_survive_a_redis_restart_and_run_once(
    tmp_path: Path, start_worker: StartWorker
) -> None:
    server = LocalRedis(tmp_path, write_port_file=False)
    server.start()
    worker: WorkerProcess | None = None
    try:
        settings = private_settings(server.url)
        key = runs_key()
        async with open_runtime(settings) as runtime:
            queued = await submit(runtime, run_request(key))
            scheduled = await submit(runtime, run_request(key, delay_seconds=3))
        assert queued.status == JobStatus.QUEUED

        server.stop()  # SIGTERM: redis-server flushes its AOF
        port = server.port
        server.start()  # same port, same data directory
        assert server.port == port

        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert status(client, settings, queued.job_id) == "queued"
            assert ids_in(client, queue_list(settings.queue_name, 3)) == [queued.job_id]
            assert_scheduled(client, settings, scheduled)  # no worker, so no janitor: still waiting

            worker = start_worker(settings)
            for job in (queued, scheduled):
                wait_completed_and_acknowledged(client, settings, job.job_id)
            assert sorted(runs(client, key)) == sorted([f"{queued.job_id}:1", f"{scheduled.job_id}:1"])
            assert read(client, settings, queued.job_id)["attempts"] == "1"
            assert_ran_once_after(client, settings, scheduled, key)
        finally:
            client.close()
    finally:
        if worker is not None:
            worker.stop()  # before its Redis goes away
        server.stop()
