"""Watching one Redis from the outside: command counts, broker list lengths, who sent what.

- `read_counters`: INFO commandstats (every command, those run inside Lua scripts too),
  INFO stats and redis-server's CPU time, read at the edges of a window;
- `BrokerSampler`: the broker lists' lengths against the queued index, in one MULTI;
- `MonitorTally`: MONITOR, tallied by client connection (each script's commands credited
  to the client whose EVALSHA ran it), so a janitor's commands can be told from the rest;
- `job_outcomes`: how many jobs a janitor published again, or started twice, after the fact.

MONITOR makes Redis format every command for us, so windows that measure CPU run without it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

import redis

from pocketqueue.jobs import scripts
from pocketqueue.jobs.keys import Keys
from procs import cpu_seconds

# Script SHA1 -> name ('lead', 'republish', ...), as redis-py's register_script computes it.
SCRIPT_NAMES = {
    hashlib.sha1(text.encode()).hexdigest(): name.lower()
    for name, text in vars(scripts).items()
    if name.isupper() and isinstance(text, str)
}
# Commands only this module sends (readings at the edges of windows, MONITOR itself).
OWN_COMMANDS = frozenset({"info", "monitor"})


@dataclass(frozen=True)
class Counters:
    """Cumulative figures read at one instant."""

    at: float  # time.monotonic()
    calls: Counter[str]  # command -> calls
    usec: Counter[str]  # command -> microseconds Redis spent in it
    cpu: float  # redis-server's user + system CPU seconds (/proc)
    forks: int  # INFO stats total_forks (AOF rewrites fork; their CPU is not in `cpu`)
    samples: int  # BrokerSampler.samples, for taking its own commands back out


def read_counters(client: redis.Redis, pid: int, sampler: BrokerSampler) -> Counters:
    with sampler.lock:  # no sample in flight: its commands are either all counted or none
        stats = client.info("commandstats")
        forks = int(client.info("stats")["total_forks"])
        cpu = cpu_seconds(pid)
        samples = sampler.samples
    calls: Counter[str] = Counter()
    usec: Counter[str] = Counter()
    for name, values in stats.items():
        command = name.removeprefix("cmdstat_")
        calls[command], usec[command] = int(values["calls"]), int(values["usec"])
    return Counters(time.monotonic(), calls, usec, cpu, forks, samples)


@dataclass(frozen=True)
class Window:
    """What Redis did between two readings, less the commands this module sent."""

    seconds: float
    calls: Counter[str]
    usec: Counter[str]
    cpu: float
    forks: int

    @classmethod
    def between(cls, before: Counters, after: Counters) -> Window:
        calls, usec = after.calls.copy(), after.usec.copy()
        calls.subtract(before.calls)
        usec.subtract(before.usec)
        ours = Counter({name: n * (after.samples - before.samples) for name, n in BrokerSampler.COMMANDS.items()})
        calls.subtract(ours)
        for name in OWN_COMMANDS:
            calls.pop(name, None)
            usec.pop(name, None)
        return cls(
            after.at - before.at,
            +calls,  # unary plus drops zero counts
            +usec,
            after.cpu - before.cpu,
            after.forks - before.forks,
        )

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_usec(self) -> int:
        return sum(self.usec.values())


@dataclass
class Sample:
    listed: int = 0  # messages in the queue's broker lists (LLEN, summed)
    queued: int = 0  # jobs whose record says queued (the queued index)
    processing: int = 0
    completed: int = 0
    unacked: int = 0  # kombu's delivered-but-not-acknowledged messages (every queue)

    @property
    def excess(self) -> int:
        return self.listed - self.queued


class BrokerSampler(threading.Thread):
    """Every `interval` s, the broker lists and the job indexes at one instant; keeps the extremes."""

    # What one sample sends (taken back out of the windows' command counts).
    COMMANDS: ClassVar[Counter[str]] = Counter({"multi": 1, "llen": 3, "zcard": 3, "hlen": 1, "exec": 1})

    def __init__(self, client: redis.Redis, keys: Keys, lists: list[str], interval: float = 0.5) -> None:
        super().__init__(name="broker-sampler", daemon=True)
        assert len(lists) == self.COMMANDS["llen"]
        self.client = client
        self.keys = keys
        self.lists = lists
        self.interval = interval
        self.lock = threading.Lock()
        self.samples = 0
        self.last = Sample()
        self.phase_max = self.phase_min = self.run_max = 0
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def take(self) -> Sample:
        with self.lock, self.client.pipeline(transaction=True) as pipe:
            for name in self.lists:
                pipe.llen(name)
            for status in ("queued", "processing", "completed"):
                pipe.zcard(self.keys.index(status))
            pipe.hlen("unacked")
            *lengths, queued, processing, completed, unacked = pipe.execute()
            self.samples += 1
        sample = Sample(sum(lengths), queued, processing, completed, unacked)
        self.last = sample
        self.phase_max = max(self.phase_max, sample.excess)
        self.phase_min = min(self.phase_min, sample.excess)
        self.run_max = max(self.run_max, sample.excess)
        return sample

    def run(self) -> None:
        try:
            while not self._halt.wait(self.interval):
                self.take()
        except BaseException as exc:  # reported by the main thread (check)
            self.error = exc

    def new_phase(self) -> None:
        excess = self.take().excess
        self.phase_max = self.phase_min = excess

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def job_outcomes(client: redis.Redis, keys: Keys, page: int = 1000) -> tuple[int, int, int]:
    """(job records, jobs a janitor published again, jobs started more than once), read a page at a time."""
    seen = again = restarted = 0
    names = client.scan_iter(keys.job("*"), count=page)
    while batch := [name for _, name in zip(range(page), names, strict=False)]:
        with client.pipeline(transaction=False) as pipe:
            for name in batch:
                pipe.hmget(name, "republished", "attempts")
            rows = pipe.execute()
        seen += len(rows)
        again += sum(1 for republished, _ in rows if republished)
        restarted += sum(1 for _, attempts in rows if attempts and int(attempts) > 1)
    return seen, again, restarted


@dataclass
class ClientTally:
    """What one connection sent (EVALSHA named by script) and what its scripts ran."""

    sent: Counter[str] = field(default_factory=Counter)
    inner: Counter[str] = field(default_factory=Counter)
    due_calls: int = 0  # ZRANGEBYSCORE on the schedule: only the leading janitor looks

    @property
    def ticks(self) -> int:
        return self.sent["EVALSHA lead"]  # every janitor tick starts with lead.lua

    @property
    def commands(self) -> int:
        return sum(self.sent.values()) + sum(self.inner.values())


class MonitorTally(threading.Thread):
    """Tallies MONITOR's stream by client connection until stopped."""

    def __init__(self, url: str, keys: Keys, ignore: frozenset[str] = frozenset()) -> None:
        super().__init__(name="monitor-tally", daemon=True)
        self.url = url
        self.keys = keys
        self.ignore = ignore  # "address:port" of connections not to tally (the bench's own)
        self.clients: dict[str, ClientTally] = {}
        self.started = threading.Event()
        self.seconds = 0.0
        self.error: BaseException | None = None
        self._halt = threading.Event()
        self._current: ClientTally | None = None

    def run(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=10)
        began = time.monotonic()
        try:
            with client.monitor() as monitor:
                began = time.monotonic()
                self.started.set()
                while True:  # janitors tick every 0.5 s: the stream is never quiet for long
                    event = monitor.next_command()
                    # Stop between two clients' commands, never inside a script's.
                    if self._halt.is_set() and event["client_type"] != "lua":
                        break
                    self._count(event)
        except BaseException as exc:
            self.error = exc
        finally:
            self.seconds = time.monotonic() - began
            self.started.set()
            client.close()

    def _count(self, event: dict[str, str]) -> None:
        name, _, rest = event["command"].partition(" ")
        name = name.upper()
        if event["client_type"] == "lua":
            if self._current is not None:  # scripts are atomic: this belongs to the last EVALSHA
                self._current.inner[name] += 1
            return
        address = f"{event['client_address']}:{event['client_port']}"
        if address in self.ignore:
            self._current = None
            return
        tally = self.clients.setdefault(address, ClientTally())
        self._current = tally
        first = rest.partition(" ")[0]
        if name in ("EVALSHA", "EVAL"):
            name = f"EVALSHA {SCRIPT_NAMES.get(first, first[:8])}"
        elif name == "ZRANGEBYSCORE" and first == self.keys.schedule:
            tally.due_calls += 1
        if name != "MONITOR":
            tally.sent[name] += 1

    def janitors(self) -> dict[str, ClientTally]:
        return {address: tally for address, tally in self.clients.items() if tally.ticks}

    def total_commands(self) -> int:
        return sum(tally.commands for tally in self.clients.values())

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=15)
        if self.error is not None:
            raise self.error
