"""The worker registry: live workers from their heartbeats, `GET /workers`, `/health`, stalled workers.

Real workers, a real Redis, Celery's own CLI to cancel a consumer. Settings with
QUEUE_RECOVERY_SECONDS=4: heartbeats every 0.67 s with a 3 s TTL, stalled after 4 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from conftest import WorkerProcess, api_client, settings_env
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.worker_store import WorkerJobStore
from pocketqueue.observe.workers import read_workers, stall_seconds
from pocketqueue.runtime import open_runtime
from test_crash_recovery import kill_whole_worker
from test_lifecycle import private_settings

StartWorker = Callable[[Settings], WorkerProcess]


@pytest.fixture(scope="module")
def live(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, WorkerProcess]]:
    """One worker on a queue of its own, shared by the tests that only look at it."""
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    worker = WorkerProcess(settings, tmp_path_factory.mktemp("registry") / "worker.log")
    try:
        worker.wait_ready()
        yield settings, worker
    finally:
        worker.stop()


def start_together(settings: Settings, count: int, tmp_path: Path) -> list[WorkerProcess]:
    """Start `count` workers at once (each start takes seconds), and wait until all are ready."""
    workers = [WorkerProcess(settings, tmp_path / f"worker-{n}.log") for n in range(count)]
    for worker in workers:
        worker.wait_ready()
    return workers


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float, interval: float = 0.1) -> Any:
    """Await `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def listed(client: httpx.AsyncClient, worker: WorkerProcess) -> dict[str, Any] | None:
    """The worker as `GET /workers` shows it, or None."""
    response = await client.get("/api/queue/workers")
    assert response.status_code == 200, response.text
    found = [entry for entry in response.json()["workers"] if entry["name"].startswith(worker.name)]
    return found[0] if found else None


def heartbeat_bound(settings: Settings) -> float:
    """Longest a change waits to reach the registry: one heartbeat interval, and a little."""
    return settings.lease_seconds / 3 + 1


def celery_control(settings: Settings, *args: str) -> str:
    """Run `celery -A pocketqueue.worker control ...` as an operator would."""
    command = [sys.executable, "-m", "celery", "-A", "pocketqueue.worker", "control", *args]
    done = subprocess.run(command, env=settings_env(settings), capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_a_live_worker_is_listed_with_its_running_job_and_its_progress(
    live: tuple[Settings, WorkerProcess],
) -> None:
    settings, worker = live
    async with api_client(settings) as client:
        seen = await eventually(lambda: listed(client, worker), timeout=heartbeat_bound(settings))
        assert seen["host"] == socket.gethostname()
        assert seen["pid"] == worker.process.pid
        assert seen["concurrency"] == settings.worker_concurrency
        assert seen["queues"] == [settings.queue_name]
        assert {"pocketqueue.debug", "tests.add"} <= set(seen["tasks"])
        assert seen["consuming"] is True
        assert seen["stalled"] is False
        assert seen["stall_reason"] is None
        assert seen["running"] == []
        assert seen["started_at"] <= seen["last_seen"]

        dispatched = await client.post("/api/queue/test/debug", json={"sleep": 3, "steps": 3})
        job_id = dispatched.json()["job_id"]

        async def running_with_progress() -> dict[str, Any] | None:
            entry = await listed(client, worker)
            jobs = entry["running"] if entry else []
            return jobs[0] if jobs and jobs[0]["progress"] else None

        running = await eventually(running_with_progress, timeout=5)
        assert running["job_id"] == job_id
        assert running["task"] == "pocketqueue.debug"
        assert running["progress"] >= 33
        assert running["step"].startswith("step ")
        assert running["started_at"] is not None
        now = await listed(client, worker)
        assert now is not None
        assert now["last_message_at"] is not None
        assert now["stalled"] is False

        finished = await client.get(f"/api/queue/wait/{job_id}", params={"timeout": 20})
        assert finished.json()["status"] == "completed"
        await eventually(
            lambda: _running_none(client, worker), timeout=heartbeat_bound(settings)
        )  # gone from the heartbeat once done


async def _running_none(client: httpx.AsyncClient, worker: WorkerProcess) -> bool:
    entry = await listed(client, worker)
    return entry is not None and entry["running"] == []


async def test_a_worker_leaves_at_once_on_sigterm_and_within_its_ttl_on_sigkill(
    redis_url: str, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    ttl = int(settings.lease_seconds) + 1
    stopped, killed = workers = start_together(settings, 2, tmp_path)
    keys = Keys(settings.queue_key_prefix)
    async with api_client(settings) as client, contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(lambda: [worker.stop() for worker in workers])
        for worker in (stopped, killed):
            await eventually(lambda worker=worker: listed(client, worker), timeout=heartbeat_bound(settings))
        assert sync_redis.zcard(keys.workers) == 2

        stopped.stop()  # SIGTERM: it retires, key and registry entry together
        assert await listed(client, stopped) is None
        assert [name for name in sync_redis.zrange(keys.workers, 0, -1) if name.startswith(stopped.name)] == []
        assert await listed(client, killed) is not None

        kill_whole_worker(killed)  # nothing retires it: its heartbeat lapses
        killed_at = time.monotonic()
        await eventually(lambda: _gone(client, killed), timeout=ttl + 1)
        assert time.monotonic() - killed_at <= ttl + 1
        assert sync_redis.zcard(keys.workers) == 0  # the read dropped its stale entry


async def _gone(client: httpx.AsyncClient, worker: WorkerProcess) -> bool:
    return await listed(client, worker) is None


async def test_a_worker_whose_consumer_is_cancelled_is_flagged_stalled_while_a_job_waits(
    redis_url: str, start_worker: StartWorker
) -> None:
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    worker = start_worker(settings)
    async with api_client(settings) as client:
        seen = await eventually(lambda: listed(client, worker), timeout=heartbeat_bound(settings))
        out = celery_control(settings, "cancel_consumer", settings.queue_name, "-d", seen["name"])
        assert "no longer consuming" in out, out
        cancelled_at = time.monotonic()

        job = (await client.post("/api/queue/test/debug", json={"result": "late"})).json()

        async def stalled() -> dict[str, Any] | None:
            entry = await listed(client, worker)
            return entry if entry and entry["stalled"] else None

        flagged = await eventually(stalled, timeout=stall_seconds(settings) + heartbeat_bound(settings))
        assert time.monotonic() - cancelled_at <= stall_seconds(settings) + heartbeat_bound(settings)
        assert flagged["consuming"] is False
        assert "not consuming" in flagged["stall_reason"]
        assert settings.queue_name in flagged["stall_reason"]
        health = (await client.get("/api/queue/health")).json()
        assert health["stalled"] == [{"name": flagged["name"], "reason": flagged["stall_reason"]}]
        assert flagged["name"] in health["workers"]
        assert (await client.get(f"/api/queue/status/{job['job_id']}")).json()["status"] == "queued"

        # Consuming again: the job runs and the flag clears.
        celery_control(settings, "add_consumer", settings.queue_name, "-d", seen["name"])
        done = await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})
        assert done.json()["status"] == "completed"
        cleared = await eventually(lambda: _not_stalled(client, worker), timeout=heartbeat_bound(settings))
        assert cleared
        assert (await client.get("/api/queue/health")).json()["stalled"] == []


async def _not_stalled(client: httpx.AsyncClient, worker: WorkerProcess) -> bool:
    entry = await listed(client, worker)
    return entry is not None and entry["consuming"] and not entry["stalled"]


async def test_a_worker_that_consumes_in_name_only_is_flagged_once_a_job_waited_past_the_bound(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    # The silent stall after a Redis reconnect (celery#10205) cannot be caused on demand:
    # its heartbeat is written here as such a worker writes it, consuming by its own
    # account but receiving nothing, beside a real job waiting in its queue.
    settings = private_settings(redis_url, queue_recovery_seconds=4)
    keys = Keys(settings.queue_key_prefix)
    store = WorkerJobStore(sync_redis, keys)
    started = time.time() - 100

    def beat(name: str, running: int) -> None:
        jobs = [{"job_id": f"busy-{n}", "task": "tests.add", "started_at": started} for n in range(running)]
        info = {
            "name": name,
            "host": "elsewhere",
            "pid": os.getpid(),
            "concurrency": 2,
            "queues": [settings.queue_name],
            "tasks": ["tests.add"],
            "started_at": started,
            "last_seen": time.time(),
            "running": jobs,
            "consuming": True,
            "last_message_at": started + 1,
        }
        store.announce_worker(name, info, ttl_seconds=3)

    async with open_runtime(settings) as runtime, api_client(settings) as client:
        await client.post("/api/queue/test/debug", json={})  # no worker consumes this queue: it waits
        published = time.monotonic()

        async def read() -> dict[str, Any]:
            beat("idle@elsewhere", running=0)
            beat("busy@elsewhere", running=2)  # no free slot: busy, not stalled
            workers = await read_workers(runtime.redis, keys, settings)
            return {worker.name: worker for worker in workers}

        early = await read()
        assert set(early) == {"idle@elsewhere", "busy@elsewhere"}
        assert not any(worker.stalled for worker in early.values())  # the job has not waited long yet

        async def idle_stalled() -> Any:
            workers = await read()
            return workers if workers["idle@elsewhere"].stalled else None

        flagged = await eventually(idle_stalled, timeout=stall_seconds(settings) + 2, interval=0.25)
        assert time.monotonic() - published >= stall_seconds(settings) - 0.5
        reason = flagged["idle@elsewhere"].stall_reason
        assert reason is not None
        assert "received no job" in reason, reason
        assert "2 of 2 slots free" in reason, reason
        assert flagged["busy@elsewhere"].stalled is False
        health = (await client.get("/api/queue/health")).json()
        assert [entry["name"] for entry in health["stalled"]] == ["idle@elsewhere"]

    store.retire_worker("idle@elsewhere")
    store.retire_worker("busy@elsewhere")


async def test_health_answers_from_the_registry_in_milliseconds_and_pings_when_asked(
    live: tuple[Settings, WorkerProcess],
) -> None:
    settings, worker = live
    async with api_client(settings) as client:
        await eventually(lambda: listed(client, worker), timeout=heartbeat_bound(settings))
        began = time.perf_counter()
        health = await client.get("/api/queue/health")
        took = time.perf_counter() - began
        body = health.json()
        assert health.status_code == 200
        assert took < 0.25, took  # a ping waits 1 s for replies; the registry needs none
        assert [name for name in body["workers"] if name.startswith(worker.name)]
        assert body["stalled"] == []
        assert body["celery_ping"] is None
        assert body["pinged"] is None

        began = time.perf_counter()
        pinged = (await client.get("/api/queue/health", params={"ping": "true"})).json()
        assert time.perf_counter() - began >= 0.9  # the old check: a broadcast that waits for replies
        assert pinged["celery_ping"] is True
        assert [name for name in pinged["pinged"] if name.startswith(worker.name)]
        assert pinged["workers"] == body["workers"]


def test_the_registry_entry_is_written_with_redis_time_and_bounded(redis_url: str, sync_redis: redis.Redis) -> None:
    settings = private_settings(redis_url)
    keys = Keys(settings.queue_key_prefix)
    store = WorkerJobStore(sync_redis, keys)
    seconds, micros = sync_redis.time()
    now = store.announce_worker("w@h", {"name": "w@h"}, ttl_seconds=3)
    assert abs(now - (seconds + micros / 1e6)) < 1
    assert sync_redis.zscore(keys.workers, "w@h") == now
    assert 0 < sync_redis.ttl(keys.worker("w@h")) <= 3
    assert 0 < sync_redis.ttl(keys.workers) <= 3
    sync_redis.zadd(keys.workers, {"old@h": now - 10})  # a worker killed long ago
    store.announce_worker("w@h", {"name": "w@h"}, ttl_seconds=3)
    assert sync_redis.zrange(keys.workers, 0, -1) == ["w@h"]  # trimmed by the next heartbeat
    store.retire_worker("w@h")
    assert not sync_redis.exists(keys.workers, keys.worker("w@h"))
