"""Flower and the `celery` CLI, run as a Celery user runs them, show PocketQueue jobs truthfully.

A real `celery -A pocketqueue.worker flower` process watches a real worker; what its HTTP
API reports for each job (state, result, exception) must be what the job's record says.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import WorkerProcess, settings_env, terminate, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.nodes import DispatchRequest, TaskCancelNode
from pocketqueue.runtime import QueueRuntime, open_runtime
from pocketqueue.worker.app import create_celery_app
from test_crash_recovery import kill_whole_worker
from test_lifecycle import StartWorker, private_settings, submit


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Flower:
    """A real Flower process on a free loopback port, its API open (FLOWER_UNAUTHENTICATED_API)."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self._log = log_path.open("wb")
        self.log_path = log_path
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "pocketqueue.worker",
                "flower",
                "--address=127.0.0.1",
                f"--port={port}",
            ],
            env={**settings_env(settings), "FLOWER_UNAUTHENTICATED_API": "true"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def get(self, path: str) -> Any:
        assert self.process.poll() is None, f"flower exited:\n{self.log_path.read_text(errors='replace')}"
        try:
            response = self.http.get(path)
        except httpx.TransportError:
            return None  # not listening yet
        return response.json() if response.status_code == 200 else None

    def task(self, job_id: str) -> dict[str, Any] | None:
        info: dict[str, Any] | None = self.get(f"/api/task/info/{job_id}")
        return info

    def until(self, job_id: str, state: str, timeout: float = 20) -> dict[str, Any]:
        """Poll Flower until it reports `state` for the job; fail, showing what it reports, after `timeout` s."""
        seen: list[Any] = []

        def reached() -> dict[str, Any] | None:
            info = self.task(job_id)
            seen[:] = [info]
            return info if info and info.get("state") == state else None

        try:
            found: dict[str, Any] = wait_until(reached, timeout=timeout, interval=0.1)
        except AssertionError:
            raise AssertionError(f"flower did not report {state} for {job_id} within {timeout} s: {seen}") from None
        return found

    def stop(self) -> None:
        self.http.close()
        terminate(self.process)
        self._log.close()


@pytest.fixture
def settings_for_flower(redis_url: str) -> Settings:
    # A retry waits 30 s (tasks without delays of their own), long enough to be seen.
    return private_settings(redis_url, queue_retry_delays=[30.0])


@pytest.fixture
def worker_for_flower(settings_for_flower: Settings, start_worker: StartWorker) -> WorkerProcess:
    return start_worker(settings_for_flower)


@pytest.fixture
def flower(settings_for_flower: Settings, worker_for_flower: WorkerProcess, tmp_path: Path) -> Iterator[Flower]:
    started = Flower(settings_for_flower, tmp_path / "flower.log")
    try:
        yield started
    finally:
        started.stop()


async def dispatch(runtime: QueueRuntime, task: str, *args: Any, **options: Any) -> Job:
    return await submit(runtime, DispatchRequest(task, list(args), **options))


def celery_result(settings: Settings, job_id: str, *options: str) -> subprocess.CompletedProcess[str]:
    """`celery -A pocketqueue.worker result <id>`: the stock CLI, bounded so a hang fails the test."""
    command = [sys.executable, "-m", "celery", "-A", "pocketqueue.worker", "result", job_id, *options]
    return subprocess.run(command, env=settings_env(settings), capture_output=True, text=True, timeout=30)


async def wait_for_events(flower: Flower, runtime: QueueRuntime) -> None:
    """Return once Flower's event receiver is subscribed: a probe job shows up in it, start to end."""

    async def probe_seen() -> bool:
        job = await dispatch(runtime, "tests.add", 0, 0)
        try:
            flower.until(job.job_id, "SUCCESS", timeout=3)
        except AssertionError:
            return False
        return True

    for _ in range(10):
        if await probe_seen():
            return
    raise AssertionError("flower never saw a job's events")


async def test_flower_reports_every_outcome_as_the_record_says(
    flower: Flower, worker_for_flower: WorkerProcess, settings_for_flower: Settings
) -> None:
    settings = settings_for_flower
    # Flower's /api/workers asks the workers over the broker (it must use PocketQueue's app).
    workers = wait_until(lambda: flower.get("/api/workers?refresh=1"), timeout=30, interval=0.5)
    assert any(name.startswith(worker_for_flower.name) for name in workers)

    async with open_runtime(settings) as runtime:
        await wait_for_events(flower, runtime)
        done = await dispatch(runtime, "tests.add", 2, 3)
        flaky = await dispatch(runtime, "tests.flaky", 1, max_retries=1)  # attempt 1 fails, attempt 2 returns 2
        retrying = await dispatch(runtime, "tests.fail", "not yet", max_retries=1)  # its retry waits 30 s
        failed = await dispatch(runtime, "tests.fail", "boom")
        waiting = await dispatch(runtime, "tests.add", 1, 1, delay_seconds=60)
        running = await dispatch(runtime, "tests.runs", f"runs-{uuid.uuid4()}", 30)
        partial = await dispatch(runtime, "tests.partial", [1, 2])
        # A plain Celery message (no job record): adopted as a job, and run.
        unrecorded = runtime.celery.send_task("tests.add", args=[1, 2]).id

        info = flower.until(done.job_id, "SUCCESS")
        assert info["name"] == "tests.add"
        assert info["result"] == repr({"sum": 5, "job_id": done.job_id})
        assert info["worker"].startswith(worker_for_flower.name)

        assert flower.until(flaky.job_id, "SUCCESS")["result"] == "2"
        expected = {"result": {"done": [2]}, "partial_errors": ["item 1 is odd"]}
        assert flower.until(partial.job_id, "SUCCESS")["result"] == repr(expected)
        assert flower.until(unrecorded, "SUCCESS")["result"] == repr({"sum": 3, "job_id": unrecorded})

        info = flower.until(retrying.job_id, "RETRY")
        assert info["exception"] == repr(ValueError("not yet"))

        info = flower.until(failed.job_id, "FAILURE")
        assert info["exception"] == repr(ValueError("boom"))
        assert "ValueError: boom" in info["traceback"]

        flower.until(running.job_id, "STARTED")
        for job in (waiting, running):
            assert await TaskCancelNode().run_async({"runtime": runtime, "job_id": job.job_id}) == "cancelled"
        assert flower.until(waiting.job_id, "REVOKED")["name"] == "tests.add"
        flower.until(running.job_id, "REVOKED")

    listed = flower.get("/api/tasks?limit=100")
    states = {job.job_id: listed[job.job_id]["state"] for job in (done, flaky, retrying, failed, waiting, running)}
    assert states == {
        done.job_id: "SUCCESS",
        flaky.job_id: "SUCCESS",
        retrying.job_id: "RETRY",
        failed.job_id: "FAILURE",
        waiting.job_id: "REVOKED",
        running.job_id: "REVOKED",
    }

    # `celery result` answers from the record at once, for every outcome.
    printed = celery_result(settings, done.job_id)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.strip() == repr({"sum": 5, "job_id": done.job_id})
    printed = celery_result(settings, failed.job_id)
    assert printed.returncode != 0, printed
    assert "boom" in printed.stderr, printed
    printed = celery_result(settings, failed.job_id, "--traceback")
    assert printed.returncode == 0, printed
    assert "ValueError: boom" in printed.stdout, printed
    printed = celery_result(settings, waiting.job_id)
    assert printed.returncode != 0, printed
    assert "TaskRevokedError" in printed.stderr, printed


async def test_flowers_async_apply_makes_a_job_that_runs_and_shows_its_result(
    flower: Flower, settings_for_flower: Settings
) -> None:
    # Flower sends a plain Celery message (no record): the worker adopts it as a job.
    async with open_runtime(settings_for_flower) as runtime:
        await wait_for_events(flower, runtime)
        response = flower.http.post("/api/task/async-apply/tests.add", json={"args": [4, 5]})
        assert response.status_code == 200, response.text
        job_id = response.json()["task-id"]
        assert flower.until(job_id, "SUCCESS")["result"] == repr({"sum": 9, "job_id": job_id})
        record = await runtime.store.get(job_id)
        assert record is not None
        assert record.status == "completed"
        assert record.result == {"sum": 9, "job_id": job_id}
        # Flower's result page reads the record (PocketQueue's result backend).
        shown = flower.get(f"/api/task/result/{job_id}")
        assert shown["state"] == "SUCCESS"
        assert shown["result"] == {"sum": 9, "job_id": job_id}


def test_task_events_can_be_turned_off(redis_url: str) -> None:
    assert create_celery_app(private_settings(redis_url)).conf.worker_send_task_events is True
    off = create_celery_app(private_settings(redis_url, queue_task_events=False))
    assert off.conf.worker_send_task_events is False


# What Celery's worker logs (celery.worker.control, at INFO) when a remote `enable_events` turns
# its task events on: absent from a worker's log, nobody asked it for events.
ENABLED_BY_REMOTE = "Events of group {task} enabled by remote."


class EventTap:
    """A raw Celery event receiver on the test Redis, reading events as Flower and `celery events` do.

    It never asks workers for anything (no `enable_events`, no wakeup broadcast): it only
    listens. Events arrive in `events`, in the order received, from a thread of this process.
    """

    def __init__(self, settings: Settings) -> None:
        self.app = create_celery_app(settings, import_tasks=False)
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._connection = self.app.connection_for_read()
        self.receiver = self.app.events.Receiver(self._connection, handlers={"*": self.events.append})
        self._thread = threading.Thread(target=self._capture, name="event-tap", daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        try:
            self.receiver.capture(limit=None, timeout=None, wakeup=False)
        except BaseException as exc:  # shown by the test that waits on it
            self.error = exc

    def seen(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        assert self.error is None, f"the event receiver failed: {self.error!r}"
        return [e for e in list(self.events) if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())]

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        return [e for e in list(self.events) if e.get("uuid") == job_id]

    def heartbeat(self, worker: WorkerProcess, after: float = 0.0, timeout: float = 15) -> dict[str, Any]:
        """The first heartbeat from `worker` received after `after` (time.time()): the tap hears that worker."""

        def heard() -> dict[str, Any] | None:
            beats = [
                e
                for e in self.seen("worker-heartbeat")
                if e["hostname"].startswith(worker.name) and e["local_received"] > after
            ]
            return beats[0] if beats else None

        try:
            beat: dict[str, Any] = wait_until(heard, timeout=timeout, interval=0.05)
        except AssertionError:
            kinds = sorted({(e["type"], e.get("hostname")) for e in list(self.events)})
            raise AssertionError(f"no worker-heartbeat from {worker.name} within {timeout} s; heard {kinds}") from None
        return beat

    def job_events(self, job_id: str, kinds: tuple[str, ...], timeout: float = 15) -> dict[str, dict[str, Any]]:
        """Wait until every kind in `kinds` has arrived for the job; fail, showing what did, after `timeout` s."""

        def arrived() -> dict[str, dict[str, Any]] | None:
            found = {e["type"]: e for e in self.for_job(job_id)}
            return found if all(kind in found for kind in kinds) else None

        try:
            found: dict[str, dict[str, Any]] = wait_until(arrived, timeout=timeout, interval=0.05)
        except AssertionError:
            got = [e["type"] for e in self.for_job(job_id)]
            raise AssertionError(f"events for {job_id} within {timeout} s: {got}, wanted {kinds}") from None
        return found

    def stop(self) -> None:
        self.receiver.should_stop = True
        self._thread.join(timeout=10)
        self._connection.release()


@pytest.fixture
def event_tap(redis_url: str) -> Iterator[EventTap]:
    tap = EventTap(private_settings(redis_url))  # events are per Redis database, not per queue
    try:
        yield tap
    finally:
        tap.stop()


async def test_a_worker_sends_task_events_without_being_asked(
    redis_url: str, start_worker: StartWorker, event_tap: EventTap
) -> None:
    # No Flower and no `enable_events`: only the tap listens. A worker started the normal way
    # sends its jobs' task events, the outcome's with the result or the error.
    settings = private_settings(redis_url)
    worker = start_worker(settings)
    event_tap.heartbeat(worker)  # the tap hears this worker (events sent before it listened are lost)
    async with open_runtime(settings) as runtime:
        done = await dispatch(runtime, "tests.add", 2, 3)
        failed = await dispatch(runtime, "tests.fail", "boom")
        flaky = await dispatch(runtime, "tests.flaky", 1, max_retries=1)  # attempt 1 fails, attempt 2 returns 2
        events = event_tap.job_events(done.job_id, ("task-received", "task-started", "task-succeeded"))
        assert events["task-received"]["name"] == "tests.add"
        assert events["task-succeeded"]["result"] == repr({"sum": 5, "job_id": done.job_id})

        failure = event_tap.job_events(failed.job_id, ("task-received", "task-started", "task-failed"))["task-failed"]
        assert failure["exception"] == repr(ValueError("boom"))
        assert "ValueError: boom" in failure["traceback"]

        events = event_tap.job_events(flaky.job_id, ("task-retried", "task-succeeded"))
        assert events["task-retried"]["exception"] == repr(RuntimeError("attempt 1 failed on purpose"))
        assert events["task-succeeded"]["result"] == "2"

    once = ["task-received", "task-started"]
    assert [e["type"] for e in event_tap.for_job(done.job_id)] == [*once, "task-succeeded"]
    assert [e["type"] for e in event_tap.for_job(failed.job_id)] == [*once, "task-failed"]
    assert [e["type"] for e in event_tap.for_job(flaky.job_id)] == [*once, "task-retried", *once, "task-succeeded"]
    for job in (done, failed, flaky):
        assert all(e["hostname"].startswith(worker.name) for e in event_tap.for_job(job.job_id))
    # Nobody turned them on: the worker logs Celery's line when a remote enable_events does.
    assert ENABLED_BY_REMOTE not in worker.log()


async def test_a_worker_with_task_events_off_sends_none_until_asked(
    redis_url: str, start_worker: StartWorker, event_tap: EventTap
) -> None:
    settings = private_settings(redis_url, queue_task_events=False)
    worker = start_worker(settings)
    # The tap hears this worker (its heartbeats go out whatever the setting), so a task event
    # the worker published would reach it too.
    beat = event_tap.heartbeat(worker)
    async with open_runtime(settings) as runtime:
        quiet = await dispatch(runtime, "tests.add", 2, 3)
        failed = await dispatch(runtime, "tests.fail", "boom")
        for job, status in [(quiet, JobStatus.COMPLETED), (failed, JobStatus.FAILED)]:
            record = await runtime.watcher.wait_for(runtime.store, job.job_id, 20)
            assert record is not None
            assert record.status == status, record
        done_at = time.time()
        # A heartbeat published after both jobs finished (and after their events would have
        # been flushed, at most 0.1 s later) arrived: the tap was live all along.
        event_tap.heartbeat(worker, after=done_at + 0.5)
        assert ENABLED_BY_REMOTE not in worker.log(), "something (a Flower on this Redis?) enabled its events"
        assert event_tap.for_job(quiet.job_id) == []
        assert event_tap.for_job(failed.job_id) == []

        # Control: asked (as Flower asks), the same worker sends them, and the same tap sees
        # them; so the silence above was the setting's.
        replies = runtime.celery.control.enable_events(destination=[beat["hostname"]], reply=True, timeout=5)
        assert replies, "the worker did not answer enable_events"
        heard = await dispatch(runtime, "tests.add", 4, 5)
        events = event_tap.job_events(heard.job_id, ("task-received", "task-started", "task-succeeded"))
        assert events["task-succeeded"]["result"] == repr({"sum": 9, "job_id": heard.job_id})
        assert ENABLED_BY_REMOTE in worker.log()


async def test_a_job_whose_worker_died_shows_as_the_record_says(
    flower: Flower, worker_for_flower: WorkerProcess, settings_for_flower: Settings, start_worker: StartWorker
) -> None:
    # A SIGKILLed worker sends nothing: the janitor that recovers the job tells Celery's
    # tools, so Flower does not show the job STARTED for good.
    settings = settings_for_flower
    async with open_runtime(settings) as runtime:
        await wait_for_events(flower, runtime)
        key = f"runs-{uuid.uuid4()}"
        lost = await dispatch(runtime, "tests.runs", key, 60, max_retries=0)
        flower.until(lost.job_id, "STARTED")
        kill_whole_worker(worker_for_flower)
        start_worker(settings)  # its janitor finds the lapsed lease (within QUEUE_RECOVERY_SECONDS)
        info = flower.until(lost.job_id, "FAILURE", timeout=30)
        assert info["exception"].startswith("WorkerLost("), info
        record = await runtime.store.get(lost.job_id)
        assert record is not None
        assert record.status == "failed"
        assert record.error is not None
        assert record.error.type == "WorkerLost"
