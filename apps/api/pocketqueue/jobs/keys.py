"""Every Redis key PocketQueue writes, in one place, with why each one is bounded.

Celery's own keys (the queue list, `unacked`, `_kombu.*`) are Celery's; these are ours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Builds key names under one prefix, so several deployments can share a Redis."""

    prefix: str = "pq"

    def job(self, job_id: str) -> str:
        # Hash: the job record. No TTL while active; QUEUE_JOB_TTL_SECONDS once finished.
        return f"{self.prefix}:job:{job_id}"

    def lease(self, job_id: str) -> str:
        # String with a short TTL, refreshed by the worker running the job: while it
        # exists, a redelivered message for the job is a duplicate, not a lost job.
        return f"{self.prefix}:lease:{job_id}"

    def index(self, status: str) -> str:
        # Sorted set of job ids by creation time, one per status (also the listing's status
        # filter), but `failed`, by time of failure (see dead_letter). Entries move on every
        # transition; a finished job's entry leaves with its record (reap.lua), and the key
        # itself lives as long as its newest record.
        return f"{self.prefix}:index:{status}"

    @property
    def dead_letter(self) -> str:
        # The dead-letter set is the `failed` index: every failed job is in it, by time of
        # failure, until re-driven or expired (QUEUE_DEAD_LETTER_TTL_SECONDS; reaped like any
        # index). The listing finds failed jobs by creation time in `list:status:failed`.
        return self.index("failed")

    @property
    def schedule(self) -> str:
        # Sorted set of scheduled and retrying job ids by due time. An entry leaves when
        # its job is published or cancelled, so it holds only active jobs.
        return f"{self.prefix}:schedule"

    def idempotency(self, key: str) -> str:
        # String: the job id (and request fingerprint) a key created; TTL
        # QUEUE_IDEMPOTENCY_TTL_SECONDS.
        return f"{self.prefix}:idempotency:{key}"

    def unique(self, key: str) -> str:
        # String: the id of the one active job holding `unique_key`. Deleted when that job
        # finishes (in the same script), so it lives exactly as long as the active job.
        return f"{self.prefix}:unique:{key}"

    def worker(self, name: str) -> str:
        # String with a TTL, refreshed by each live worker: who is consuming right now.
        return f"{self.prefix}:worker:{name}"

    @property
    def queues(self) -> str:
        # Set of every queue name a job was sent to (create.lua). No TTL: bounded by the
        # queue names a deployment uses, which it chooses, not by the number of jobs.
        return f"{self.prefix}:queues"

    def published(self, queue_list: str) -> str:
        # Sorted set of the queued jobs whose message went to `queue_list`, by when (Redis
        # server time). A job leaves it when it starts or ends, so it holds only queued jobs.
        return f"{self.prefix}:published:{queue_list}"

    @property
    def watermark(self) -> str:
        # Hash: per broker list, the latest publish time of a job that started from it. One
        # field per list (three per queue); expires a record's lifetime after the last start.
        return f"{self.prefix}:watermark"

    @property
    def leases(self) -> str:
        # Sorted set of running jobs by lease deadline (Redis server time, ms). A job leaves
        # it when it stops running, so it holds only processing jobs.
        return f"{self.prefix}:leases"

    @property
    def janitor(self) -> str:
        # String with a short TTL: the worker whose janitor leads (see jobs/lua/lead.lua);
        # renewed every tick while that worker lives, deleted when it stops.
        return f"{self.prefix}:janitor"

    def schedule_state(self, name: str) -> str:
        # Hash, one per declared schedule: the last slot handled, the last one fired and its
        # job, whether it is paused (pocketqueue/schedules/state.py). Expires 30 days after
        # the leader last touched it (it touches every declared one hourly), so a schedule
        # removed from the code leaves nothing behind.
        return f"{self.prefix}:schedules:{name}"

    def batch(self, batch_id: str) -> str:
        # Hash, one per batch (pocketqueue/pipelines/batches.py): its size, policy, state,
        # counts per child status (`n:<status>`), callback and callback job. Expires with
        # its children's records (each child's end renews it).
        return f"{self.prefix}:batch:{batch_id}"

    def batch_children(self, batch_id: str) -> str:
        # Hash: each child's job id and its final status ('' while it is active). Written by
        # the same Lua step that ends the child (job.lua fan_in), so no count can be lost.
        return f"{self.prefix}:batch:{batch_id}:children"

    @property
    def batches_due(self) -> str:
        # Sorted set: batches whose fan-in is due (every child ended, or one failed under
        # fail_fast), by when; the janitor leader dispatches each callback exactly once.
        return f"{self.prefix}:batches:due"

    def reply(self, token: str) -> str:
        # String with a 60 s TTL: what a script answered to the call with this request
        # token, for a resend of it after a lost reply (clear.lua).
        return f"{self.prefix}:reply:{token}"

    # kombu's own bookkeeping of messages taken but not yet acknowledged. kombu names them
    # `unacked`, `unacked_index` and `unacked_mutex` for every app on a Redis; two
    # deployments on one Redis would then restore each other's in-flight messages with
    # their own (short) visibility timeout. Named per deployment, outside our `prefix:`
    # namespace: they are kombu's, and kombu empties and expires them.

    @property
    def unacked(self) -> str:
        return f"unacked:{self.prefix}"

    @property
    def unacked_index(self) -> str:
        return f"unacked_index:{self.prefix}"

    @property
    def unacked_mutex(self) -> str:
        return f"unacked_mutex:{self.prefix}"

    # What the transition scripts write for the queue to be seen (lua/includes/observe.lua
    # says how each is bounded; pocketqueue/observe/ reads them).

    def delayed(self, status: str, queue: str) -> str:
        # Sorted set of the jobs of one queue in `scheduled` or `retrying` (the schedule is
        # one set for every queue), for the per-queue counts of /stats. Kept by job.lua's
        # move() and create.lua; `queue` '' for a record written before jobs named theirs.
        return f"{self.prefix}:delayed:{status}:{queue}"

    def listed(self, *parts: str) -> str:
        # Sorted sets of job ids by creation time: `list:all` (by status: `index`, and
        # `list:status:failed`), `list:task:<task>`, `list:tag:<name>=<value>`; `list:ids`
        # (all scores 0, by id for prefix search); `list:expiring` (finished jobs by record
        # expiry, each entry `id<TAB>task<TAB>tags`, so reap.lua can clear a job whose
        # record already expired).
        return ":".join((self.prefix, "list", *parts))

    def events(self, job_id: str | None = None) -> str:
        # Job events: the global stream (trimmed by length), and each job's own list of
        # `<global entry id> <JSON>` (trimmed by length, expires with the record).
        return f"{self.prefix}:events" if job_id is None else f"{self.prefix}:events:{job_id}"

    def metrics(self, host: str | None = None) -> str:
        # `metrics`: sorted set of hosts by last counter write; `metrics:<host>`: hash of that
        # host's counters and histograms (dropped a week after its last write).
        return f"{self.prefix}:metrics" if host is None else f"{self.prefix}:metrics:{host}"

    def stats_minute(self, minute: int) -> str:
        # Hash: how many jobs reached each final status in that minute (epoch minutes,
        # Redis server time); expires after 65 minutes (the dashboard charts an hour).
        return f"{self.prefix}:stats:{minute}"

    def runtimes(self, task: str) -> str:
        # List: the last 1000 run times (seconds) of `task`, newest first; expires a week
        # after the last.
        return f"{self.prefix}:runtimes:{task}"

    def rate_bucket(self, caller: str) -> str:
        # Hash {tokens, at}: a caller's dispatch token bucket (take_tokens.lua); expires once
        # it would be full again, so an idle caller's bucket costs nothing.
        return f"{self.prefix}:rate:{caller}"

    def session(self, token_digest: str) -> str:
        # String: a dashboard session (api/sessions.py), the key's name under the token's
        # SHA-256; expires with the session.
        return f"{self.prefix}:session:{token_digest}"

    @property
    def audit(self) -> str:
        # Stream: admin actions (who, what, which jobs, when), trimmed to
        # QUEUE_AUDIT_MAX_ENTRIES; expires a year after the last.
        return f"{self.prefix}:audit"

    @property
    def workers(self) -> str:
        # Sorted set: worker names by when each last refreshed its heartbeat key; entries
        # older than the key's TTL are dropped by every read.
        return f"{self.prefix}:workers"

    @property
    def finished_channel(self) -> str:
        # Pub/sub channel (stores nothing): a job id is published when its job finishes,
        # so waiters wake without polling.
        return f"{self.prefix}:finished"


# The histogram buckets (seconds) of run time and queue wait: Prometheus's defaults, as
# celery-exporter uses them, and longer ones for long jobs.
HISTOGRAM_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5)
HISTOGRAM_BUCKETS += (10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# kombu's Redis transport keeps one list per priority step: the bare queue name for step
# 0, `<queue><sep><step>` for the others, and a worker pops them in step order.
PRIORITY_SEPARATOR = ":"
PRIORITY_STEPS = (0, 3, 6)


def queue_list(queue: str, broker_priority: int) -> str:
    """The Redis list a message of that priority step goes to (as kombu names it)."""
    return queue if broker_priority == 0 else f"{queue}{PRIORITY_SEPARATOR}{broker_priority}"


def queue_lists(queue: str) -> list[str]:
    """Every list of `queue`, highest priority first."""
    return [queue_list(queue, step) for step in PRIORITY_STEPS]
