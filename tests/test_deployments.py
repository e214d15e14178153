"""Two deployments on one Redis (different QUEUE_KEY_PREFIX and QUEUE_NAME) leave each other alone."""

from __future__ import annotations

import asyncio
import time
import uuid

import redis

from conftest import wait_until
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from test_crash_recovery import queued_messages, runs_of, unacked_tags
from test_lifecycle import StartWorker, private_settings, read, submit


async def test_a_short_visibility_timeout_never_restores_another_deployments_messages(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    short = private_settings(redis_url, queue_recovery_seconds=6)  # visibility timeout 3 s
    long = private_settings(redis_url, queue_recovery_seconds=60)  # visibility timeout 30 s
    start_worker(short)
    long_worker = start_worker(long)
    runs = f"runs-{uuid.uuid4()}"
    async with open_runtime(long) as runtime:
        job = await submit(runtime, DispatchRequest("tests.runs", kwargs={"key": runs, "sleep": 10, "result": "once"}))
    wait_until(lambda: runs_of(sync_redis, runs) == [f"{job.job_id}:1"])
    assert len(unacked_tags(sync_redis, long, job.job_id)) == 1
    # Kombu restores messages unacknowledged for longer than its visibility timeout, every
    # second here. Sharing one unacked hash, the short deployment's worker would hand this
    # message back within about 4 s; watch it for three of its timeouts.
    deadline = time.monotonic() + 9
    while time.monotonic() < deadline:
        assert queued_messages(sync_redis, long, job.job_id) == 0
        assert len(unacked_tags(sync_redis, long, job.job_id)) == 1
        await asyncio.sleep(0.2)
    wait_until(lambda: read(sync_redis, long, job.job_id)["status"] == "completed", timeout=20)
    assert runs_of(sync_redis, runs) == [f"{job.job_id}:1"]
    assert "not run: running" not in long_worker.log()
