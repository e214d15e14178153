"""Limits per key, for real: a dispatch rate shared by two API processes on one Redis
(nothing queued past it), a batch counting each job, per-key overrides, and the cap on a
key's open event streams.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import redis

from conftest import ApiProcess, api_client, make_settings, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys
from test_api import assert_problem

WEB = "web-key-0123456789abcdef"
BULK = "bulk-key-0123456789abcdef"
KEYS = f"web:write:{WEB},bulk:write:{BULK}"


def dispatch(api: ApiProcess, key: str, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{api.url}/api/queue/dispatch",
        json={"task": "pocketqueue.debug", **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def jobs_of(settings: Settings, sync_redis: redis.Redis, key_name: str) -> int:
    """How many job records in this test's prefix name `key_name` as their dispatcher."""
    keys = Keys(settings.queue_key_prefix)
    names = sync_redis.zrange(keys.listed("all"), 0, -1)
    return sum(1 for job_id in names if sync_redis.hget(keys.job(job_id), "dispatched_by") == key_name)


def test_a_key_gets_its_rate_across_two_api_processes_and_nothing_past_it_is_queued(
    redis_url: str, session_id: str, start_api: Callable[..., ApiProcess], sync_redis: redis.Redis
) -> None:
    # Per hour, so no token comes back while the test runs: exactly the burst is let through.
    settings = make_settings(redis_url, f"{session_id}-rate")
    env = {"QUEUE_API_KEYS": KEYS, "QUEUE_RATE_LIMIT": "12/h", "QUEUE_RATE_LIMITS": "bulk:5/h"}
    first, second = start_api(settings, **env), start_api(settings, **env)
    answers = [dispatch((first, second)[n % 2], WEB) for n in range(18)]
    statuses = [response.status_code for response in answers]
    assert statuses.count(202) == 12, statuses
    assert statuses.count(429) == 6, statuses
    assert statuses[:12] == [202] * 12  # the bucket starts full, whichever process answers
    refused = assert_problem(answers[-1], 429, "rate-limited")
    assert "nothing was queued" in refused["detail"]
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 3600
    assert jobs_of(settings, sync_redis, "web") == 12
    # Another key has its own bucket, and its own (overridden) rate.
    assert [dispatch(second, BULK).status_code for _ in range(6)] == [202] * 5 + [429]
    assert jobs_of(settings, sync_redis, "bulk") == 5


def test_a_batch_takes_a_token_per_job_all_or_none(
    redis_url: str, session_id: str, start_api: Callable[..., ApiProcess], sync_redis: redis.Redis
) -> None:
    settings = make_settings(redis_url, f"{session_id}-batch-rate")
    api = start_api(settings, QUEUE_API_KEYS=KEYS, QUEUE_RATE_LIMIT="5/h")
    headers = {"Authorization": f"Bearer {WEB}"}

    def batch(size: int) -> httpx.Response:
        body = {"jobs": [{"task": "pocketqueue.debug"}] * size}
        return httpx.post(f"{api.url}/api/queue/batches", json=body, headers=headers, timeout=10)

    too_big = assert_problem(batch(6), 422, "invalid-request")  # could never pass: not a 429
    assert "burst of 5" in too_big["detail"]
    assert batch(3).status_code == 202
    assert_problem(batch(3), 429, "rate-limited")  # 2 tokens left: none of the 3 is queued
    assert jobs_of(settings, sync_redis, "web") == 3
    assert batch(2).status_code == 202
    assert jobs_of(settings, sync_redis, "web") == 5


def test_a_key_holds_at_most_its_share_of_open_event_streams(
    redis_url: str, session_id: str, start_api: Callable[..., ApiProcess]
) -> None:
    settings = make_settings(redis_url, f"{session_id}-streams")
    api = start_api(settings, QUEUE_API_KEYS=KEYS, QUEUE_MAX_STREAMS_PER_KEY="2")
    headers = {"Authorization": f"Bearer {WEB}"}
    url = f"{api.url}/api/queue/events"
    opened = threading.Barrier(3)
    done = threading.Event()

    def hold_stream() -> None:
        with httpx.stream("GET", url, params={"timeout": 60}, headers=headers, timeout=70) as stream:
            assert stream.status_code == 200
            opened.wait()
            done.wait(60)

    holders = [threading.Thread(target=hold_stream) for _ in range(2)]
    for holder in holders:
        holder.start()
    opened.wait(timeout=30)
    third = httpx.get(url, params={"timeout": 0.2}, headers=headers, timeout=10)
    body = assert_problem(third, 429, "too-many-streams")
    assert "QUEUE_MAX_STREAMS_PER_KEY" in body["detail"]
    assert int(third.headers["Retry-After"]) > 0
    # Another key is not held back by this one's streams.
    other = {"Authorization": f"Bearer {BULK}"}
    assert httpx.get(url, params={"timeout": 0.2}, headers=other, timeout=10).status_code == 200
    done.set()
    for holder in holders:
        holder.join(timeout=30)
    # Closed streams give their slots back.
    wait_until(lambda: httpx.get(url, params={"timeout": 0.2}, headers=headers, timeout=10).status_code == 200)


async def test_anonymous_callers_share_one_bucket_when_no_keys_are_set(redis_url: str, session_id: str) -> None:
    settings = make_settings(redis_url, f"{session_id}-anon-rate", queue_rate_limit="2/h")
    async with api_client(settings) as client:
        statuses = [
            (await client.post("/api/queue/dispatch", json={"task": "pocketqueue.debug"})).status_code for _ in range(3)
        ]
        assert statuses == [202, 202, 429]
        assert (await client.post("/api/queue/test/debug")).status_code == 429  # the debug route dispatches too
