"""`python -m pocketqueue monitor`: the queue live, full screen, until Ctrl-C.

rich's Live on the terminal's alternate screen: each frame is drawn in place of the last
(no scrolling, no flicker), once per interval with the numbers just read; leaving it (Ctrl-C) restores
the screen the shell had. A Redis outage is shown on screen and retried, not fatal.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from redis.exceptions import RedisError
from rich.console import Group, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.text import Text

from pocketqueue.config import Settings
from pocketqueue.observe.stats import QueueStats, read_stats
from pocketqueue.observe.workers import WorkerView, read_workers
from pocketqueue.terminal import views
from pocketqueue.terminal.commands import connect, console


async def monitor(settings: Settings, interval: float) -> None:
    """Redraw every `interval` seconds until cancelled (asyncio.run cancels it on Ctrl-C)."""
    async with connect(settings) as (redis, keys):
        with Live(console=console(), screen=True, auto_refresh=False, transient=True) as live:
            live.update(Text("Reading the queue..."), refresh=True)
            while True:
                try:
                    stats = await read_stats(redis, keys, settings.queue_name)
                    workers = await read_workers(redis, keys, settings)
                    frame: RenderableType = screen(settings, stats, workers)
                except RedisError as exc:  # keep the last numbers' place: say why, and try again
                    frame = Text(f"Redis did not answer ({exc}); retrying every {interval:g} s. Ctrl-C quits.")
                live.update(frame, refresh=True)
                await asyncio.sleep(interval)


def screen(settings: Settings, stats: QueueStats, workers: list[WorkerView]) -> Layout:
    """One frame: a title line, the queue and its rates on top, workers and running jobs below."""
    title = Text.assemble(
        ("PocketQueue monitor", "bold"),
        f"  queue {settings.queue_name}  prefix {settings.queue_key_prefix}  ",
        (f"{views.moment(stats.at)} UTC", "dim"),
        ("  Ctrl-C quits", "dim"),
    )
    now = datetime.now(UTC)
    numbers = Group(views.queue_table(stats), views.status_table(stats), views.throughput_table(stats))
    layout = Layout()
    layout.split_column(
        Layout(title, name="title", size=1),
        Layout(numbers, name="numbers", size=_height(stats)),
        Layout(Group(views.workers_table(workers), views.running_table(workers, now)), name="workers"),
    )
    return layout


def _height(stats: QueueStats) -> int:
    # Each table: a title, a top border, a header, a separator, its rows, a bottom border.
    return (5 + len(stats.queues)) + (5 + 1) + (5 + len(stats.throughput))
