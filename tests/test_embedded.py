"""The local Redis: a real redis-server, loopback only, AOF on, found through DATA_DIR."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import redis

from pocketqueue.config import Settings
from pocketqueue.embedded import LocalRedis, answers, local_redis_url
from pocketqueue.errors import ConfigurationError


def test_local_redis_is_loopback_only_with_aof_and_found_through_data_dir(tmp_path: Path) -> None:
    with LocalRedis(tmp_path) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        config = client.config_get("*")
        assert config["appendonly"] == "yes"
        assert config["bind"].split() == ["127.0.0.1"]
        assert Path(config["dir"]) == (tmp_path / "redis").resolve()
        assert local_redis_url(tmp_path) == server.url
        assert Settings(_env_file=None, data_dir=tmp_path).resolved_redis_url() == server.url  # type: ignore[call-arg]
        client.close()
    assert not answers(server.url)


def test_a_restart_keeps_the_data_and_the_port(tmp_path: Path) -> None:
    with LocalRedis(tmp_path) as server:
        redis.Redis.from_url(server.url).set("kept", "yes")
    with LocalRedis(tmp_path) as again:
        assert again.url == server.url  # clients still pointing at it reconnect by themselves
        assert redis.Redis.from_url(again.url).get("kept") == b"yes"


def test_a_second_local_redis_for_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    with LocalRedis(tmp_path), pytest.raises(ConfigurationError, match="already running"):
        LocalRedis(tmp_path).start()


def plain_bind_fails(port: int) -> bool:
    """Whether a bind without SO_REUSEADDR (the old port check) is refused on `port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_a_restart_keeps_the_port_while_old_clients_are_still_connected(tmp_path: Path, stop: str) -> None:
    """A worker and Flower still connected leave sockets in TIME-WAIT/FIN-WAIT: the port stays."""
    server = LocalRedis(tmp_path)
    server.start()
    clients = [redis.Redis.from_url(server.url, decode_responses=True) for _ in range(2)]
    try:
        for n, client in enumerate(clients):
            client.set(f"client-{n}", "before")
        assert server.process is not None
        if stop == "sigkill":
            server.process.kill()
            server.process.wait()
        else:
            server.stop()  # SIGTERM: Redis closes the clients' connections itself
        port = server.port
        assert plain_bind_fails(port)  # the leftover sockets that used to move the port

        again = LocalRedis(tmp_path)  # a new `pocketqueue redis`, as after a crash
        assert again.port == port
        with again:
            assert local_redis_url(tmp_path) == server.url
            for n, client in enumerate(clients):  # the old clients reconnect by themselves
                assert client.get(f"client-{n}") == "before"
                client.set(f"client-{n}", "after")
                assert client.get(f"client-{n}") == "after"
    finally:
        for client in clients:
            client.close()
        server.stop()


def test_the_port_moves_loudly_only_when_another_program_listens_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with LocalRedis(tmp_path) as server:
        port = server.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with caplog.at_level(logging.WARNING, logger="pocketqueue.embedded"), LocalRedis(tmp_path) as moved:
            assert moved.port != port
            assert local_redis_url(tmp_path) == moved.url
        assert f"Port {port}" in caplog.text
        assert "taken by another program" in caplog.text
