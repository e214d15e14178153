"""The Lua transitions: one file each, every include resolved, each accepted by a real Redis."""

from __future__ import annotations

import pytest
import redis

from pocketqueue.jobs import scripts

FILES = sorted(path.stem for path in scripts.LUA_DIR.glob("*.lua"))


def test_every_script_file_is_loaded_by_name() -> None:
    constants = [name for name in dir(scripts) if name.isupper() and isinstance(getattr(scripts, name), str)]
    assert sorted(name.lower() for name in constants) == FILES


@pytest.mark.parametrize("name", FILES)
def test_each_script_compiles_in_redis_with_its_includes_expanded(name: str, sync_redis: redis.Redis) -> None:
    source = scripts.load(name)
    assert '--- @include "' not in source
    assert source.startswith(f"-- {name}.lua\n-- ARGV:")  # the header says what it takes
    sha = sync_redis.script_load(source)  # raises on a syntax error
    assert sync_redis.script_exists(sha) == [True]
