"""Issue #8's defects, each shown by doing the bad thing for real to real workers.

Redis goes away (stopped, or refusing new connections) while a task reports progress or
its hard time limit is recorded; tasks raise BaseExceptions; a retry follows a failed
attempt; two workers share one node name while one of them shuts down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from conftest import WorkerProcess, api_client, make_settings, settings_env, wait_until
from pocketqueue.config import Settings
from pocketqueue.embedded import LocalRedis
from pocketqueue.jobs.models import JobStatus
from pocketqueue.nodes import DispatchRequest
from pocketqueue.runtime import open_runtime
from test_crash_recovery import job_of, runs_of
from test_lifecycle import private_settings, read, submit

StartWorker = Callable[[Settings], WorkerProcess]
StartNamedWorker = Callable[[Settings, str], WorkerProcess]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis of this test's own (AOF on), which it may stop, start, or make refuse connections."""
    server = LocalRedis(tmp_path / "own-redis", write_port_file=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_client(own_redis: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    yield client
    client.close()


class NamedWorker(WorkerProcess):
    """A worker started with Celery's own command and a node name of the test's choosing.

    `python -m pocketqueue worker` puts its pid in the node name; two workers in
    containers, or started with the same `celery worker --hostname`, can still share one.
    """

    def __init__(self, settings: Settings, log_path: Path, node_name: str) -> None:
        self.settings = settings
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = ["-m", "celery", "-A", "pocketqueue.worker", "worker", f"--hostname={node_name}"]
        self.process = subprocess.Popen(
            [sys.executable, *command, f"--queues={settings.queue_name}", "--loglevel=INFO"],
            env=settings_env(settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.name = node_name

    def wait_ready(self, timeout: float = 30.0) -> None:
        # Not by ping: a twin answers to the same name.
        def ready() -> bool:
            assert self.process.poll() is None, f"worker exited early:\n{self.log()}"
            return f"{self.name} ready." in self.log()

        wait_until(ready, timeout=timeout)


@pytest.fixture
def start_named_worker(tmp_path: Path) -> Iterator[StartNamedWorker]:
    started: list[WorkerProcess] = []

    def start(settings: Settings, node_name: str) -> WorkerProcess:
        worker = NamedWorker(settings, tmp_path / f"named-worker-{len(started)}.log", node_name)
        started.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in started:
        worker.stop()


async def test_progress_reported_while_redis_is_away_is_kept_and_the_attempt_completes(
    own_redis: LocalRedis, own_client: redis.Redis, start_worker: StartWorker, tmp_path: Path
) -> None:
    # Leases of 30 s, renewed every 10 s: the outage (under 10 s) lapses none of them.
    settings = make_settings(own_redis.url, uuid.uuid4().hex[:8], queue_recovery_seconds=60)
    folder = tmp_path / "signals"
    folder.mkdir()
    start_worker(settings)
    async with open_runtime(settings) as runtime:
        held = await submit(runtime, DispatchRequest("tests.progress_in_outage", [str(folder), True]))
        quick = await submit(runtime, DispatchRequest("tests.progress_in_outage", [str(folder), False]))
    ids = [held.job_id, quick.job_id]
    wait_until(lambda: all(read(own_client, settings, i).get("step") == "before the outage" for i in ids))

    own_redis.stop()
    (folder / "outage").touch()
    # Each task's progress() gives up once redis-py's own retries do (about 5 s at most),
    # and the task carries on instead of failing.
    wait_until(lambda: all((folder / f"reported-{i}").exists() for i in ids), timeout=20)
    own_redis.start()  # same port, same data

    # The task that returned while Redis was away: its progress went with its outcome.
    wait_until(lambda: read(own_client, settings, quick.job_id).get("status") == "completed", timeout=20)
    done = job_of(own_client, settings, quick.job_id)
    assert (done.result, done.step, done.progress, done.attempts) == ("done", "during the outage", 100, 1)
    assert done.attempt_errors == []

    # The task still running: its next heartbeat carried the progress.
    def progress_recorded() -> bool:
        record = read(own_client, settings, held.job_id)
        return (record.get("progress"), record.get("step")) == ("90", "during the outage")

    wait_until(progress_recorded, timeout=20)
    assert read(own_client, settings, held.job_id)["status"] == "processing"
    (folder / "finish").touch()
    wait_until(lambda: read(own_client, settings, held.job_id).get("status") == "completed", timeout=20)
    finished = job_of(own_client, settings, held.job_id)
    assert (finished.attempts, finished.attempt_errors, finished.error) == (1, [], None)


async def test_a_hard_time_limit_recorded_through_a_redis_blip_is_not_retried(
    own_redis: LocalRedis, own_client: redis.Redis, start_worker: StartWorker
) -> None:
    settings = make_settings(
        own_redis.url,
        uuid.uuid4().hex[:8],
        queue_task_time_limit=3,
        queue_task_soft_time_limit=1,
        queue_recovery_seconds=60,  # a lapsed lease would only be recovered long after the test
    )
    start_worker(settings)
    async with open_runtime(settings) as runtime:
        job = await submit(runtime, DispatchRequest("tests.stubborn", [30], max_retries=1))
    wait_until(lambda: read(own_client, settings, job.job_id).get("status") == "processing")

    # Redis refuses new connections (as when its maxclients is reached) from just before
    # the hard limit until well after it. Connections already open go on working, so the
    # worker keeps its broker connection; the write of the time limit, from the worker's
    # main process (whose job-store client has no connection yet), is refused for longer
    # than redis-py's own retries last.
    own_client.config_set("maxclients", int(own_client.info("clients")["connected_clients"]))
    try:
        await asyncio.sleep(3 + 7)
    finally:
        own_client.config_set("maxclients", 10000)

    wait_until(lambda: read(own_client, settings, job.job_id).get("status") == "failed", timeout=20)
    failed = job_of(own_client, settings, job.job_id)
    assert failed.error is not None
    assert failed.error.type == "TimeLimitExceeded"
    assert [e.type for e in failed.attempt_errors] == ["TimeLimitExceeded"]
    assert failed.attempts == 1  # not recovered as a lost worker, and not run again


async def test_a_task_raising_a_base_exception_fails_its_attempt_with_that_exception(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    # Leases of 30 s: a job left processing would be recovered only long after the test.
    settings = private_settings(redis_url, queue_recovery_seconds=60)
    worker = start_worker(settings)
    pool = sorted(worker.child_pids())
    expected = {
        "exit": ("SystemExit", "the task called sys.exit()"),
        "interrupt": ("KeyboardInterrupt", "the task raised KeyboardInterrupt"),
        "custom": ("Abort", "the task raised its own BaseException"),
    }
    async with open_runtime(settings) as runtime:
        # Retries left, yet none is retried: a BaseException is not an Exception, the default retry_on.
        jobs = {
            kind: await submit(runtime, DispatchRequest("tests.raises_base", [kind], max_retries=2))
            for kind in expected
        }
        retried = await submit(runtime, DispatchRequest("tests.exits_retried", max_retries=1))
        for job in [*jobs.values(), retried]:
            finished = await runtime.watcher.wait_for(runtime.store, job.job_id, 15)
            assert finished is not None
            assert finished.status == JobStatus.FAILED, finished
        after = await submit(runtime, DispatchRequest("tests.add", [1, 2]))
        added = await runtime.watcher.wait_for(runtime.store, after.job_id, 15)

    for kind, (error_type, message) in expected.items():
        failed = job_of(sync_redis, settings, jobs[kind].job_id)
        assert failed.error is not None
        assert (failed.error.type, failed.error.message, failed.error.attempt) == (error_type, message, 1)
        assert "raises_base" in (failed.error.traceback or "")
        assert [(e.type, e.attempt) for e in failed.attempt_errors] == [(error_type, 1)]
        assert failed.attempts == 1
    # A task that lists SystemExit in retry_on has it retried, like any error it lists.
    exited = job_of(sync_redis, settings, retried.job_id)
    assert [(e.type, e.message) for e in exited.attempt_errors] == [
        ("SystemExit", "attempt 1 exited"),
        ("SystemExit", "attempt 2 exited"),
    ]
    # The worker's pool processes carried on: a task's SystemExit does not stop them.
    assert added is not None
    assert added.status == JobStatus.COMPLETED
    assert sorted(worker.child_pids()) == pool


async def test_an_attempt_starts_with_no_error_progress_or_step_and_the_history_keeps_the_errors(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url)
    start_worker(settings)
    async with open_runtime(settings) as runtime:
        job = await submit(runtime, DispatchRequest("tests.fails_then_holds", [1.5], max_retries=1))

    def second_attempt_started() -> dict[str, str] | None:
        record = read(sync_redis, settings, job.job_id)
        return record if (record.get("status"), record.get("attempts")) == ("processing", "2") else None

    record = wait_until(second_attempt_started)
    assert record["progress"] == "0"  # not the 80 the failed attempt reached: progress never runs backwards
    assert "step" not in record
    assert "error" not in record
    assert "error:1" in record  # the attempt history keeps it

    wait_until(lambda: read(sync_redis, settings, job.job_id).get("status") == "completed")
    done = job_of(sync_redis, settings, job.job_id)
    assert (done.result, done.error, done.progress, done.step) == (2, None, 100, "attempt 2: half way")
    assert [(e.type, e.attempt) for e in done.attempt_errors] == [("RuntimeError", 1)]
    async with api_client(settings) as client:
        shown = (await client.get(f"/api/queue/status/{job.job_id}")).json()
    assert shown["error"] is None
    assert [(e["type"], e["message"], e["attempt"]) for e in shown["attempt_errors"]] == [
        ("RuntimeError", "attempt 1 failed on purpose", 1)
    ]


async def test_a_worker_shutting_down_hands_back_only_its_own_attempt_not_a_same_named_workers(
    redis_url: str, start_named_worker: StartNamedWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(
        redis_url, queue_recovery_seconds=4, queue_shutdown_grace_seconds=1, worker_concurrency=1
    )
    node_name = f"twin-{uuid.uuid4().hex[:8]}@pocketqueue-test"
    runs_key = f"runs-{uuid.uuid4().hex}"
    first = start_named_worker(settings, node_name)
    async with open_runtime(settings) as runtime:
        request = DispatchRequest("tests.runs", [runs_key], {"sleep": 10, "result": "run by the twin"}, max_retries=1)
        job = await submit(runtime, request)
    wait_until(lambda: runs_of(sync_redis, runs_key) == [f"{job.job_id}:1"])
    assert read(sync_redis, settings, job.job_id)["worker"] == node_name
    second = start_named_worker(settings, node_name)

    # The first worker's pool process stalls: its lease lapses, and the job is recovered
    # and run again by the second worker, under the same worker name.
    (stalled,) = first.child_pids()
    os.kill(stalled, signal.SIGSTOP)
    wait_until(lambda: runs_of(sync_redis, runs_key) == [f"{job.job_id}:1", f"{job.job_id}:2"], timeout=20)
    running = read(sync_redis, settings, job.job_id)
    assert (running["status"], running["attempts"], running["worker"]) == ("processing", "2", node_name)

    # The first worker shuts down with its stalled attempt still running: after the grace
    # it hands back what it runs, which is attempt 1, not the twin's attempt 2.
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(timeout=15)
    after = read(sync_redis, settings, job.job_id)
    assert (after["status"], after["attempts"], after["claim"]) == ("processing", "2", running["claim"])
    assert f"job {job.job_id} not handed back: superseded" in first.log()

    wait_until(lambda: read(sync_redis, settings, job.job_id).get("status") == "completed", timeout=20)
    finished = job_of(sync_redis, settings, job.job_id)
    assert (finished.result, finished.attempts) == ("run by the twin", 2)
    assert [(e.type, e.attempt) for e in finished.attempt_errors] == [("WorkerLost", 1)]
    assert runs_of(sync_redis, runs_key) == [f"{job.job_id}:1", f"{job.job_id}:2"]  # attempt 2 ran once, whole
    assert second.process.poll() is None
