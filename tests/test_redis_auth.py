"""A Redis with a password, or an ACL user without @dangerous, given in the URL: jobs run, and the
password shows up nowhere."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import WorkerProcess, api_client, make_settings, terminate, wait_until
from pocketqueue.config import Settings
from pocketqueue.embedded import answers, free_port, redis_server_binary

PASSWORD = "correct-horse-battery-staple"


@contextmanager
def redis_server(tmp_path: Path, url_of: Callable[[int], str], *args: str) -> Iterator[str]:
    """A redis-server on a free loopback port, started with `args`; yields its URL (`url_of(port)`)."""
    port = free_port()
    command = [redis_server_binary(), *args, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen([*command, "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    url = url_of(port)
    try:
        wait_until(lambda: answers(url))
        yield url
    finally:
        terminate(server)


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    with redis_server(
        tmp_path, lambda port: f"redis://:{PASSWORD}@127.0.0.1:{port}/0", "--requirepass", PASSWORD
    ) as url:
        yield url


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
    config = tmp_path / "redis.conf"
    config.write_text(f"user default off\nuser {ACL_USER} on >{ACL_PASSWORD} ~* &* +@all -@dangerous\n")
    with redis_server(
        tmp_path, lambda port: f"redis://{ACL_USER}:{ACL_PASSWORD}@127.0.0.1:{port}/0", str(config)
    ) as url:
        yield url


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
