"""The Lua scripts for every job transition that can race (start, finish, retry, cancel, ...).

Each runs atomically inside Redis, so a check and the write that depends on it can never
be split by another client. Every script takes the key prefix as ARGV[1] and the job id
as ARGV[2], and names the job's keys from them the way `Keys` does. (PocketQueue targets
one Redis server, not Cluster, so keys built inside a script are fine.)

The record's `status` is the single source of truth: a message the broker delivers twice,
or late, is run only if the record says the job is `queued`.

Each transition is its own file in `lua/`, named for what it does, with a header listing
its ARGV and what it returns (as BullMQ keeps its commands). Helpers shared by all of them
live in `lua/includes/` and are pulled in by a `--- @include "name"` line, expanded here
when the script is loaded, so a script can be read (and linted) on its own.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pocketqueue.jobs.keys import HISTOGRAM_BUCKETS
from pocketqueue.jobs.models import RECORD_FORMAT

LUA_DIR = Path(__file__).with_name("lua")
_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"$', re.MULTILINE)


@cache
def load(name: str) -> str:
    """The script `lua/<name>.lua`, its includes expanded (each once, where first named)."""
    seen: set[str] = set()

    def expand(match: re.Match[str]) -> str:
        include = match.group(1)
        if include in seen:
            return ""
        seen.add(include)
        return _INCLUDE.sub(expand, (LUA_DIR / "includes" / f"{include}.lua").read_text())

    source = _INCLUDE.sub(expand, (LUA_DIR / f"{name}.lua").read_text())
    source = source.replace("__HISTOGRAM_BUCKETS__", ", ".join(repr(bound) for bound in HISTOGRAM_BUCKETS))
    return source.replace("__RECORD_FORMAT__", str(RECORD_FORMAT))


CREATE = load("create")
START = load("start")
HEARTBEAT = load("heartbeat")
FINISH = load("finish")
COUNT_DELIVERY = load("count_delivery")
RETRY = load("retry")
PROMOTE = load("promote")
RECOVER = load("recover")
HAND_BACK = load("hand_back")
CANCEL = load("cancel")
REDRIVE = load("redrive")
CLEAR = load("clear")
REPUBLISH = load("republish")
LEAD = load("lead")
DEFER = load("defer")
REAP = load("reap")
ANNOUNCE = load("announce")
