"""No replayed transition: a script whose reply is lost, then resent by the client, changes nothing twice.

redis-py resends a command after a connection error, and the error can come after Redis
ran the script. A proxy between the API's client and Redis loses exactly that reply.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from pydantic import SecretStr

from pocketqueue.config import Settings
from pocketqueue.jobs import scripts
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.worker_store import WorkerJobStore
from pocketqueue.nodes import CeleryTaskDispatchNode, DispatchRequest, JobRedriveNode, TaskCancelNode
from pocketqueue.runtime import open_runtime
from reply_dropper import ReplyDropper, reply_dropper
from test_crash_recovery import queued_messages
from test_lifecycle import private_settings, read, submit


def arm(proxy: ReplyDropper, client: redis.Redis, script: str) -> None:
    """Lose the reply to the next run of `script` (loaded first: a NOSCRIPT reply lost proves nothing)."""
    sha = client.script_load(script)
    proxy.arm(sha.encode())


@pytest.fixture
def proxy(redis_url: str) -> Iterator[ReplyDropper]:
    upstream = urlsplit(redis_url)
    with reply_dropper(upstream.hostname or "127.0.0.1", upstream.port or 6379) as dropper:
        yield dropper


@pytest.fixture
def through_proxy(redis_url: str, proxy: ReplyDropper) -> tuple[Settings, Settings]:
    """Settings whose Redis is reached through the proxy, and the same queue reached directly."""
    direct = private_settings(redis_url)
    return direct.model_copy(update={"redis_url": SecretStr(proxy.url)}), direct


@pytest.mark.parametrize("unique_key", [None, "one-at-a-time"])
async def test_a_dispatch_whose_reply_is_lost_creates_one_job_and_one_message(
    through_proxy: tuple[Settings, Settings], proxy: ReplyDropper, sync_redis: redis.Redis, unique_key: str | None
) -> None:
    settings, direct = through_proxy
    async with open_runtime(settings) as runtime:
        arm(proxy, sync_redis, scripts.CREATE)
        request = DispatchRequest("tests.add", [1, 2], unique_key=unique_key)
        shared: dict[str, Any] = {"runtime": runtime, "request": request}
        action = await CeleryTaskDispatchNode().run_async(shared)
    assert proxy.dropped == 1
    assert action == "dispatched", shared.get("error")
    job_id = shared["job"].job_id
    assert queued_messages(sync_redis, direct, job_id) == 1
    assert sync_redis.zcard(Keys(direct.queue_key_prefix).index("queued")) == 1


async def test_a_cancel_whose_reply_is_lost_answers_as_the_first_did(
    through_proxy: tuple[Settings, Settings], proxy: ReplyDropper, sync_redis: redis.Redis
) -> None:
    settings, direct = through_proxy
    async with open_runtime(settings) as runtime:
        job = await submit(runtime, DispatchRequest("tests.add", [1, 2]))
        arm(proxy, sync_redis, scripts.CANCEL)
        shared: dict[str, Any] = {"runtime": runtime, "job_id": job.job_id}
        action = await TaskCancelNode().run_async(shared)
    assert proxy.dropped == 1
    assert action == "cancelled"  # not "finished" (a 409 "already cancelled" for the caller's own cancel)
    assert read(sync_redis, direct, job.job_id)["status"] == "cancelled"


async def test_a_redrive_whose_reply_is_lost_answers_ok_and_queues_once(
    through_proxy: tuple[Settings, Settings], proxy: ReplyDropper, sync_redis: redis.Redis
) -> None:
    settings, direct = through_proxy
    async with open_runtime(settings) as runtime:
        job = await submit(runtime, DispatchRequest("tests.add", [1, 2]))
        worker_store = WorkerJobStore(sync_redis, Keys(direct.queue_key_prefix))
        assert worker_store.fail_queued(job.job_id, JobError(type="Boom", message="failed"), 600) == "ok"
        messages_before = queued_messages(sync_redis, direct, job.job_id)
        arm(proxy, sync_redis, scripts.REDRIVE)
        shared: dict[str, Any] = {"runtime": runtime, "job_id": job.job_id}
        action = await JobRedriveNode().run_async(shared)
    assert proxy.dropped == 1
    assert action == "redriven"  # not "not_failed" (a 409 for the caller's own re-drive)
    assert read(sync_redis, direct, job.job_id)["status"] == "queued"
    assert queued_messages(sync_redis, direct, job.job_id) == messages_before + 1


async def test_a_clear_whose_reply_is_lost_reports_what_it_cancelled(
    through_proxy: tuple[Settings, Settings], proxy: ReplyDropper, sync_redis: redis.Redis
) -> None:
    settings, direct = through_proxy
    async with open_runtime(settings) as runtime:
        jobs = [await submit(runtime, DispatchRequest("tests.add", [n, n])) for n in range(3)]
        arm(proxy, sync_redis, scripts.CLEAR)
        cancelled = await runtime.store.clear(settings.queue_name, clear_schedule=False)
    assert proxy.dropped == 1
    assert cancelled == 3
    assert {read(sync_redis, direct, job.job_id)["status"] for job in jobs} == {"cancelled"}


def test_the_proxy_really_loses_the_reply(proxy: ReplyDropper) -> None:
    """Without retries, the client sees the lost reply as an error, although the command ran."""
    client = redis.Redis.from_url(proxy.url, retry=None, decode_responses=True)
    key = f"replay-{uuid.uuid4()}"
    proxy.arm(key.encode())
    with pytest.raises(redis.ConnectionError):
        client.set(key, "ran", ex=60)
    assert redis.Redis.from_url(proxy.url).get(key) == b"ran"
    client.close()
