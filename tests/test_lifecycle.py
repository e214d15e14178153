"""Job lifecycle guarantees, each shown by doing the real thing to a real worker."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable
from typing import Any

import redis

from conftest import WorkerProcess, make_settings, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import queue_list
from pocketqueue.jobs.message import message_for
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.nodes import CeleryTaskDispatchNode, DispatchRequest, TaskCancelNode
from pocketqueue.runtime import QueueRuntime, open_runtime

StartWorker = Callable[[Settings], WorkerProcess]


def private_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings with a queue and key prefix no other test (or worker) uses."""
    return make_settings(redis_url, uuid.uuid4().hex[:8], **overrides)


async def dispatch(runtime: QueueRuntime, task: str, *args: Any, **kwargs: Any) -> Job:
    return await submit(runtime, DispatchRequest(task, list(args), kwargs))


async def submit(runtime: QueueRuntime, request: DispatchRequest) -> Job:
    shared: dict[str, Any] = {"runtime": runtime, "request": request}
    assert await CeleryTaskDispatchNode().run_async(shared) == "dispatched"
    job: Job = shared["job"]
    return job


def redeliver(runtime: QueueRuntime, job: Job, client: redis.Redis) -> None:
    """Hand the job's message to the workers again, as the broker does after a visibility timeout."""
    message, queue_list = message_for(runtime.celery, job, runtime.settings.queue_name)
    client.lpush(queue_list, message)


def read(client: redis.Redis, settings: Settings, job_id: str) -> dict[str, str]:
    raw: dict[str, str] = client.hgetall(f"{settings.queue_key_prefix}:job:{job_id}")  # type: ignore[assignment]
    return raw


async def test_a_job_cancelled_while_no_worker_is_online_never_runs(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url)
    async with open_runtime(settings) as runtime:
        cancelled = await dispatch(runtime, "pocketqueue.debug", result="should never appear")
        kept = await dispatch(runtime, "pocketqueue.debug", result="runs")
        assert await TaskCancelNode().run_async({"runtime": runtime, "job_id": cancelled.job_id}) == "cancelled"
    assert sync_redis.llen(queue_list(settings.queue_name, 3)) == 2  # both messages are still on the broker

    worker = start_worker(settings)
    wait_until(lambda: read(sync_redis, settings, kept.job_id)["status"] == "completed")
    wait_until(lambda: f"job {cancelled.job_id} not run: cancelled" in worker.log())
    record = read(sync_redis, settings, cancelled.job_id)
    assert record["status"] == "cancelled"
    assert record["attempts"] == "0"
    assert "started_at" not in record
    assert "result" not in record


async def test_finished_jobs_expire_and_leave_nothing_behind(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(
        redis_url, queue_job_ttl_seconds=2, queue_dead_letter_ttl_seconds=2, queue_idempotency_ttl_seconds=2
    )
    start_worker(settings)
    async with open_runtime(settings) as runtime:
        jobs = [
            await dispatch(runtime, "tests.add", 1, 2),
            await dispatch(runtime, "tests.fail", "boom"),
            await dispatch(runtime, "pocketqueue.debug", sleep=30),
            # Every other kind of key: idempotency and unique keys, the schedule, a retry,
            # a partial result, progress.
            await submit(runtime, DispatchRequest("tests.add", [2, 3], idempotency_key=uuid.uuid4().hex)),
            await submit(runtime, DispatchRequest("tests.add", [3, 4], unique_key=uuid.uuid4().hex)),
            await submit(runtime, DispatchRequest("tests.add", [4, 5], delay_seconds=0.5)),
            await submit(runtime, DispatchRequest("tests.flaky", [1], max_retries=1)),
            await dispatch(runtime, "tests.partial", [1, 2]),
            await dispatch(runtime, "pocketqueue.debug", sleep=0.3, steps=3),
        ]
        await TaskCancelNode().run_async({"runtime": runtime, "job_id": jobs[2].job_id})
        for job in jobs:
            finished = await runtime.watcher.wait_for(runtime.store, job.job_id, 20)
            assert finished is not None
            assert finished.status.finished
    key = f"{settings.queue_key_prefix}:job:{jobs[0].job_id}"
    assert 0 < sync_redis.ttl(key) <= 2

    prefix = settings.queue_key_prefix
    # Kept on purpose, each bounded another way (see lua/includes/observe.lua): the worker's
    # heartbeat, the janitor's leadership and the worker registry live as long as the
    # worker; the global event stream is trimmed by length; counters, per-minute counts
    # and recent run times outlive jobs by design (a week, 65 minutes, a week).
    kept = (f"{prefix}:worker:", f"{prefix}:metrics", f"{prefix}:stats:", f"{prefix}:runtimes:")
    # The set of queue names jobs went to is bounded by the names, not the jobs.
    kept_exactly = (f"{prefix}:janitor", f"{prefix}:events", f"{prefix}:workers", f"{prefix}:queues")

    def our_keys() -> list[str]:
        keys = sync_redis.scan_iter(f"{prefix}:*")
        return [k for k in keys if not k.startswith(kept) and k not in kept_exactly]

    wait_until(lambda: not our_keys(), timeout=10, interval=0.2)
    assert not [k for k in sync_redis.scan_iter("celery-task-meta-*") if any(j.job_id in k for j in jobs)]


async def test_a_redelivered_message_for_a_finished_job_is_dropped(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url)
    worker = start_worker(settings)
    async with open_runtime(settings) as runtime:
        job = await dispatch(runtime, "tests.add", 2, 2)
        done = await runtime.watcher.wait_for(runtime.store, job.job_id, 20)
        assert done is not None
        assert done.status == JobStatus.COMPLETED
        redeliver(runtime, job, sync_redis)
    wait_until(lambda: f"job {job.job_id} not run: completed" in worker.log())
    record = read(sync_redis, settings, job.job_id)
    assert record["attempts"] == "1"
    assert record["finished_at"] == f"{done.finished_at.timestamp():.6f}" if done.finished_at else False


async def test_a_job_whose_worker_process_is_killed_runs_again_and_completes(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    worker = start_worker(settings)
    async with open_runtime(settings) as runtime:
        kwargs = {"sleep": 1.5, "steps": 3, "result": "survived"}
        job = await submit(runtime, DispatchRequest("pocketqueue.debug", kwargs=kwargs, max_retries=1))
        wait_until(lambda: read(sync_redis, settings, job.job_id).get("progress") not in (None, "0"))
        for pid in worker.child_pids():
            os.kill(pid, signal.SIGKILL)
        finished = await runtime.watcher.wait_for(runtime.store, job.job_id, 30)
    assert finished is not None
    assert finished.status == JobStatus.COMPLETED, finished
    assert finished.result == "survived"
    assert finished.attempts == 2
    assert [e.type for e in finished.attempt_errors] == ["WorkerLost"]  # the killed attempt, kept


async def test_time_limits_fail_the_job_with_a_clear_error(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_task_time_limit=3, queue_task_soft_time_limit=1)
    start_worker(settings)
    async with open_runtime(settings) as runtime:
        # Retries left, yet neither is retried: the next attempt would hit the limit too.
        soft = await submit(runtime, DispatchRequest("pocketqueue.debug", kwargs={"sleep": 20}, max_retries=2))
        hard = await submit(runtime, DispatchRequest("tests.stubborn", [20], max_retries=2))
        # 60 s deadlines: jobs that sleep 20 s finish by their limits (1 s and 3 s) long before.
        soft_done = await runtime.watcher.wait_for(runtime.store, soft.job_id, 60)
        hard_done = await runtime.watcher.wait_for(runtime.store, hard.job_id, 60)
    assert soft_done is not None
    assert soft_done.status == JobStatus.FAILED
    assert soft_done.error is not None
    assert soft_done.error.type == "SoftTimeLimitExceeded"
    assert hard_done is not None
    assert hard_done.status == JobStatus.FAILED
    assert hard_done.error is not None
    assert "time limit exceeded" in hard_done.error.message
    assert (soft_done.attempts, hard_done.attempts) == (1, 1)
    assert [e.type for e in hard_done.attempt_errors] == ["TimeLimitExceeded"]
    dead = sync_redis.zrange(f"{settings.queue_key_prefix}:index:failed", 0, -1)
    assert {soft.job_id, hard.job_id} <= set(dead)


async def test_a_job_no_live_worker_can_run_fails_after_the_bound_instead_of_hanging(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_unknown_task_seconds=2)
    start_worker(settings.model_copy(update={"task_modules": []}))  # a worker without the test tasks
    async with open_runtime(settings) as runtime:
        job = await dispatch(runtime, "tests.add", 1, 2)
        finished = await runtime.watcher.wait_for(runtime.store, job.job_id, 20)
    assert finished is not None
    assert finished.status == JobStatus.FAILED
    assert finished.error is not None
    assert finished.error.type == "TaskNotRegistered"
    assert "TASK_MODULES" in finished.error.message
    assert "QUEUE_UNKNOWN_TASK_SECONDS" in finished.error.message
    assert float(finished.finished_at.timestamp()) - float(read(sync_redis, settings, job.job_id)["unknown_since"]) >= 2


async def test_a_job_reaching_a_worker_without_its_task_waits_for_one_that_has_it(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    """An API deployed before its workers: the old worker hands the job back, the new one runs it."""
    settings = private_settings(redis_url, queue_unknown_task_seconds=60)
    old = start_worker(settings.model_copy(update={"task_modules": []}))
    async with open_runtime(settings) as runtime:
        job = await dispatch(runtime, "tests.add", 1, 2)
        wait_until(lambda: "unknown_since" in read(sync_redis, settings, job.job_id))  # handed back once
        wait_until(lambda: old.log().count(f"job {job.job_id}: task 'tests.add' is not registered here") >= 2)
        assert read(sync_redis, settings, job.job_id)["status"] in ("scheduled", "queued")
        start_worker(settings)  # the new version
        finished = await runtime.watcher.wait_for(runtime.store, job.job_id, 30)
    assert finished is not None
    assert (finished.status, finished.result) == (JobStatus.COMPLETED, {"sum": 3, "job_id": job.job_id})
    assert finished.attempt_errors == []


async def test_a_duplicate_delivery_of_a_job_running_longer_than_its_lease_is_dropped(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    worker = start_worker(settings)
    async with open_runtime(settings) as runtime:
        job = await dispatch(runtime, "pocketqueue.debug", sleep=7, result="once")
        wait_until(lambda: read(sync_redis, settings, job.job_id).get("status") == "processing")
        # The broker hands the running job to the worker's other process (as a visibility
        # timeout would); only a lease renewed for 3x its length keeps it from running twice.
        redeliver(runtime, job, sync_redis)
        finished = await runtime.watcher.wait_for(runtime.store, job.job_id, 30)
    assert finished is not None
    assert finished.status == JobStatus.COMPLETED
    assert finished.result == "once"
    assert finished.attempts == 1
    wait_until(lambda: f"job {job.job_id} not run: running" in worker.log())
