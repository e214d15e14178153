"""Crash recovery guarantees, shown by killing and stopping real worker processes.

Every test runs real `python -m pocketqueue worker` processes against the session's Redis,
on a queue and key prefix of its own. Workers are started with start_new_session=True, so
`os.killpg(worker.process.pid, SIGKILL)` kills a worker's main process and its pool
children at once: a whole machine (or container) lost mid-job.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis

from conftest import WorkerProcess, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from test_lifecycle import private_settings, read, submit

StartWorker = Callable[[Settings], WorkerProcess]

# kombu's Redis transport keeps every delivered, unacknowledged message here (one hash and
# its index by delivery time, shared by every queue on the server) until it is acked.


def job_of(client: redis.Redis, settings: Settings, job_id: str) -> Job:
    return Job.from_hash(read(client, settings, job_id))


def runs_of(client: redis.Redis, key: str) -> list[str]:
    """The `<job_id>:<attempt>` entries tests.runs recorded, one per run, in run order."""
    return [str(entry) for entry in client.lrange(key, 0, -1)]


def live_group_members(pgid: int) -> list[int]:
    """Pids of the processes in group `pgid` that are still alive (zombies excluded)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            alive.append(int(entry.name))
    return alive


def kill_whole_worker(worker: WorkerProcess) -> None:
    """SIGKILL the worker's main process and its pool children, and wait until all are gone."""
    pgid = worker.process.pid
    os.killpg(pgid, signal.SIGKILL)
    worker.process.wait(timeout=10)
    wait_until(lambda: not live_group_members(pgid), timeout=10)


def unacked_tags(client: redis.Redis, settings: Settings, job_id: str) -> list[str]:
    """Delivery tags of the job's messages that kombu holds as delivered but unacknowledged."""
    tags = []
    for tag, value in client.hgetall(Keys(settings.queue_key_prefix).unacked).items():
        message = json.loads(value)[0]
        if message.get("headers", {}).get("id") == job_id:
            tags.append(str(tag))
    return tags


def queued_messages(client: redis.Redis, settings: Settings, job_id: str) -> int:
    """How many messages for the job wait in the queue's broker lists."""
    count = 0
    for name in queue_lists(settings.queue_name):
        for raw in client.lrange(name, 0, -1):
            if json.loads(raw).get("headers", {}).get("id") == job_id:
                count += 1
    return count


async def test_repeated_sigkills_of_whole_workers_lose_no_job(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4, worker_concurrency=2)
    runs_key = f"runs-{uuid.uuid4().hex}"
    sleep, count, cycles = 1.0, 20, 3
    async with open_runtime(settings) as runtime:
        jobs = [
            await submit(
                runtime,
                DispatchRequest("tests.runs", [runs_key], {"sleep": sleep, "result": n}, max_retries=10),
            )
            for n in range(count)
        ]
    ids = [job.job_id for job in jobs]

    killed: list[tuple[str, int]] = []  # (job id, attempt) running when its worker was killed
    worker = start_worker(settings)
    for _ in range(cycles):

        def running_here(current: WorkerProcess = worker) -> list[tuple[str, int]]:
            # Jobs this worker is running (and whose task body has begun), not orphans of
            # the previous one, which stay `processing` until the janitor requeues them.
            runs = set(runs_of(sync_redis, runs_key))
            found = []
            for job_id in ids:
                record = read(sync_redis, settings, job_id)
                if record.get("status") == "processing" and record.get("worker", "").startswith(current.name):
                    attempt = int(record["attempts"])
                    if f"{job_id}:{attempt}" in runs:
                        found.append((job_id, attempt))
            return found

        running = wait_until(running_here, timeout=20)
        kill_whole_worker(worker)
        # A job that finished between the look and the kill was not cut short: only those
        # still processing that attempt once the worker is gone were.
        killed += [
            (job_id, attempt)
            for job_id, attempt in running
            if read(sync_redis, settings, job_id).get("status") == "processing"
            and int(read(sync_redis, settings, job_id)["attempts"]) == attempt
        ]
        worker = start_worker(settings)

    # Work left at most count * sleep / concurrency, plus a recovery bound (a lapsed lease
    # and a janitor sweep, or a visibility timeout for a prefetched message) per kill.
    budget = count * sleep / settings.worker_concurrency + cycles * settings.queue_recovery_seconds + 10
    wait_until(lambda: all(read(sync_redis, settings, i).get("status") == "completed" for i in ids), timeout=budget)

    runs = runs_of(sync_redis, runs_key)
    assert len(killed) >= cycles  # every kill cut at least one running job short
    for n, job_id in enumerate(ids):
        job = job_of(sync_redis, settings, job_id)
        assert job.status == JobStatus.COMPLETED, job
        assert job.result == n
        # The completed attempt ran once and is the last one; every earlier one was killed.
        assert runs.count(f"{job_id}:{job.attempts}") == 1, (job_id, runs)
        mine = [entry for entry in runs if entry.startswith(f"{job_id}:")]
        assert len(mine) == len(set(mine)), mine  # no attempt ran twice
        assert {int(entry.rsplit(":", 1)[1]) for entry in mine} <= set(range(1, job.attempts + 1)), mine
        assert [e.type for e in job.attempt_errors] == ["WorkerLost"] * (job.attempts - 1), job.attempt_errors
        assert [e.attempt for e in job.attempt_errors] == list(range(1, job.attempts))
    for job_id, attempt in killed:
        errors = job_of(sync_redis, settings, job_id).attempt_errors
        assert any(e.attempt == attempt and e.type == "WorkerLost" for e in errors), (job_id, attempt, errors)
    assert not sync_redis.zcard(f"{settings.queue_key_prefix}:index:failed")


async def test_a_killed_workers_job_is_recovered_without_its_broker_message(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    runs_key = f"runs-{uuid.uuid4().hex}"
    sleep = 2.0
    worker = start_worker(settings)
    async with open_runtime(settings) as runtime:
        request = DispatchRequest("tests.runs", [runs_key], {"sleep": sleep, "result": "recovered"}, max_retries=1)
        job = await submit(runtime, request)
    wait_until(lambda: runs_of(sync_redis, runs_key) == [f"{job.job_id}:1"])
    kill_whole_worker(worker)

    # The broker still holds the message as delivered to the dead worker. Take it away, so
    # no visibility timeout can hand it back: only the job record can bring the job back.
    tags = unacked_tags(sync_redis, settings, job.job_id)
    assert len(tags) == 1, tags
    keys = Keys(settings.queue_key_prefix)
    sync_redis.hdel(keys.unacked, *tags)
    sync_redis.zrem(keys.unacked_index, *tags)
    assert read(sync_redis, settings, job.job_id)["status"] == "processing"
    assert queued_messages(sync_redis, settings, job.job_id) == 0

    new_worker = start_worker(settings)
    wait_until(
        lambda: read(sync_redis, settings, job.job_id).get("status") == "completed",
        timeout=settings.queue_recovery_seconds + sleep + 5,
    )
    finished = job_of(sync_redis, settings, job.job_id)
    assert finished.result == "recovered"
    assert finished.attempts == 2
    assert [(e.type, e.attempt) for e in finished.attempt_errors] == [("WorkerLost", 1)]
    assert runs_of(sync_redis, runs_key) == [f"{job.job_id}:1", f"{job.job_id}:2"]
    wait_until(lambda: f"job {job.job_id}: attempt 1 orphaned by {worker.name}" in new_worker.log(), timeout=5)
    # The janitor's message was acked. The record says completed a moment before the worker's
    # main process acks (late ack), so poll, but for less than the 2 s visibility timeout: a
    # message never acked would otherwise come back, and be acked as a duplicate, meanwhile.
    wait_until(lambda: not unacked_tags(sync_redis, settings, job.job_id), timeout=1.0)


async def test_a_job_running_longer_than_the_visibility_timeout_runs_once(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4, worker_concurrency=2)
    assert settings.visibility_timeout == 2
    runs_key = f"runs-{uuid.uuid4().hex}"
    workers = [start_worker(settings), start_worker(settings)]  # idle processes to take a redelivery
    async with open_runtime(settings) as runtime:
        job = await submit(runtime, DispatchRequest("tests.runs", [runs_key], {"sleep": 7, "result": "once"}))
    wait_until(lambda: read(sync_redis, settings, job.job_id).get("status") == "completed", timeout=20)

    finished = job_of(sync_redis, settings, job.job_id)
    assert finished.result == "once"
    assert finished.attempts == 1
    assert not finished.attempt_errors
    assert runs_of(sync_redis, runs_key) == [f"{job.job_id}:1"]
    # The broker did hand the message out again while the job ran; the copy was dropped.
    assert any(f"job {job.job_id} not run: running" in w.log() for w in workers)


def test_a_worker_heartbeat_key_lives_as_long_as_the_worker(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    ttl_bound = int(settings.lease_seconds) + 1
    stopped, killed = start_worker(settings), start_worker(settings)

    def key_of(worker: WorkerProcess) -> str:
        keys = list(sync_redis.scan_iter(f"{settings.queue_key_prefix}:worker:{worker.name}*"))
        assert len(keys) == 1, keys
        return str(keys[0])

    stopped_key = wait_until(lambda: key_of(stopped), timeout=5)
    killed_key = wait_until(lambda: key_of(killed), timeout=5)

    def last_seen(key: str) -> float:
        info = json.loads(sync_redis.get(key) or "{}")
        return float(info.get("last_seen", 0))

    for worker, key in ((stopped, stopped_key), (killed, killed_key)):
        info = json.loads(sync_redis.get(key))  # type: ignore[arg-type]
        assert info["pid"] == worker.process.pid
        assert info["queues"] == [settings.queue_name]
        assert 0 < sync_redis.ttl(key) <= ttl_bound

    # Refreshed for as long as the worker runs: each heartbeat is newer than the last, and
    # the keys outlive their TTL. (Not "the TTL goes back up": read within a millisecond of
    # a refresh, it is the full TTL already, and no refresh can raise it further.)
    for key in (stopped_key, killed_key):
        first = last_seen(key)
        wait_until(lambda key=key, first=first: last_seen(key) > first, timeout=ttl_bound)
    began = time.monotonic()

    def outlived_their_ttl() -> bool:
        assert sync_redis.exists(stopped_key, killed_key) == 2
        return time.monotonic() - began > ttl_bound

    wait_until(outlived_their_ttl, timeout=ttl_bound + 2)

    stopped.stop()  # SIGTERM: the worker deletes its own key on the way out
    assert stopped.process.returncode is not None
    assert not sync_redis.exists(stopped_key)
    assert sync_redis.exists(killed_key)

    kill_whole_worker(killed)  # nothing deletes it: it lapses
    wait_until(lambda: not sync_redis.exists(killed_key), timeout=ttl_bound + 1)


async def test_sigterm_finishes_the_running_job_and_leaves_queued_ones_queued(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, worker_concurrency=1)
    runs_key = f"runs-{uuid.uuid4().hex}"
    worker = start_worker(settings)
    async with open_runtime(settings) as runtime:
        running = await submit(runtime, DispatchRequest("tests.runs", [runs_key], {"sleep": 3, "result": "finished"}))
        wait_until(lambda: runs_of(sync_redis, runs_key) == [f"{running.job_id}:1"])
        waiting = [await submit(runtime, DispatchRequest("tests.runs", [runs_key], {"result": n})) for n in range(3)]

    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(timeout=15)

    done = job_of(sync_redis, settings, running.job_id)
    assert done.status == JobStatus.COMPLETED, done
    assert done.result == "finished"
    assert done.attempts == 1
    for job in waiting:
        record = read(sync_redis, settings, job.job_id)
        assert record["status"] == "queued", record
        assert record["attempts"] == "0"
        assert "started_at" not in record
        assert "error" not in record
        assert queued_messages(sync_redis, settings, job.job_id) == 1  # back on (or never off) the broker
    assert runs_of(sync_redis, runs_key) == [f"{running.job_id}:1"]

    start_worker(settings)
    ids = [job.job_id for job in waiting]
    wait_until(lambda: all(read(sync_redis, settings, i).get("status") == "completed" for i in ids), timeout=15)
    for n, job in enumerate(waiting):
        finished = job_of(sync_redis, settings, job.job_id)
        assert finished.result == n
        assert finished.attempts == 1
    assert sorted(runs_of(sync_redis, runs_key)) == sorted([f"{running.job_id}:1"] + [f"{i}:1" for i in ids])


async def test_sigterm_is_bounded_by_the_shutdown_grace_and_the_cut_job_runs_again(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(
        redis_url, queue_shutdown_grace_seconds=1, queue_recovery_seconds=4, worker_concurrency=1
    )
    runs_key = f"runs-{uuid.uuid4().hex}"
    sleep = 10.0  # far longer than grace + a cold shutdown; short enough to run twice in the test
    worker = start_worker(settings)
    async with open_runtime(settings) as runtime:
        # No retries left: a deploy must not use up the job's attempts, let alone dead-letter it.
        request = DispatchRequest("tests.runs", [runs_key], {"sleep": sleep, "result": "second time"}, max_retries=0)
        job = await submit(runtime, request)
    wait_until(lambda: runs_of(sync_redis, runs_key) == [f"{job.job_id}:1"])

    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(timeout=6)  # grace (1 s) + a cold shutdown, long before the job would end
    wait_until(lambda: not live_group_members(worker.process.pid), timeout=5)  # its pool went with it

    record = read(sync_redis, settings, job.job_id)
    assert (record["status"], record["attempts"]) == ("queued", "0"), record  # handed back, the cut attempt uncounted
    assert "error" not in record
    assert not sync_redis.zscore(f"{settings.queue_key_prefix}:index:failed", job.job_id)

    start_worker(settings)
    wait_until(
        lambda: read(sync_redis, settings, job.job_id).get("status") in ("completed", "failed"),
        timeout=settings.queue_recovery_seconds + sleep + 5,
    )
    finished = job_of(sync_redis, settings, job.job_id)
    assert finished.status == JobStatus.COMPLETED, finished
    assert finished.result == "second time"
    assert finished.attempts == 1
    assert finished.attempt_errors == []
    assert runs_of(sync_redis, runs_key) == [f"{job.job_id}:1", f"{job.job_id}:1"]  # cut once, then run whole
