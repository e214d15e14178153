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
