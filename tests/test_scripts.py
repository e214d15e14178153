"""The Lua transitions: one file each, every include resolved, each accepted by a real Redis."""

from __future__ import annotations

import re

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


# What Redis's Lua offers without a definition: a name outside these, called, must be
# defined in the script (a helper the loader left out would fail only when that line runs).
LUA_GLOBALS = {
    "redis",
    "cjson",
    "cmsgpack",
    "bit",
    "struct",
    "string",
    "table",
    "math",
    "tonumber",
    "tostring",
    "unpack",
    "ipairs",
    "pairs",
    "type",
    "pcall",
    "error",
    "next",
    "select",
    "assert",
    "rawget",
    "rawset",
}
_CALLED = re.compile(r"(?<![.:\w])([A-Za-z_]\w*)\s*\(")
_DEFINED = re.compile(
    r"^\s*local function (\w+)|^\s*local ([\w, ]+?) =|\bfunction\s*\(([^)]*)\)|^\s*for ([\w, ]+) in", re.M
)


@pytest.mark.parametrize("name", FILES)
def test_each_script_defines_every_helper_it_calls(name: str) -> None:
    source = re.sub(r"--[^\n]*", "", scripts.load(name))
    source = re.sub(r"'[^'\n]*'", "''", source)  # a call-like word inside a string is not a call
    defined = {part.strip() for match in _DEFINED.findall(source) for group in match for part in group.split(",")}
    called = set(_CALLED.findall(source)) - {"function", "if", "and", "or", "not", "return", "local", "end"}
    assert called - defined - LUA_GLOBALS == set()


def test_a_script_carries_only_the_helpers_it_uses() -> None:
    # Lua builds every helper of a script on each call: create.lua moves no job between
    # statuses, so it must not pay for the helpers that do.
    defined = set(re.findall(r"^local function (\w+)", scripts.CREATE, re.M))
    assert {"list_job", "emit", "publish"} <= defined
    assert defined.isdisjoint({"move", "observe_move", "finish", "observe_finish", "hold_lease"})
    assert "local function finish(" in scripts.FINISH


def test_a_library_statement_that_defines_nothing_is_kept_a_comment_is_not() -> None:
    blocks = ["-- only a comment", "redis.replicate_commands()", "local function unused()\nend"]
    assert scripts._used_blocks(blocks, "return 1") == ["redis.replicate_commands()"]
