"""What the terminal commands draw: rich tables of the stats, jobs, one job, and the workers.

Pure functions from PocketQueue's models to rich renderables, so `stats`, `jobs`,
`inspect` and `monitor` draw the same things the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.observe.position import QueuePosition
from pocketqueue.observe.stats import QueueStats
from pocketqueue.observe.workers import WorkerView

STATUS_STYLE = {
    JobStatus.SCHEDULED: "cyan",
    JobStatus.QUEUED: "blue",
    JobStatus.PROCESSING: "yellow",
    JobStatus.RETRYING: "magenta",
    JobStatus.COMPLETED: "green",
    JobStatus.PARTIAL: "dark_orange",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "dim",
}


BAR_WIDTH = 20


def seconds(value: float | None) -> str:
    """A duration as a person reads it: 850ms, 12.3s, 4m05s, 2h10m; '-' for none."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{int(value // 60)}m{int(value % 60):02d}s"
    return f"{int(value // 3600)}h{int(value % 3600 // 60):02d}m"


def moment(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def status_text(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE[status])


def queue_table(stats: QueueStats) -> Table:
    table = Table(title="Queues", title_justify="left", expand=True)
    columns = ("queue", "high", "normal", "low", "waiting", "scheduled", "retrying", "oldest wait", "broker msgs")
    for column in columns:
        table.add_column(column, justify="left" if column == "queue" else "right")
    for queue in stats.queues:
        depth = [str(count) for count in queue.depth.values()]
        extra = (queue.waiting, queue.scheduled, queue.retrying)
        oldest = seconds(queue.oldest_waiting_seconds)
        table.add_row(queue.name, *depth, *map(str, extra), oldest, str(sum(queue.messages.values())))
    return table


def status_table(stats: QueueStats) -> Table:
    table = Table(title="Jobs by status", title_justify="left", expand=True)
    for status in stats.statuses:
        table.add_column(status_text(status), justify="right")
    table.add_row(*(str(count) for count in stats.statuses.values()))
    return table


def throughput_table(stats: QueueStats) -> Table:
    table = Table(title="Finished per minute (window includes the current minute)", title_justify="left", expand=True)
    table.add_column("last", justify="left")
    names = list(stats.throughput[0].finished) if stats.throughput else []
    for name in names:
        table.add_column(f"{name}/min", justify="right")
        table.add_column(name, justify="right", style="dim")
    for window in stats.throughput:
        cells = [cell for name in names for cell in (f"{window.per_minute[name]:.2f}", str(window.finished[name]))]
        table.add_row(f"{window.minutes} min", *cells)
    return table


def runtime_table(stats: QueueStats) -> Table:
    table = Table(title="Run time per task (last 1000 runs)", title_justify="left", expand=True)
    for column in ("task", "runs", "p50", "p95"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for row in stats.runtimes:
        table.add_row(row.task, str(row.samples), seconds(row.p50_seconds), seconds(row.p95_seconds))
    return table


def stats_view(stats: QueueStats) -> Group:
    dead = Text(f"Dead letters: {stats.dead_letters}", style="red" if stats.dead_letters else "green")
    return Group(queue_table(stats), status_table(stats), throughput_table(stats), runtime_table(stats), dead)


def jobs_table(jobs: Sequence[Job]) -> Table:
    table = Table(expand=True)
    table.add_column("job id", no_wrap=True, min_width=36)  # a uuid, whole: it is what one copies
    for column in ("task", "status", "priority", "progress", "created (UTC)", "tags"):
        table.add_column(column, overflow="fold", no_wrap=column == "created (UTC)")
    for job in jobs:
        tags = " ".join(f"{name}:{value}" for name, value in job.tags.items())
        progress = f"{job.progress}%" + (f" {job.step}" if job.step else "")
        table.add_row(
            job.job_id, job.task, status_text(job.status), job.priority.value, progress, moment(job.created_at), tags
        )
    return table


def job_view(job: Job, position: QueuePosition | None) -> Group:
    """One job: its record, where it stands in line, every failed attempt's error, its result."""
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("job id", job.job_id),
        ("task", job.task),
        ("status", status_text(job.status)),
        ("priority", job.priority.value),
        ("queue", job.queue or "-"),
        ("progress", f"{job.progress}%" + (f" ({job.step})" if job.step else "")),
        ("attempts", f"{job.attempts} (retries allowed: {job.max_retries})"),
        ("created", moment(job.created_at)),
        ("run at", moment(job.run_at)),
        ("started", moment(job.started_at)),
        ("finished", moment(job.finished_at)),
        ("worker", job.worker or "-"),
        ("idempotency key", job.idempotency_key or "-"),
        ("unique key", job.unique_key or "-"),
        ("tags", " ".join(f"{name}:{value}" for name, value in job.tags.items()) or "-"),
        ("args", json.dumps(job.args)),
        ("kwargs", json.dumps(job.kwargs)),
    ]
    if position is not None:
        rows.append(("in line", f"{position.ahead} ahead; starts in ~{seconds(position.estimated_start_seconds)}"))
    for name, value in rows:
        fields.add_row(name, value)
    parts: list[RenderableType] = [Panel(fields, title=f"Job {job.job_id}", title_align="left")]
    if job.attempt_errors:
        errors = Table(title="Failed attempts", title_justify="left", expand=True)
        for column in ("attempt", "error", "message"):
            errors.add_column(column, overflow="fold")
        for error in job.attempt_errors:
            errors.add_row(str(error.attempt or "-"), error.type, error.message)
        parts.append(errors)
    if job.error is not None and job.error.traceback:
        parts.append(Panel(Text(job.error.traceback.rstrip()), title="Last traceback", title_align="left"))
    if job.result is not None or job.partial_errors:
        shown = {"result": job.result, **({"partial_errors": job.partial_errors} if job.partial_errors else {})}
        parts.append(Panel(Syntax(json.dumps(shown, indent=2), "json"), title="Result", title_align="left"))
    if job.unreadable:
        parts.append(Text(f"Unreadable fields (shown empty): {', '.join(job.unreadable)}", style="yellow"))
    return Group(*parts)


def workers_table(workers: Sequence[WorkerView]) -> Table:
    table = Table(title=f"Workers ({len(workers)})", title_justify="left", expand=True)
    for column in ("worker", "pid", "busy", "queues", "last seen", "state"):
        table.add_column(column, overflow="fold")
    for worker in workers:
        state = Text("stalled", style="bold red") if worker.stalled else Text("ok", style="green")
        if worker.stopping:
            state = Text("stopping", style="yellow")
        busy = f"{len(worker.running)}/{worker.concurrency}"
        table.add_row(worker.name, str(worker.pid), busy, ", ".join(worker.queues), moment(worker.last_seen), state)
    return table


def running_table(workers: Sequence[WorkerView], now: datetime) -> Table:
    table = Table(title="Running jobs", title_justify="left", expand=True)
    table.add_column("job id", overflow="ellipsis", max_width=36)
    table.add_column("task", overflow="ellipsis")
    table.add_column("progress", width=BAR_WIDTH)
    table.add_column("%", justify="right")
    table.add_column("step", overflow="ellipsis")
    table.add_column("running for", justify="right")
    table.add_column("worker", overflow="ellipsis")
    for worker in workers:
        for job in worker.running:
            done = job.progress or 0
            ran = None if job.started_at is None else max(0.0, (now - job.started_at).total_seconds())
            bar = ProgressBar(total=100, completed=done, width=BAR_WIDTH)
            table.add_row(job.job_id, job.task, bar, f"{done}%", job.step or "", seconds(ran), worker.name)
    return table
