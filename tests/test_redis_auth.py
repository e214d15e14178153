"""A Redis with a password, given in the URL: jobs run, and the password shows up nowhere."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import WorkerProcess, api_client, make_settings, wait_until
from pocketqueue.config import Settings
from pocketqueue.embedded import answers, free_port, redis_server_binary

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [
            *(redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--requirepass", PASSWORD, "--dir", str(tmp_path)),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    try:
        wait_until(lambda: answers(url))
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_jobs_run_through_a_password_protected_redis_without_leaking_it(
    password_redis: str, start_worker: Callable[[Settings], WorkerProcess]
) -> None:
    wrong = password_redis.replace(PASSWORD, "wrong")
    assert not answers(wrong)

    settings = make_settings(password_redis, "auth")
    worker = start_worker(settings)
    async with api_client(settings) as client:
        job = (await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2]})).json()
        done = await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})
        health = await client.get("/api/queue/health")
    assert done.json()["status"] == "completed"
    assert health.status_code == 200
    for text in (done.text, health.text, worker.log()):
        assert PASSWORD not in text


ACL_USER = "pocketqueue"
ACL_PASSWORD = "acl-user-secret-0123"


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis whose default user is off; the one user may run no @dangerous command."""
    port = free_port()
    config = tmp_path / "redis.conf"
    config.write_text(f"user default off\nuser {ACL_USER} on >{ACL_PASSWORD} ~* &* +@all -@dangerous\n")
    server = subprocess.Popen(
        [
            redis_server_binary(),
            str(config),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{port}/0"
    try:
        wait_until(lambda: answers(url))
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


async def test_the_whole_system_runs_as_a_redis_user_without_dangerous_commands(
    acl_redis: str, start_worker: Callable[[Settings], WorkerProcess]
) -> None:
    # What the README's "Running it in production" promises: FLUSHALL, CONFIG, KEYS, INFO
    # and the rest of @dangerous are never needed, by the API, the worker or Celery.
    assert not answers(acl_redis.replace(f"{ACL_USER}:{ACL_PASSWORD}@", ""))  # the default user is off
    settings = make_settings(acl_redis, "acl")
    worker = start_worker(settings)
    async with api_client(settings) as client:
        job = (await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2]})).json()
        done = await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})
        assert done.json()["status"] == "completed", done.text
        for path in ("/api/queue/health", "/api/queue/stats", "/api/queue/workers", "/api/queue/jobs", "/metrics"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)
    assert "NOPERM" not in worker.log()
