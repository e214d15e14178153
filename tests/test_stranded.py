"""No job is stranded, whatever happens to its message; the janitor's work is one leader's, O(due).

A queued job whose message is gone (purged with the stock `celery purge`, deleted by hand,
popped by a process that died before kombu noted it) runs within about a lease of the
janitor noticing, once, with nothing done by hand; and the reconciliation never
multiplies messages.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import Counter

import redis

from conftest import settings_env, wait_until
from pocketqueue.jobs.keys import Keys, queue_list, queue_lists
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from test_crash_recovery import kill_whole_worker, runs_of
from test_lifecycle import StartWorker, dispatch, private_settings, read, submit

NORMAL = 3  # the broker priority step of normal jobs


def message_ids(client: redis.Redis, name: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(name, 0, -1)]


async def test_jobs_purged_with_celery_purge_run_once_when_a_worker_comes(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url)
    runs = f"runs-{uuid.uuid4()}"
    async with open_runtime(settings) as runtime:
        jobs = [await dispatch(runtime, "tests.runs", key=runs, result=n) for n in range(5)]
    command = [sys.executable, "-m", "celery", "-A", "pocketqueue.worker", "purge", "-f", "-Q", settings.queue_name]
    purged = await asyncio.to_thread(
        subprocess.run, command, env=settings_env(settings), capture_output=True, text=True, timeout=60
    )
    assert purged.returncode == 0, purged.stderr
    assert sum(sync_redis.llen(name) for name in queue_lists(settings.queue_name)) == 0
    assert {read(sync_redis, settings, job.job_id)["status"] for job in jobs} == {"queued"}

    start_worker(settings)
    for job in jobs:
        wait_until(lambda job=job: read(sync_redis, settings, job.job_id)["status"] == "completed", timeout=30)
    assert Counter(entry.split(":")[0] for entry in runs_of(sync_redis, runs)) == {job.job_id: 1 for job in jobs}
    assert all(read(sync_redis, settings, job.job_id)["republished"] == "1" for job in jobs)


async def test_a_message_taken_from_the_middle_of_the_queue_is_published_again(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    """Popped by a process that died before kombu noted it, or deleted by hand: the same loss."""
    settings = private_settings(redis_url, worker_concurrency=1)
    runs = f"runs-{uuid.uuid4()}"
    name = queue_list(settings.queue_name, NORMAL)
    async with open_runtime(settings) as runtime:
        jobs = [await dispatch(runtime, "tests.runs", key=runs, result=n) for n in range(6)]
    lost, deleted = jobs[1], jobs[3]
    assert sync_redis.rpop(name) is not None  # jobs[0]'s message: the consumer end of the list
    assert message_ids(sync_redis, name)[-1] == lost.job_id
    assert sync_redis.rpop(name) is not None  # `lost`: popped, and whoever popped it is gone
    raw = next(m for m in sync_redis.lrange(name, 0, -1) if json.loads(m)["headers"]["id"] == deleted.job_id)
    assert sync_redis.lrem(name, 1, raw) == 1
    # jobs[0] is lost too, and the list still holds jobs published after it.

    start_worker(settings)
    for job in jobs:
        wait_until(lambda job=job: read(sync_redis, settings, job.job_id)["status"] == "completed", timeout=30)
    assert Counter(entry.split(":")[0] for entry in runs_of(sync_redis, runs)) == {job.job_id: 1 for job in jobs}
    republished = {job.job_id for job in jobs if read(sync_redis, settings, job.job_id).get("republished")}
    assert republished == {jobs[0].job_id, lost.job_id, deleted.job_id}


async def test_a_long_queue_behind_a_slow_worker_is_never_multiplied(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, worker_concurrency=1)
    runs = f"runs-{uuid.uuid4()}"
    keys = Keys(settings.queue_key_prefix)
    async with open_runtime(settings) as runtime:
        jobs = [await dispatch(runtime, "tests.runs", key=runs, sleep=0.05) for _ in range(300)]
    start_worker(settings)
    # Several janitor sweeps (every 0.5 s here) while the queue drains slowly: the lists
    # never hold more messages than there are queued jobs, plus the one being taken.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        with sync_redis.pipeline(transaction=False) as pipe:
            for name in queue_lists(settings.queue_name):
                pipe.llen(name)
            pipe.zcard(keys.index("queued"))
            *lengths, queued = pipe.execute()
        assert sum(lengths) <= queued + 1
        await asyncio.sleep(0.1)
    assert not any(read(sync_redis, settings, job.job_id).get("republished") for job in jobs)
    counts = Counter(entry.split(":")[0] for entry in runs_of(sync_redis, runs))
    assert counts
    assert max(counts.values()) == 1


async def test_one_janitor_leads_and_another_takes_over_when_it_dies(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url)
    keys = Keys(settings.queue_key_prefix)
    first, second = start_worker(settings), start_worker(settings)
    leader = wait_until(lambda: sync_redis.get(keys.janitor))
    assert leader.startswith((first.name, second.name))
    dead, survivor = (first, second) if leader.startswith(first.name) else (second, first)
    kill_whole_worker(dead)
    wait_until(lambda: (sync_redis.get(keys.janitor) or "").startswith(survivor.name), timeout=15)
    # The new leader publishes the schedule: a delayed job still runs.
    async with open_runtime(settings) as runtime:
        delayed = await submit(runtime, DispatchRequest("tests.add", [1, 2], delay_seconds=0.5))
    wait_until(lambda: read(sync_redis, settings, delayed.job_id)["status"] == "completed", timeout=20)


async def test_a_lost_job_whose_arguments_cannot_be_read_back_is_failed_not_run_with_none(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    """A record an older version wrote (nesting no parser reads back) is never republished with empty arguments."""
    settings = private_settings(redis_url)
    keys = Keys(settings.queue_key_prefix)
    job_id, name, long_ago = str(uuid.uuid4()), queue_list(settings.queue_name, NORMAL), time.time() - 600
    deep = '{"a":' * 1100 + "1" + "}" * 1100  # JSON, but deeper than Python's parser goes
    record = {"job_id": job_id, "task": "tests.add", "status": "queued", "created_at": f"{long_ago:.6f}"}
    record |= {"args": "[]", "kwargs": deep, "ttl": "600", "published_to": name, "published_at": f"{long_ago:.6f}"}
    sync_redis.hset(keys.job(job_id), mapping=record)
    sync_redis.zadd(keys.published(name), {job_id: long_ago})
    sync_redis.zadd(keys.index("queued"), {job_id: long_ago})
    assert sync_redis.llen(name) == 0  # its message is gone, as a purge leaves it

    start_worker(settings)
    wait_until(lambda: read(sync_redis, settings, job_id)["status"] == "failed", timeout=20)
    failed = read(sync_redis, settings, job_id)
    assert "PoisonMessage" in failed["error"]
    assert "cannot be read back" in failed["error"]
    assert sync_redis.llen(name) == 0  # never published
