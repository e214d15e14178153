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
    """The script `lua/<name>.lua` with its includes expanded (each once, where first named),
    keeping only the helpers it uses (see `_used_blocks`)."""
    script = (LUA_DIR / f"{name}.lua").read_text()
    first = _INCLUDE.search(script)
    split = first.start() if first else len(script)
    header, body = script[:split], _INCLUDE.sub("", script[split:])
    blocks: list[str] = []
    seen: set[str] = set()

    def expand(include: str) -> None:
        if include in seen:
            return
        seen.add(include)
        for block in re.split(r"\n\s*\n", (LUA_DIR / "includes" / f"{include}.lua").read_text()):
            nested = _INCLUDE.findall(block)
            if nested and _INCLUDE.sub("", block).strip():
                raise ValueError(f"includes/{include}.lua: an @include line must be a block of its own")
            if nested:
                expand(nested[0])
            else:
                blocks.append(block.strip("\n"))

    for include in _INCLUDE.findall(script):
        expand(include)
    source = "\n\n".join([header.rstrip(), *_used_blocks(blocks, body), body.strip(), ""])
    source = source.replace("__BUCKET_OF__", _bucket_of())
    return source.replace("__RECORD_FORMAT__", str(RECORD_FORMAT))


# A top-level Lua definition: `local function name(` or `local a, b = ...`.
_DEFINES = re.compile(r"^local (?:function (\w+)|([\w, ]+?) =)", re.MULTILINE)
_COMMENT = re.compile(r"--[^\n]*")


def _used_blocks(blocks: list[str], body: str) -> list[str]:
    """The library blocks `body` needs, directly or through other blocks, in their order.

    Lua runs every top-level statement of a script on each call: each `local function`
    builds a closure, each table constructor a table. With the whole library in every
    script, that was a third of the cost of a transition; so a block (a definition and its
    comment, blank lines around it) is kept only if a name it defines is used. A block
    that defines nothing is kept if it holds code (a statement every caller needs) and
    dropped if it is only a comment.
    """
    defined = []
    for block in blocks:
        names = set()
        for function, variables in _DEFINES.findall(block):
            names.update([function] if function else [v.strip() for v in variables.split(",")])
        defined.append(names)
    words = set(re.findall(r"\w+", _COMMENT.sub("", body)))
    keep = [not names and bool(_COMMENT.sub("", block).strip()) for block, names in zip(blocks, defined, strict=True)]
    for block, kept in zip(blocks, keep, strict=True):
        if kept:
            words |= set(re.findall(r"\w+", _COMMENT.sub("", block)))
    changed = True
    while changed:
        changed = False
        for i, block in enumerate(blocks):
            if not keep[i] and defined[i] & words:
                keep[i] = changed = True
                words |= set(re.findall(r"\w+", _COMMENT.sub("", block)))
    return [block for block, kept in zip(blocks, keep, strict=True) if kept]


def _bucket_of() -> str:
    """The body of observe.lua's bucket_of: one comparison per bound, then +Inf."""
    lines = [f"if seconds <= {bound!r} then return '{i}' end" for i, bound in enumerate(HISTOGRAM_BUCKETS, 1)]
    return "\n  ".join([*lines, f"return '{len(HISTOGRAM_BUCKETS) + 1}'"])


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
SCHEDULE_ADVANCE = load("schedule_advance")
CHECKPOINT = load("checkpoint")
TAKE_TOKENS = load("take_tokens")
