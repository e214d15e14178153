"""The local Redis: a real redis-server, loopback only, AOF on, found through DATA_DIR."""

from __future__ import annotations

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
