"""A SIGKILL of the local Redis under load: every job accepted before the fsync window is kept.

With `appendfsync everysec` Redis fsyncs its AOF once a second, so only the jobs accepted
in about the last second before the kill may be lost (1.5 s: the interval plus margin);
with `always` it fsyncs before each reply, so every 202 is on disk. No worker runs, so
every accepted job must still be `queued`, with its message on the broker list.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from conftest import api_client, make_settings
from pocketqueue.config import LocalRedisAppendFsync, Settings
from pocketqueue.embedded import LocalRedis
from pocketqueue.jobs.keys import Keys, queue_lists

FSYNC_WINDOW_SECONDS = {"everysec": 1.5, "always": 0.0}
LOAD_SECONDS = 3.0  # dispatching before the kill: a few fsync intervals' worth of jobs
DISPATCHERS = 4  # concurrent clients, so requests are in flight when Redis dies

Accepted = list[tuple[str, float]]  # (job_id, monotonic time its 202 arrived)


async def dispatch_until_refused(client: httpx.AsyncClient, accepted: Accepted) -> None:
    """Dispatch back to back, recording each 202, until Redis is gone (any other answer)."""
    while True:
        response = await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2]})
        if response.status_code != 202:
            assert response.status_code == 503, response.text
            return
        accepted.append((response.json()["job_id"], time.monotonic()))


def queued_ids(client: redis.Redis, settings: Settings, job_ids: set[str]) -> set[str]:
    """Those of `job_ids` whose record exists and says `queued`."""
    ids = sorted(job_ids)
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(Keys(settings.queue_key_prefix).job(job_id), "status")
        statuses: list[str | None] = pipe.execute()
    return {job_id for job_id, status in zip(ids, statuses, strict=True) if status == "queued"}


def broker_ids(client: redis.Redis, settings: Settings) -> set[str]:
    """Job ids with a message waiting on one of the queue's broker lists."""
    found: set[str] = set()
    for name in queue_lists(settings.queue_name):
        messages: list[str] = client.lrange(name, 0, -1)  # type: ignore[assignment]
        found.update(json.loads(message)["headers"]["id"] for message in messages)
    return found


@pytest.mark.parametrize("appendfsync", ["everysec", "always"])
async def test_a_sigkilled_local_redis_keeps_every_job_accepted_before_the_fsync_window(
    tmp_path: Path, appendfsync: LocalRedisAppendFsync
) -> None:
    server = LocalRedis(tmp_path, write_port_file=False, appendfsync=appendfsync)
    server.start()
    try:
        settings = make_settings(server.url, f"durability-{uuid.uuid4().hex[:8]}")
        accepted: Accepted = []
        async with api_client(settings) as client:
            load = [asyncio.create_task(dispatch_until_refused(client, accepted)) for _ in range(DISPATCHERS)]
            await asyncio.sleep(LOAD_SECONDS)  # the bounded load window
            assert server.process is not None
            assert not any(task.done() for task in load)  # still dispatching when Redis dies
            server.process.kill()  # SIGKILL: no shutdown flush, only what the AOF already holds
            killed_at = time.monotonic()
            server.process.wait()
            await asyncio.wait_for(asyncio.gather(*load), timeout=30)

        server.start()  # same port, same data directory: Redis replays its AOF
        must_survive = {job_id for job_id, at in accepted if at < killed_at - FSYNC_WINDOW_SECONDS[appendfsync]}
        assert len(must_survive) >= 100, f"too little load to mean anything: {len(must_survive)} jobs"
        check = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            assert check.config_get("appendfsync")["appendfsync"] == appendfsync
            assert must_survive - queued_ids(check, settings, must_survive) == set()
            assert must_survive - broker_ids(check, settings) == set()
        finally:
            check.close()
    finally:
        server.stop()
