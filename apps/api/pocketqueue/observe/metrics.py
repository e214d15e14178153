"""`/metrics`: the cluster's counters, histograms and gauges in Prometheus's text format.

Everything is read from Redis at scrape time (the counters the transition scripts keep in
`metrics:<host>` hashes, the indexes, the broker lists, the worker registry), so every API
process answers the same totals. Names and labels are celery-exporter's, so the Grafana
dashboards and alerts Celery teams already run work unchanged; PocketQueue's own metrics
are prefixed `pocketqueue_`.

The hashes are per worker name (`pocketqueue.<pid>@<host>`) and summed per `hostname`
label (the host): a scrape prunes a hash a week after its host's last sign of life, and
while another worker on the same host lives on, folds it into the host's retired hash
(`metrics:retired@<host>`) rather than drop it, so the summed counters never go down
(prune_hosts says why).

Reading is async (the API's Redis client); building the families is plain Python over
what was read, so no Prometheus collector ever does I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString
from redis.asyncio import Redis
from redis.exceptions import WatchError

from pocketqueue.config import Settings
from pocketqueue.jobs.keys import HISTOGRAM_BUCKETS, PRIORITY_STEPS, Keys, queue_list
from pocketqueue.jobs.models import JobStatus, Priority
from pocketqueue.observe.workers import WorkerView, read_workers

# The version of the text format Prometheus (and every scraper) reads.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

# A host's counters leave a week after its last write (observe.lua promises it): worker
# names carry a pid, so every restart starts a new hash. They are dropped, or folded into
# their hostname's retired hash while that hostname has a hash written since (prune_hosts).
HOST_KEPT_SECONDS = 7 * 86400
# The worker name part of a retired hash's name, `retired@<hostname>` (see retired_name).
RETIRED = "retired"
# How many times a scrape reads the counters again when the `metrics` set gained a host
# meanwhile (see read_counters).
READ_TRIES = 3
# A host whose workers all vanished shows `celery_worker_up 0` for this long after its
# last counter write, then drops out: celery-exporter's default for an offline worker.
DOWN_SHOWN_SECONDS = 600

# Counter fields of the hashes (`<metric>\t<task>\t<queue>`) and what each is exposed as.
COUNTERS: dict[str, tuple[str, str]] = {
    "sent": ("celery_task_sent", "Jobs published to the broker (dispatched, or adopted on receipt)."),
    "received": ("celery_task_received", "Attempts a worker took from the broker and claimed (as started)."),
    "started": ("celery_task_started", "Attempts a worker started."),
    "succeeded": ("celery_task_succeeded", "Jobs that finished completed or partial."),
    "failed": ("celery_task_failed", "Jobs that failed for good (into the dead letters)."),
    "retried": ("celery_task_retried", "Attempts that failed with a retry left."),
    "revoked": ("celery_task_revoked", "Jobs cancelled."),
    "recovered": ("pocketqueue_recovered", "Jobs whose worker died, recovered by the janitor."),
    "idempotent_repeats": (
        "pocketqueue_idempotent_repeats",
        # What create.lua counts: its 'duplicate' (the same key and the same request, the
        # first job still kept), whether the key came as an Idempotency-Key header, a client's
        # idempotency_key, a schedule's slot or a batch's callback. Its 'unique' (a unique_key
        # refusal, 409) and 'conflict' (the key with another request, 409) count nothing.
        "Dispatches answered with the job an earlier dispatch with the same idempotency key"
        " (Idempotency-Key header or idempotency_key) and the same request created;"
        " a unique_key refusal or a key reused with another request is not counted.",
    ),
}
HISTOGRAMS: dict[str, tuple[str, str]] = {
    "runtime": ("celery_task_runtime", "Run time of each attempt that ended (seconds)."),
    "queue_wait": ("pocketqueue_queue_wait_seconds", "Time from publish to start of each attempt (seconds)."),
}
TASK_LABELS = ("name", "hostname", "queue_name")

Labels = tuple[str, str, str]  # (name, hostname, queue_name)
Series = dict[tuple[str, ...], float]  # a gauge's label values -> value


def hostname_label(worker: str) -> str:
    """The `hostname` label of a worker name, as celery-exporter cuts it: the part after '@'.

    Our worker names are `pocketqueue.<pid>@<host>`; keeping the pid would start new series
    on every restart.
    """
    _, at, host = worker.partition("@")
    return host if at else worker


def retired_name(label: str) -> str:
    """The name of the hash that keeps the counters of `label`'s pruned hashes (see prune_hosts).

    `hostname_label` cuts it back to `label`, so its fields add to that hostname's series.
    """
    return f"{RETIRED}@{label}"


def is_retired(host: str) -> bool:
    """Whether `host` names a retired hash rather than a worker (or the API, '')."""
    return host == retired_name(hostname_label(host))


def live_labels(last_write: dict[str, float], before: float) -> set[str]:
    """The `hostname` labels with a hash written since `before` (a retired hash never is)."""
    return {hostname_label(host) for host, at in last_write.items() if at >= before}


def prunable(last_write: dict[str, float], before: float) -> list[str]:
    """The hosts whose hash prune_hosts would retire or drop: not written since `before`.

    Except a retired hash whose hostname still has a live hash: it was written long ago by
    construction (its score is the last write of what it absorbed), and stays.
    """
    live = live_labels(last_write, before)
    return [
        host
        for host, at in last_write.items()
        if at < before and not (is_retired(host) and hostname_label(host) in live)
    ]


@dataclass
class Histogram:
    """One histogram series as the hashes hold it: per-bucket counts (not cumulative) and a sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(HISTOGRAM_BUCKETS) + 1))
    total: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        bounds = [*map(floatToGoString, HISTOGRAM_BUCKETS), "+Inf"]
        running, buckets = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            buckets.append((bound, float(running)))
        return buckets


@dataclass
class Snapshot:
    """Everything one scrape read from Redis."""

    hosts: dict[str, dict[str, str]]  # worker name ('' for the API) -> its counters hash
    host_last_write: dict[str, float]  # worker name -> last counter write (server time)
    now: float  # Redis server time of the read
    jobs: dict[str, int]  # status -> jobs in its index
    queue_lengths: dict[str, list[int]]  # queue -> messages per priority step (PRIORITY_STEPS order)
    workers: list[WorkerView]


async def read_snapshot(redis: Redis, keys: Keys, settings: Settings) -> Snapshot:
    """Read what `/metrics` shows: a few round trips whatever the number of jobs."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(keys.metrics(), 0, -1, withscores=True)
        for status in JobStatus:
            pipe.zcard(keys.index(status))
        (seconds, micros), scored, *counts = await pipe.execute()
    now = seconds + micros / 1e6
    last_write = {str(host): float(score) for host, score in scored}
    stale = prunable(last_write, now - HOST_KEPT_SECONDS)
    if stale:
        await prune_hosts(redis, keys, stale, now - HOST_KEPT_SECONDS)
    workers = await read_workers(redis, keys, settings)
    sent_to: set[str] = await redis.smembers(keys.queues)  # type: ignore[assignment]  # every queue a job was sent to
    queues = sorted({settings.queue_name, *sent_to, *(queue for worker in workers for queue in worker.queues)})
    last_write, hashes, lengths = await read_counters(redis, keys, list(last_write), queues)
    return Snapshot(
        hosts=hashes,
        host_last_write=last_write,
        now=now,
        jobs={status.value: count for status, count in zip(JobStatus, counts, strict=True)},
        queue_lengths={
            queue: lengths[i * len(PRIORITY_STEPS) : (i + 1) * len(PRIORITY_STEPS)] for i, queue in enumerate(queues)
        },
        workers=workers,
    )


async def read_counters(
    redis: Redis, keys: Keys, hosts: list[str], queues: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, str]], list[int]]:
    """The hosts' last writes and counters, and the queues' broker list lengths, read at once.

    One MULTI, the `metrics` set with the hashes, so a hash that a concurrent prune folds
    into its retired hash (prune_hosts, one MULTI too) is counted once, before the fold or
    after it, never twice nor not at all. `hosts` is what the set held a moment ago: if it
    gained a host meanwhile (a new worker, a new retired hash), the read is done again with
    it, a few times at most (then that host waits for the next scrape).
    """
    for _ in range(READ_TRIES):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.zrange(keys.metrics(), 0, -1, withscores=True)
            for host in hosts:
                pipe.hgetall(keys.metrics(host))
            for queue in queues:
                for step in PRIORITY_STEPS:
                    pipe.llen(queue_list(queue, step))
            scored, *replies = await pipe.execute()
        last_write = {str(host): float(score) for host, score in scored}
        if last_write.keys() <= set(hosts):
            break
        hosts = list(last_write)
    # A host the set lost meanwhile (pruned) is left out: its hash is gone with it.
    read = zip(hosts, replies[: len(hosts)], strict=True)
    return last_write, {host: fields for host, fields in read if host in last_write}, replies[len(hosts) :]


async def prune_hosts(redis: Redis, keys: Keys, hosts: Sequence[str], before: float) -> list[str]:
    """Retire the counters of `hosts` not written since `before`; return those retired.

    A host's hash is summed with the others of its `hostname` label (several workers on a
    machine, and every restart, which starts a new worker name: a new hash). Dropping a
    stale hash while another of the same label still counts would make the summed
    counters and histograms of that label go down, which Prometheus reads as a counter
    reset (rate() and increase() spike, alerts fire). So while its label has a hash
    written since `before`, a stale hash is folded into the label's retired hash (HINCRBY
    of each field, see retired_name), which adds to the same series: the sums stay as
    they were. A stale hash whose label has no live hash left, the retired one included,
    is dropped: the label's series vanish whole, which Prometheus handles as staleness,
    not as a reset. A retired hash is thus bounded like a worker's (one field per task and
    queue) and leaves a week after its hostname's last write.

    The retired hash's score in `metrics` is the newest last write it absorbed, older than
    `before` by construction: it never counts as a live host (nor shows up or down in
    `celery_worker_up`), and never keeps its label alive.

    The fold and the delete are one MULTI, so a scrape (read_counters reads in one MULTI
    too) counts each field once. The hashes concerned are watched, the retired ones too:
    a host that writes while this runs keeps its counters, and of two API processes
    pruning at once one folds and the other aborts; an aborted prune returns nothing
    (the next scrape tries again).
    """
    retired = {retired_name(hostname_label(host)) for host in hosts}
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(*{keys.metrics(host) for host in [*hosts, *retired]})
        # Immediate mode (after WATCH): the replies, decoded, not the pipeline.
        scored: list[tuple[str, float]] = await pipe.zrange(keys.metrics(), 0, -1, withscores=True)  # type: ignore[assignment]
        last_write = {str(host): float(score) for host, score in scored}
        asked = set(hosts)
        gone = [host for host in prunable(last_write, before) if host in asked]
        if not gone:
            return []
        live = live_labels(last_write, before)
        folds: dict[str, tuple[dict[str, int], float]] = {}  # retired hash -> fields it absorbs, newest write
        for host in gone:
            label = hostname_label(host)
            if label in live:  # never a retired hash: prunable left those out
                fields: dict[str, str] = await pipe.hgetall(keys.metrics(host))  # type: ignore[assignment]  # decoded
                absorbed, newest = folds.get(retired_name(label), ({}, 0.0))
                folds[retired_name(label)] = (add_fields(absorbed, fields), max(newest, last_write[host]))
        pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
        for name, (absorbed, newest) in folds.items():
            if not absorbed:
                continue  # empty hashes: nothing to keep, no retired hash to start
            for field_name, amount in absorbed.items():
                pipe.hincrby(keys.metrics(name), field_name, amount)
            pipe.zadd(keys.metrics(), {name: max(newest, last_write.get(name, newest))})
        pipe.delete(*(keys.metrics(host) for host in gone))
        pipe.zrem(keys.metrics(), *gone)
        try:
            await pipe.execute()
        except WatchError:
            return []
    return gone


def add_fields(into: dict[str, int], fields: dict[str, str]) -> dict[str, int]:
    """`into` with a hash's fields added; those not integers (none of ours are) left out."""
    for name, raw in fields.items():
        try:
            into[name] = into.get(name, 0) + int(raw)
        except ValueError:
            continue
    return into


@dataclass
class Folded:
    """The hashes summed per label set (several workers on one host are one `hostname`)."""

    counters: dict[str, dict[Labels, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    histograms: dict[str, dict[Labels, Histogram]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Histogram))
    )

    def add(self, host: str, name: str, value: str) -> None:
        metric, *parts = name.split("\t")
        if metric in COUNTERS and len(parts) == 2:
            labels = (parts[0], hostname_label(host), parts[1])
            self.counters[metric][labels] += int(value)
            if metric == "started":  # one count for both: a worker claims a message as it starts its job
                self.counters["received"][labels] += int(value)
            return
        base, _, kind = metric.rpartition("_")
        if base not in HISTOGRAMS:
            return  # a field a newer version writes: not ours to show
        if kind == "bucket" and len(parts) == 3:
            histogram = self.histograms[base][(parts[0], hostname_label(host), parts[1])]
            index = int(parts[2]) - 1  # 1-based in Lua
            if 0 <= index < len(histogram.counts):
                histogram.counts[index] += int(value)
        elif kind == "sum" and len(parts) == 2:
            # Whole microseconds (HINCRBY in observe.lua), shown in seconds.
            self.histograms[base][(parts[0], hostname_label(host), parts[1])].total += int(value) / 1_000_000


def fold(hosts: dict[str, dict[str, str]]) -> Folded:
    folded = Folded()
    for host, fields in hosts.items():
        for name, value in fields.items():
            folded.add(host, name, value)
    return folded


def task_families(folded: Folded) -> Iterator[Metric]:
    for metric, (name, doc) in COUNTERS.items():
        counter = CounterMetricFamily(name, doc, labels=TASK_LABELS)
        for labels, value in sorted(folded.counters[metric].items()):
            counter.add_metric(labels, value)
        yield counter
    for metric, (name, doc) in HISTOGRAMS.items():
        histogram = HistogramMetricFamily(name, doc, labels=TASK_LABELS)
        for labels, series in sorted(folded.histograms[metric].items()):
            histogram.add_metric(labels, series.cumulative(), series.total)
        yield histogram


def worker_families(snapshot: Snapshot) -> Iterator[Metric]:
    up: Series = {}
    active: Series = defaultdict(int)
    # A host that wrote counters lately but has no live worker left is down (0), as
    # celery-exporter shows an offline worker, so `celery_worker_up == 0` alerts fire.
    # A retired hash (prune_hosts) is no host: its score is over a week old anyway.
    for host, at in snapshot.host_last_write.items():
        if host and not is_retired(host) and at >= snapshot.now - DOWN_SHOWN_SECONDS:
            up[hostname_label(host),] = 0
            active[hostname_label(host),] += 0
    for worker in snapshot.workers:
        up[hostname_label(worker.name),] = 1
        active[hostname_label(worker.name),] += len(worker.running)
    yield gauge("celery_worker_up", "1 while a worker on the host heartbeats, 0 once none does.", ("hostname",), up)
    yield gauge("celery_worker_tasks_active", "Jobs running on the host's workers.", ("hostname",), active)
    stalled = sum(1 for worker in snapshot.workers if worker.stalled)
    yield gauge("pocketqueue_workers_stalled", "Live workers not consuming while jobs wait.", (), {(): stalled})


def queue_families(snapshot: Snapshot) -> Iterator[Metric]:
    lengths = snapshot.queue_lengths
    yield gauge(
        "celery_queue_length",
        "Messages waiting on the broker, all priorities.",
        ("queue_name",),
        {(queue,): sum(steps) for queue, steps in lengths.items()},
    )
    by_step = {priority.broker_priority: priority.value for priority in Priority}
    per_priority: Series = {
        (queue, by_step[step]): count
        for queue, steps in lengths.items()
        for step, count in zip(PRIORITY_STEPS, steps, strict=True)
    }
    yield gauge(
        "pocketqueue_queue_length",
        "Messages waiting on the broker, per priority.",
        ("queue_name", "priority"),
        per_priority,
    )
    jobs: Series = {(status,): count for status, count in snapshot.jobs.items()}
    yield gauge("pocketqueue_jobs", "Jobs per status (finished ones until they expire).", ("status",), jobs)
    dead = snapshot.jobs.get(JobStatus.FAILED.value, 0)
    yield gauge("pocketqueue_dead_letters", "Failed jobs in the dead-letter set.", (), {(): dead})


def gauge(name: str, doc: str, labels: Sequence[str], series: Series) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in sorted(series.items()):
        family.add_metric(values, value)
    return family


def families(snapshot: Snapshot) -> list[Metric]:
    """Every metric family of a snapshot."""
    return [*task_families(fold(snapshot.hosts)), *queue_families(snapshot), *worker_families(snapshot)]


class _Families(Collector):
    """A collector that hands over families already built (no I/O in `collect`)."""

    def __init__(self, built: Iterable[Metric]) -> None:
        self.built = list(built)

    def collect(self) -> Iterable[Metric]:
        return self.built


def exposition(snapshot: Snapshot) -> bytes:
    """The snapshot in Prometheus's text format (0.0.4)."""
    # A registry per scrape: nothing is kept between scrapes, and the process-wide default
    # registry (with its process and GC collectors) is left out.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families(snapshot)))
    return generate_latest(registry)


async def render_metrics(redis: Redis, keys: Keys, settings: Settings) -> bytes:
    """Read the cluster's metrics from Redis and render them for a scrape."""
    return exposition(await read_snapshot(redis, keys, settings))
