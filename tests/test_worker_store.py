"""The worker's side of the job record: claims, leases, takeovers and late finishes.

These drive the Lua transitions directly against a real Redis, the way two workers
racing for one job would.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from conftest import make_settings
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.message import message_for
from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.registry import PermanentError
from pocketqueue.jobs.worker_store import Claim, WorkerJobStore, to_json
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


def claim(store: WorkerJobStore, job_id: str, worker: str) -> Claim:
    return store.claim(job_id, worker, 60_000, uuid.uuid4().hex)


async def test_only_one_worker_claims_a_job_while_its_lease_lives(isolated: Settings, store: WorkerJobStore) -> None:
    job_id = await queued_job(isolated)
    first = claim(store, job_id, "worker-a")
    assert (first.outcome, first.attempt) == ("started", 1)
    assert claim(store, job_id, "worker-b").outcome == "running"


async def test_a_claim_retried_after_a_lost_reply_finds_itself(isolated: Settings, store: WorkerJobStore) -> None:
    job_id = await queued_job(isolated)
    first = store.claim(job_id, "worker-a", 60_000, "token-1")
    again = store.claim(job_id, "worker-a", 60_000, "token-1")  # the reply to the first was lost
    assert (again.outcome, again.attempt) == ("started", first.attempt)
    assert store.redis.hget(store.keys.job(job_id), "attempts") == "1"


async def test_a_lapsed_lease_is_recovered_once_as_the_next_attempt_and_the_old_attempt_is_told(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated, max_retries=1)
    first = claim(store, job_id, "worker-a")
    store.redis.delete(store.keys.lease(job_id))  # worker-a died and its lease lapsed
    assert claim(store, job_id, "worker-b").outcome == "orphaned"  # a message alone never takes over

    queue = f"{isolated.queue_key_prefix}:test-list"
    lost = JobError(type="WorkerLost", message="gone", attempt=1)
    assert store.orphaned() == [(job_id, first.token)]
    assert store.recover(job_id, first.token, lost, "message", queue, 60) == "requeued"
    assert store.recover(job_id, first.token, lost, "message", queue, 60) == "queued"  # a second janitor: done
    assert store.redis.lrange(queue, 0, -1) == ["message"]
    assert store.orphaned() == []

    second = claim(store, job_id, "worker-b")
    assert (second.outcome, second.attempt) == ("started", 2)
    assert store.heartbeat(job_id, first.token, "worker-a", 60_000, progress=50) == "superseded"
    assert store.complete(job_id, first.token, "1") == "superseded"
    assert store.redis.hget(store.keys.job(job_id), "progress") == "0"  # the old attempt wrote nothing
    assert store.complete(job_id, second.token, "3") == "ok"
    assert store.redis.hget(store.keys.job(job_id), "error:1") is not None  # the lost attempt's error is kept


async def test_after_a_re_drive_the_old_attempt_cannot_take_the_job_back(
    isolated: Settings, store: WorkerJobStore
) -> None:
    sync = store
    async with open_runtime(isolated) as runtime:
        job_id = await queued_job(isolated, max_retries=0)
        old = claim(sync, job_id, "worker-a")
        sync.redis.delete(sync.keys.lease(job_id))  # worker-a stalls past its lease...
        lost = JobError(type="WorkerLost", message="gone", attempt=1)
        assert sync.recover(job_id, old.token, lost, "m", f"{isolated.queue_key_prefix}:l", 60) == "failed"
        job = await runtime.store.get(job_id)
        assert job is not None
        message, queue_list = message_for(runtime.celery, job, isolated.queue_name)
        assert await runtime.store.redrive(job_id, message, queue_list) == "ok"  # ...and an operator re-drives
        new = claim(sync, job_id, "worker-b")
        assert new.attempt == old.attempt == 1  # the numbers repeat; the tokens do not
        assert sync.heartbeat(job_id, old.token, "worker-a", 60_000) == "superseded"
        assert sync.complete(job_id, old.token, '"from a"') == "superseded"
        assert sync.complete(job_id, new.token, '"from b"') == "ok"
        assert sync.redis.hget(sync.keys.job(job_id), "result") == '"from b"'


async def test_an_orphaned_attempt_with_no_retries_left_fails_into_the_dead_letter_set(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated, max_retries=0)
    first = claim(store, job_id, "worker-a")
    store.redis.delete(store.keys.lease(job_id))
    lost = JobError(type="WorkerLost", message="gone", attempt=1)
    assert store.recover(job_id, first.token, lost, "m", f"{isolated.queue_key_prefix}:test-list", 60) == "failed"
    assert store.redis.zscore(store.keys.dead_letter, job_id) is not None
    assert 0 < store.redis.ttl(store.keys.job(job_id)) <= 60


async def test_a_heartbeat_recreates_a_lease_that_lapsed_while_its_attempt_still_runs(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated)
    first = claim(store, job_id, "worker-a")
    store.redis.delete(store.keys.lease(job_id))  # e.g. Redis was unreachable for a lease
    assert store.heartbeat(job_id, first.token, "worker-a", 60_000) == "processing"
    assert store.redis.get(store.keys.lease(job_id)) == "worker-a"
    assert claim(store, job_id, "worker-b").outcome == "running"


async def test_a_job_no_worker_can_run_is_failed_while_queued_but_never_while_running(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated)
    assert store.fail_queued(job_id, JobError(type="TaskNotRegistered", message="nope"), 60) == "ok"
    record = store.redis.hgetall(store.keys.job(job_id))
    assert record["status"] == "failed"
    assert store.redis.zscore(store.keys.index("queued"), job_id) is None
    assert store.redis.zscore(store.keys.index("failed"), job_id) is not None
    assert claim(store, job_id, "worker-a").outcome == "failed"

    running = await queued_job(isolated)
    claim(store, running, "worker-a")  # a worker without the task gets a redelivered copy
    assert store.fail_queued(running, JobError(type="TaskNotRegistered", message="nope"), 60) == "processing"
    assert store.redis.hget(store.keys.job(running), "status") == "processing"


async def test_a_hard_time_limit_fails_only_the_attempt_that_started_before_it(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated)
    claim(store, job_id, "node-a")
    timed_out = JobError(type="TimeLimitExceeded", message="time limit exceeded")
    # The attempt started just now: a late time-limit signal for an older attempt spares it.
    assert store.fail_timed_out(job_id, timed_out, 60, "node-a", before=time.time() - 30) == "superseded"
    assert store.fail_timed_out(job_id, timed_out, 60, "node-b", before=time.time() + 1) == "superseded"
    assert store.fail_timed_out(job_id, timed_out, 60, "node-a", before=time.time() + 1) == "ok"
    assert store.redis.hget(store.keys.job(job_id), "error:1") is not None


async def test_a_job_handed_back_at_shutdown_is_queued_again_without_using_an_attempt(
    isolated: Settings, store: WorkerJobStore
) -> None:
    job_id = await queued_job(isolated, max_retries=0)
    first = claim(store, job_id, "node-a")
    queue = f"{isolated.queue_key_prefix}:test-list"
    assert store.hand_back(job_id, "another-attempt", "m", queue) == "superseded"  # not this attempt's
    assert store.hand_back(job_id, first.token, "m", queue) == "ok"
    record = store.redis.hgetall(store.keys.job(job_id))
    assert (record["status"], record["attempts"]) == ("queued", "0")
    assert store.redis.exists(store.keys.lease(job_id)) == 0
    assert store.redis.lrange(queue, 0, -1) == ["m"]
    assert store.complete(job_id, first.token, "1") == "queued"  # the cut attempt's late result is discarded
    second = claim(store, job_id, "node-b")
    assert (second.outcome, second.attempt) == ("started", 1)  # attempt 1 again: the cut one did not count
    assert store.redis.hget(store.keys.job(job_id), "attempts") == "1"  # read after the claim, not before


@pytest.mark.parametrize("value", [math.nan, math.inf, {1, 2}, object()])
def test_results_must_be_strict_json(value: object) -> None:
    with pytest.raises(PermanentError, match="not JSON-serialisable"):
        to_json(value)
