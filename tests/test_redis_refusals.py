"""Redis refusing commands for a while (out of memory, a read-only replica, a busy script) is a
503 with a clear detail, never a 500, and the API carries on when Redis does.

Each test runs its own redis-server (the embedded one on a free port), since it puts that
server in a state no other test could share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis

from conftest import api_client, make_settings
from pocketqueue.embedded import LocalRedis, free_port
from test_api import assert_problem


@pytest.fixture
async def private(tmp_path: Path) -> AsyncIterator[tuple[redis.Redis, httpx.AsyncClient]]:
    server = LocalRedis(tmp_path, write_port_file=False)
    server.start()
    admin = redis.Redis.from_url(server.url)
    try:
        async with api_client(make_settings(server.url, "refusals")) as client:
            yield admin, client
    finally:
        admin.close()
        server.stop()


async def dispatch(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2]})


async def test_out_of_memory_is_a_503_and_dispatch_works_again_once_memory_is_back(
    private: tuple[redis.Redis, httpx.AsyncClient],
) -> None:
    admin, client = private
    assert (await dispatch(client)).status_code == 202
    admin.config_set("maxmemory", 1)  # every write is refused (noeviction)
    problem = assert_problem(await dispatch(client), 503, "redis-unavailable")
    assert "out of memory" in problem["detail"]
    admin.config_set("maxmemory", 0)
    assert (await dispatch(client)).status_code == 202


async def test_a_read_only_replica_is_a_503_naming_it(private: tuple[redis.Redis, httpx.AsyncClient]) -> None:
    admin, client = private
    admin.execute_command("REPLICAOF", "127.0.0.1", free_port())  # a primary that is not there
    try:
        problem = assert_problem(await dispatch(client), 503, "redis-unavailable")
        assert "read-only replica" in problem["detail"]
    finally:
        admin.execute_command("REPLICAOF", "NO", "ONE")
    assert (await dispatch(client)).status_code == 202


async def test_a_busy_script_is_a_503(private: tuple[redis.Redis, httpx.AsyncClient]) -> None:
    admin, client = private
    assert (await dispatch(client)).status_code == 202
    admin.config_set("lua-time-limit", 10)
    busy = threading.Thread(target=_spin, args=(admin.connection_pool.connection_kwargs["port"],), daemon=True)
    busy.start()
    try:
        _wait_busy(admin)
        response = await dispatch(client)
        assert_problem(response, 503, "redis-unavailable")
    finally:
        killer = redis.Redis(port=admin.connection_pool.connection_kwargs["port"])
        _kill_script(killer)
        killer.close()
        busy.join(10)
    assert (await dispatch(client)).status_code == 202


def _spin(port: int) -> None:
    client = redis.Redis(port=port)
    with pytest.raises(redis.ResponseError):  # ended by SCRIPT KILL
        client.eval("while true do end", 0)
    client.close()


def _wait_busy(client: redis.Redis) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
        except redis.ResponseError as exc:
            busy = str(exc)
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert busy.startswith("BUSY")


def _kill_script(client: redis.Redis) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            client.script_kill()
            return
        except redis.ResponseError:  # NOTBUSY: the script has not started yet
            assert time.monotonic() < deadline
            time.sleep(0.05)
