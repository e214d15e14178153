"""The keys PocketQueue keeps on purpose, bounded by design rather than by a TTL per job.

bench/expiry.py demands that every per-job key (records, listing indexes `list:*`, a job's
own event list `events:<id>`, ...) is gone once the jobs expired. These are not per job;
they stay, and must stay within their bounds (lua/includes/observe.lua, jobs/keys.py):

    events            global event stream, trimmed to ~EVENTS_MAXLEN entries
    metrics           sorted set of hosts that wrote counters: one per worker, '' for the API
    metrics:<host>    hash per host: counters and histograms per task and queue
    stats:<minute>    hash of final statuses per minute, expires after 65 minutes
    runtimes:<task>   list of the task's last 1000-1099 run times, expires a week after the last
    workers           sorted set of live workers (lives with them, like their heartbeat keys)

So the verdict leaves them out of the leftover keys and of the memory comparison (their
MEMORY USAGE, every element sampled, is taken off used_memory in both snapshots), and
checks them here against their bounds instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from pocketqueue.jobs.keys import HISTOGRAM_BUCKETS, Keys

EVENTS_MAXLEN = 10_000  # observe.lua; MAXLEN ~ trims whole stream nodes, so up to a node more
RUNTIMES_KEPT = 1_000
# observe.lua cuts a task's run times back to the last 1,000 once 100 more have come, so
# the list holds up to 1,099 between cuts.
RUNTIMES_MOST = RUNTIMES_KEPT + 99
STATS_TTL = 1_200
WEEK = 7 * 86_400
COUNTERS = 9  # sent, received, started, succeeded, failed, retried, revoked, recovered, idempotent_repeats
HISTOGRAM_FIELDS = 2 * (len(HISTOGRAM_BUCKETS) + 1 + 1)  # runtime and queue_wait: buckets with +Inf, and a sum
FINAL_STATUSES = 4  # completed, partial, failed, cancelled


@dataclass(frozen=True)
class Bounds:
    """What the run could have written: tasks x queues per host, and how many workers."""

    tasks: int
    queues: int
    workers: int  # worker processes started (each a host of its own in `metrics`)
    live_workers: int
    stream_node: int  # stream-node-max-entries

    def check(self, kind: str, size: int, ttl: int) -> tuple[str, bool]:
        """The bound of a key of `kind` as text, and whether `size` and `ttl` keep to it."""
        fields = self.tasks * self.queues * (COUNTERS + HISTOGRAM_FIELDS)
        limits: dict[str, tuple[str, int, int | None]] = {  # what is counted, its most, the longest TTL
            "events": ("XLEN", EVENTS_MAXLEN + self.stream_node, None),
            "metrics": ("ZCARD (workers + API)", self.workers + 1, None),
            "metrics:<host>": ("HLEN (tasks x queues x fields)", fields, None),
            "stats:<minute>": ("HLEN", FINAL_STATUSES, STATS_TTL),
            "runtimes:<task>": ("LLEN", RUNTIMES_MOST, WEEK),
            "workers": ("ZCARD (live workers)", self.live_workers, None),
            "queues": ("SCARD (queue names used)", self.queues, None),
        }
        what, most, longest = limits[kind]
        text = f"{what} <= {most:,}" + (f", 0 < TTL <= {longest:,}" if longest else "")
        return text, size <= most and (longest is None or 0 < ttl <= longest)


@dataclass(frozen=True)
class BoundedKey:
    """One bounded-by-design key as a snapshot found it."""

    key: str
    kind: str
    length: str  # e.g. "XLEN 10,043"
    memory: int  # MEMORY USAGE ... SAMPLES 0
    ttl: int  # seconds; -1 without one
    bound: str
    ok: bool


def bounded_kind(key: str, keys: Keys) -> str | None:
    """Which bounded-by-design key `key` is, or None for a per-job (or other) key."""
    if key == keys.events():
        return "events"  # a job's own list, `events:<id>`, is per job: it must expire
    if key == keys.metrics():
        return "metrics"
    if key == keys.workers:
        return "workers"
    if key == keys.queues:
        return "queues"
    for kind, start in (
        ("metrics:<host>", keys.metrics("")),
        ("stats:<minute>", keys.stats_minute(0)[:-1]),
        ("runtimes:<task>", keys.runtimes("")),
    ):
        if key.startswith(start):
            return kind
    return None


LENGTH = {"stream": "XLEN", "hash": "HLEN", "list": "LLEN", "zset": "ZCARD", "set": "SCARD"}


def read_bounded(client: redis.Redis, keys: Keys, names: Iterable[str], bounds: Bounds) -> list[BoundedKey]:
    """The bounded-by-design keys among `names`, with their sizes, TTLs and memory."""
    found = [(name, kind) for name in names if (kind := bounded_kind(name, keys)) is not None]
    with client.pipeline(transaction=False) as pipe:
        for name, _ in found:
            pipe.type(name)
            pipe.memory_usage(name, samples=0)
            pipe.ttl(name)
        replies = pipe.execute()
    types = [str(t) for t in replies[0::3]]
    with client.pipeline(transaction=False) as pipe:  # the length command fitting each type
        length_of = {"stream": pipe.xlen, "hash": pipe.hlen, "list": pipe.llen, "zset": pipe.zcard, "set": pipe.scard}
        for (name, _), key_type in zip(found, types, strict=True):
            length_of.get(key_type, pipe.exists)(name)
        lengths = pipe.execute()
    rows = []
    for (name, kind), key_type, length, memory, ttl in zip(
        found, types, lengths, replies[1::3], replies[2::3], strict=True
    ):
        if key_type == "none":  # gone between the scan and now (a stats minute expiring)
            continue
        bound, ok = bounds.check(kind, int(length), int(ttl))
        size = f"{LENGTH.get(key_type, '?')} {int(length):,}"
        rows.append(BoundedKey(name, kind, size, int(memory or 0), int(ttl), bound, ok))
    return rows


def bounded_memory(rows: list[BoundedKey]) -> int:
    return sum(row.memory for row in rows)


def bounded_lines(rows: list[BoundedKey], prefix: str) -> list[str]:
    """A table of the bounded keys: size, TTL, MEMORY USAGE, bound, verdict."""
    lines = [f"    {'key':44} {'size':>14} {'TTL s':>8} {'MEMORY USAGE':>14}  bound"]
    for row in sorted(rows, key=lambda r: r.key):
        name = row.key.replace(prefix, "{prefix}", 1)
        mark = "ok" if row.ok else "OUT OF BOUND"
        lines.append(f"    {name[:44]:44} {row.length:>14} {row.ttl:>8} {row.memory:>14,}  {row.bound}: {mark}")
    lines.append(f"    total MEMORY USAGE: {bounded_memory(rows):,} bytes")
    return lines if rows else ["    (none)"]
