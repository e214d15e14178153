"""Celery's stock tools against PocketQueue jobs: the record follows what they do.

`celery control revoke` (Flower's revoke button sends the same broadcast) is a cancel:
the job's record says `cancelled`, instead of staying `queued` or `processing` forever
while its message has been discarded.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
import redis

from conftest import WorkerProcess, settings_env, wait_until
from pocketqueue.config import Settings
from test_api import dispatch

pytestmark = pytest.mark.usefixtures("worker")


def celery_cli(settings: Settings, *args: str) -> str:
    """Run the stock `celery` command of this environment against the test queue's Redis."""
    command = [sys.executable, "-m", "celery", "-A", "pocketqueue.worker", *args]
    done = subprocess.run(command, env=settings_env(settings), capture_output=True, text=True, timeout=60, check=True)
    return done.stdout + done.stderr


async def status_of(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/api/queue/status/{job_id}")).json()
    return body


async def until_status(client: httpx.AsyncClient, job_id: str, status: str, timeout: float = 20) -> dict[str, Any]:
    """Poll the job until it has `status`; fail, showing the job, after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (body := await status_of(client, job_id))["status"] != status:
        assert asyncio.get_running_loop().time() < deadline, f"not {status} within {timeout} s: {body}"
        await asyncio.sleep(0.1)
    return body


async def test_a_revoked_job_is_cancelled_not_stranded(
    client: httpx.AsyncClient, settings: Settings, sync_redis: redis.Redis
) -> None:
    runs = f"runs-{uuid.uuid4()}"
    # Delayed, so its message is published only after the revoke reached the worker: the
    # worker's reply says so, then the job is made due (as if its delay had passed).
    job = await dispatch(client, "tests.runs", kwargs={"key": runs}, delay_seconds=300)
    replies = celery_cli(settings, "control", "revoke", job["job_id"])
    assert "OK" in replies, replies
    assert job["job_id"] in replies, replies
    sync_redis.zadd(f"{settings.queue_key_prefix}:schedule", {job["job_id"]: 0})
    # The janitor publishes it, the worker discards it (revoked), and the record follows.
    await until_status(client, job["job_id"], "cancelled")
    assert sync_redis.llen(runs) == 0  # it never ran


async def test_terminate_of_a_running_job_cancels_it_and_it_never_runs_again(
    client: httpx.AsyncClient, settings: Settings, sync_redis: redis.Redis, worker: WorkerProcess
) -> None:
    runs = f"runs-{uuid.uuid4()}"
    job = await dispatch(client, "tests.runs", kwargs={"key": runs, "sleep": 60})
    wait_until(lambda: sync_redis.llen(runs) == 1, timeout=20)
    celery_cli(settings, "control", "terminate", "SIGTERM", job["job_id"])
    await until_status(client, job["job_id"], "cancelled")
    # Were the record left `processing`, the janitor would requeue it a lease later and it
    # would run again; a cancelled record is never requeued. The next job proves the
    # worker is back, by then well past a lease.
    follow_up = await dispatch(client, "tests.add", args=[1, 2])
    after = (await client.get(f"/api/queue/wait/{follow_up['job_id']}", params={"timeout": 20})).json()
    assert after["status"] == "completed"
    assert sync_redis.llen(runs) == 1
    assert (await status_of(client, job["job_id"]))["status"] == "cancelled"


def test_a_worker_refuses_to_start_with_plain_celery_tasks_registered(settings: Settings, tmp_path: Any) -> None:
    """The short visibility timeout that is safe for jobs would run a long plain task twice."""
    env = {**settings_env(settings), "TASK_MODULES": "pq_test_tasks,pq_plain_celery"}
    done = subprocess.run(
        [sys.executable, "-m", "pocketqueue", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "plain Celery tasks are registered on PocketQueue's app: plain.add" in done.stdout + done.stderr


def test_the_broker_channel_shares_one_client_for_plain_commands(settings: Settings) -> None:
    # kombu would build a redis-py client for every ack and publish (worker/broker.py);
    # ours builds one per channel, and still one of its own for each blocking connection.
    from pocketqueue.worker.app import create_celery_app
    from pocketqueue.worker.broker import Channel, broker_transport

    app = create_celery_app(settings)
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        plain = channel._create_client()
        assert channel._create_client() is plain
        assert plain.ping()
        assert channel._create_client(asynchronous=True) is not channel._create_client(asynchronous=True)
    # TLS is turned on by kombu from the URL's scheme: such URLs keep kombu's transport.
    assert broker_transport("rediss://example:6380/0") is None
