"""A claim that cannot reach Redis hands its message back instead of acknowledging it.

The worker's Redis is reached through a proxy that, while refusing, cuts every connection
that sends the claim script (start.lua): Redis stops answering the job store exactly at
claim time, while the broker, heartbeats and the janitor carry on. The task retries the
claim for about 7 s, then raises Reject(requeue=True): the message goes back to the
broker, and once Redis answers again the job runs.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pytest
import redis
from pydantic import SecretStr

from conftest import WorkerProcess, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs import scripts
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from reply_dropper import ReplyDropper, reply_dropper
from test_lifecycle import private_settings, read, submit

StartWorker = Callable[[Settings], WorkerProcess]


@pytest.fixture
def refuser(redis_url: str) -> Iterator[ReplyDropper]:
    upstream = urlsplit(redis_url)
    with reply_dropper(upstream.hostname or "127.0.0.1", upstream.port or 6379) as proxy:
        yield proxy


async def test_a_claim_redis_does_not_answer_hands_the_message_back_and_the_job_runs_later(
    redis_url: str, refuser: ReplyDropper, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    direct = private_settings(redis_url, worker_concurrency=1)
    worker = start_worker(direct.model_copy(update={"redis_url": SecretStr(refuser.url)}))
    runs_key = f"runs-{uuid.uuid4().hex}"
    refuser.refusing = sync_redis.script_load(scripts.START).encode()
    try:
        async with open_runtime(direct) as runtime:
            job = await submit(runtime, DispatchRequest("tests.runs", [runs_key], {"result": "ran"}))
        # The claim is retried for ~7.5 s, then the task gives up and rejects the message.
        rejected = f"Task tests.runs[{job.job_id}] reject requeue=True: job {job.job_id}: claim failed:"
        wait_until(lambda: rejected in worker.log(), timeout=90)
        assert "raised unexpected" not in worker.log()  # rejected, not failed
        assert refuser.refused >= 5  # the first claim and its four retries, each cut
        record = read(sync_redis, direct, job.job_id)
        assert (record["status"], record["attempts"]) == ("queued", "0"), record  # never claimed
        assert sync_redis.lrange(runs_key, 0, -1) == []
    finally:
        refuser.refusing = None  # Redis answers again

    # Had the message been acknowledged, nothing would ever run the job: it stays queued.
    wait_until(lambda: read(sync_redis, direct, job.job_id).get("status") == "completed", timeout=60)
    record = read(sync_redis, direct, job.job_id)
    assert (record["attempts"], record["result"]) == ("1", '"ran"')
    assert sync_redis.lrange(runs_key, 0, -1) == [f"{job.job_id}:1"]
    with contextlib.suppress(redis.RedisError):
        sync_redis.delete(runs_key)
