"""Rolling upgrades: a worker never runs a job whose record a newer version wrote."""

from __future__ import annotations

import redis

from conftest import wait_until
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import RECORD_FORMAT
from pocketqueue.runtime import open_runtime
from test_lifecycle import StartWorker, dispatch, private_settings, read


async def test_a_record_of_a_newer_format_is_handed_back_not_run(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url)
    key = Keys(settings.queue_key_prefix)
    async with open_runtime(settings) as runtime:
        job = await dispatch(runtime, "tests.add", 1, 2)
    assert read(sync_redis, settings, job.job_id)["v"] == str(RECORD_FORMAT)
    sync_redis.hset(key.job(job.job_id), "v", RECORD_FORMAT + 1)  # as the next version would write it

    worker = start_worker(settings)
    handed_back = f"job {job.job_id} was written by a newer PocketQueue"
    wait_until(lambda: worker.log().count(handed_back) >= 2, timeout=20)  # taken, handed back, taken again
    record = read(sync_redis, settings, job.job_id)
    assert (record["status"], record["attempts"]) == ("queued", "0")

    sync_redis.hset(key.job(job.job_id), "v", RECORD_FORMAT)  # a worker of that version arrives
    wait_until(lambda: read(sync_redis, settings, job.job_id)["status"] == "completed", timeout=20)
    assert read(sync_redis, settings, job.job_id)["attempts"] == "1"


def test_keys_an_earlier_version_kept_are_dropped_by_the_leading_janitor(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    # The status listing's own sets (before the status indexes served it) are read and
    # reaped by no one now: the first janitor to lead deletes them.
    settings = private_settings(redis_url)
    keys = Keys(settings.queue_key_prefix)
    retired = [keys.listed("status", status) for status in ("queued", "completed")]
    for name in [*retired, keys.listed("status", "failed")]:
        sync_redis.zadd(name, {"some-old-job": 1.0})
    start_worker(settings)
    wait_until(lambda: sync_redis.exists(*retired) == 0, timeout=20)
    # Failed jobs keep theirs: the dead-letter index is by time of failure, not creation.
    assert sync_redis.zscore(keys.listed("status", "failed"), "some-old-job") == 1.0
