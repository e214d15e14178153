"""The worker's side of the job record: claims, leases, takeovers and late finishes.

These drive the Lua transitions directly against a real Redis, the way two workers
racing for one job would.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator

import pytest
import redis

from conftest import make_settings
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.registry import PermanentError
from pocketqueue.jobs.worker_store import WorkerJobStore, to_json
from pocketqueue.nodes import CeleryTaskDispatchNode, DispatchRequest
from pocketqueue.runtime import open_runtime


@pytest.fixture
def isolated(redis_url: str) -> Settings:
    """A queue nobody consumes, so the test plays every worker itself."""
    return make_settings(redis_url, uuid.uuid4().hex[:8])


@pytest.fixture
def store(isolated: Settings, redis_url: str) -> Iterator[WorkerJobStore]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield WorkerJobStore(client, Keys(isolated.queue_key_prefix))
    client.close()


async def queued_job(settings: Settings, max_retries: int | None = None) -> str:
    async with open_runtime(settings) as runtime:
        shared = {"runtime": runtime, "request": DispatchRequest("tests.add", [1, 2], max_retries=max_retries)}
        assert await CeleryTaskDispatchNode().run_async(shared) == "dispatched"
        job_id: str = shared["job_id"]
        return job_id


async def test_only_one_worker_claims_a_job_while_its_lease_lives(isolated: Settings, store: WorkerJobStore) -> None:
    job_id = await queued_job(isolated)
    first = store.claim(job_id, "worker-a", 60_000)
    assert (first.outcome, first.attempt) == ("started", 1)
    assert store.claim(job_id, "worker-b", 60_000).outcome == "running"


async def test_a_lapsed_lease_is_recovered_once_as_the_next_attempt_and_the_old_attempt_is_told(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated, max_retries=1)
    first = store.claim(job_id, "worker-a", 60_000)
    store.redis.delete(store.keys.lease(job_id))  # worker-a died and its lease lapsed
    assert store.claim(job_id, "worker-b", 60_000).outcome == "orphaned"  # a message alone never takes over

    queue = f"{isolated.queue_key_prefix}:test-list"
    lost = JobError(type="WorkerLost", message="gone", attempt=1)
    assert store.orphaned() == [(job_id, 1)]
    assert store.recover(job_id, 1, lost, "message", queue, 60) == "requeued"
    assert store.recover(job_id, 1, lost, "message", queue, 60) == "queued"  # a second janitor finds it done
    assert store.redis.lrange(queue, 0, -1) == ["message"]
    assert store.orphaned() == []

    second = store.claim(job_id, "worker-b", 60_000)
    assert (second.outcome, second.attempt) == ("started", 2)
    assert store.heartbeat(job_id, first.attempt, "worker-a", 60_000, progress=50) == "superseded"
    assert store.complete(job_id, first.attempt, "1") == "superseded"
    assert store.redis.hget(store.keys.job(job_id), "progress") == "0"  # the old attempt wrote nothing
    assert store.complete(job_id, second.attempt, "3") == "ok"
    assert store.redis.hget(store.keys.job(job_id), "error:1") is not None  # the lost attempt's error is kept


async def test_an_orphaned_attempt_with_no_retries_left_fails_into_the_dead_letter_set(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated, max_retries=0)
    store.claim(job_id, "worker-a", 60_000)
    store.redis.delete(store.keys.lease(job_id))
    lost = JobError(type="WorkerLost", message="gone", attempt=1)
    assert store.recover(job_id, 1, lost, "message", f"{isolated.queue_key_prefix}:test-list", 60) == "failed"
    assert store.redis.zscore(store.keys.dead_letter, job_id) is not None
    assert 0 < store.redis.ttl(store.keys.job(job_id)) <= 60


async def test_a_heartbeat_recreates_a_lease_that_lapsed_while_its_attempt_still_runs(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated)
    claim = store.claim(job_id, "worker-a", 60_000)
    store.redis.delete(store.keys.lease(job_id))  # e.g. Redis was unreachable for a lease
    assert store.heartbeat(job_id, claim.attempt, "worker-a", 60_000) == "processing"
    assert store.redis.get(store.keys.lease(job_id)) == "worker-a"
    assert store.claim(job_id, "worker-b", 60_000).outcome == "running"


async def test_a_job_no_worker_can_run_can_be_failed_while_queued(isolated: Settings, store: WorkerJobStore) -> None:
    job_id = await queued_job(isolated)
    assert store.fail(job_id, JobError(type="TaskNotRegistered", message="nope"), 60) == "ok"
    record = store.redis.hgetall(store.keys.job(job_id))
    assert record["status"] == "failed"
    assert store.redis.zscore(store.keys.index("queued"), job_id) is None
    assert store.redis.zscore(store.keys.index("failed"), job_id) is not None
    assert store.claim(job_id, "worker-a", 60_000).outcome == "failed"


@pytest.mark.parametrize("value", [math.nan, math.inf, {1, 2}, object()])
def test_results_must_be_strict_json(value: object) -> None:
    with pytest.raises(PermanentError, match="not JSON-serialisable"):
        to_json(value)
