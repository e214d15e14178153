"""Flower and the `celery` CLI, run as a Celery user runs them, show PocketQueue jobs truthfully.

A real `celery -A pocketqueue.worker flower` process watches a real worker; what its HTTP
API reports for each job (state, result, exception) must be what the job's record says.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import WorkerProcess, settings_env, terminate, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.models import Job
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
