"""The markdown report of bench/listing.py: page times and Redis commands per page, size by size."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from redis.utils import HIREDIS_AVAILABLE

from pocketqueue.observe.listing import BATCH, MAX_LIMIT, PREFIX_MATCHES, SCAN_BUDGET
from procs import code_version, machine_summary

if TYPE_CHECKING:
    from listing import Named, Options, SizeResult, Timed

BENCH_DIR = Path(__file__).resolve().parent
COMMANDS_RATIO = 1.5  # a page at the larger size may cost this many times the commands (+ COMMANDS_SLACK)
COMMANDS_SLACK = 2
TIME_RATIO = 3.0  # and this many times the median time, unless within TIME_SLACK_MS (a cost growing
# with the records would show about 10x; a loaded 2-core machine moves medians by 2x)
TIME_SLACK_MS = 5.0  # a loaded 2-core machine moves a few-ms page by that much
# A search by id prefix considers up to PREFIX_MATCHES ids (one HMGET each), then reads the page;
# a walk stops after SCAN_BUDGET entries (one HMGET each, a range read per BATCH).
PREFIX_BOUND = 4 + PREFIX_MATCHES + MAX_LIMIT
BUDGET_BOUND = 8 + SCAN_BUDGET + SCAN_BUDGET // BATCH + MAX_LIMIT


def size_label(records: int) -> str:
    return f"{records // 1_000_000}M" if records % 1_000_000 == 0 else f"{records // 1000:,}k"


def commands_text(timed: Timed) -> str:
    parts = sorted(timed.commands.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {count:g}" for name, count in parts if count >= 0.005) or "-"


def fill_lines(results: list[SizeResult]) -> list[str]:
    lines = [
        "| records | cancelled | fill s (from the previous size) | records/s | used_memory | keys | "
        "list:all (entries, MEMORY USAGE) | list:ids | list:task:book.ocr | list:tag:tenant=acme "
        "| index:queued |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    previous = 0
    for result in results:
        memory = result.memory
        rate = (result.records - previous) / result.fill_seconds if result.fill_seconds else 0
        indexes = " | ".join(
            f"{memory[f'{name} entries']:,}, {memory[name] / 1024**2:,.1f} MiB"
            for name in ("list:all", "list:ids", "list:task:book.ocr", "list:tag:tenant=acme", "index:queued")
        )
        lines.append(
            f"| {result.records:,} | {result.cancelled:,} | {result.fill_seconds:,.0f} | {rate:,.0f} "
            f"| {memory['used_memory'] / 1024**2:,.0f} MiB | {memory['keys']:,} | {indexes} |"
        )
        previous = result.records
    return lines


def timing_lines(named: list[Named], small: SizeResult, large: SizeResult, http: bool) -> list[str]:
    s, l_ = size_label(small.records), size_label(large.records)
    lines = [
        f"| query | asks | {s} median / p99 / max ms | {l_} median / p99 / max ms | median {l_}/{s} "
        f"| commands/page {s} | commands/page {l_} | jobs on page | next_cursor |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for each in named:
        a = (small.http if http else small.direct)[each.name]
        b = (large.http if http else large.direct)[each.name]
        lines.append(
            f"| {each.name} | {each.what.replace('|', '/')} "
            f"| {a.median_ms:.2f} / {a.p99_ms:.2f} / {max(a.seconds) * 1000:.2f} "
            f"| {b.median_ms:.2f} / {b.p99_ms:.2f} / {max(b.seconds) * 1000:.2f} "
            f"| {b.median_ms / a.median_ms:.2f} | {a.total_commands:,.1f} | {b.total_commands:,.1f} "
            f"| {a.jobs} / {b.jobs} | {'yes' if a.cursor else 'no'} / {'yes' if b.cursor else 'no'} |"
        )
    return lines


def command_lines(named: list[Named], result: SizeResult) -> list[str]:
    lines = [f"| query | direct: commands per page at {size_label(result.records)} | over HTTP |", "|---|---|---|"]
    for each in named:
        lines.append(
            f"| {each.name} | {commands_text(result.direct[each.name])} | {commands_text(result.http[each.name])} |"
        )
    return lines


def bounded(each: Named, small: Timed) -> int | None:
    """The fixed bound a query's commands per page are held to, if not to the smaller size's.

    A search by id prefix finds more ids among more records (up to its cap); a query that
    did not reach the scan budget at the smaller size walked all it had there.
    """
    if each.name.startswith("q-prefix"):
        return PREFIX_BOUND
    if each.name == "budget" and not small.cursor:
        return BUDGET_BOUND
    return None


def failures(named: list[Named], small: SizeResult, large: SizeResult) -> list[str]:
    found = []
    for each in named:
        a, b = small.direct[each.name], large.direct[each.name]
        bound = bounded(each, a)
        if bound is not None:
            if b.total_commands > bound:
                found.append(f"{each.name}: {b.total_commands:,.0f} commands per page (bound {bound:,})")
            continue
        if b.total_commands > a.total_commands * COMMANDS_RATIO + COMMANDS_SLACK:
            found.append(f"{each.name}: {a.total_commands:,.0f} -> {b.total_commands:,.0f} commands per page")
        if b.median_ms > a.median_ms * TIME_RATIO and b.median_ms - a.median_ms > TIME_SLACK_MS:
            found.append(f"{each.name}: median {a.median_ms:.2f} -> {b.median_ms:.2f} ms")
    for result in (small, large):
        found += [f"{name}: HTTP page differs from list_jobs' at {result.records:,}" for name in result.mismatches]
    return found


def render(options: Options, named: list[Named], results: list[SizeResult], wall: float) -> tuple[str, list[str]]:
    machine = ", ".join(f"{name} {value}" for name, value in machine_summary().items())
    small, large = results[0], results[-1]
    lines = [
        f"# PocketQueue listing: a page of GET /api/queue/jobs at {small.records:,} and {large.records:,} records",
        "",
        f"machine: {machine}; code {code_version(BENCH_DIR.parent)}",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"{options.runs} timed runs per query, size and way (after 3 untimed); limit 50 unless said; "
        f"listing constants: BATCH {BATCH}, SCAN_BUDGET {SCAN_BUDGET:,}, PREFIX_MATCHES {PREFIX_MATCHES}; "
        f"whole run {wall:,.0f} s; redis-py {redis.__version__}, reply parser "
        f"{'hiredis' if HIREDIS_AVAILABLE else 'pure Python (no hiredis installed)'}",
        "",
        "## The records (real create.lua and cancel.lua calls; Redis AOF off)",
        "",
        *fill_lines(results),
        "",
        "## list_jobs called directly (one asyncio Redis client)",
        "",
        *timing_lines(named, small, large, http=False),
        "",
        "## Through the FastAPI app (httpx ASGITransport, lifespan running)",
        "",
        *timing_lines(named, small, large, http=True),
        "",
        f"HTTP pages identical to list_jobs' pages: {'yes' if not small.mismatches and not large.mismatches else 'NO'}",
        "",
        "## Redis commands per page (INFO commandstats deltas / runs)",
        "",
        *command_lines(named, large),
        "",
        f"verdict rule: at {large.records:,} records each query's page costs at most {COMMANDS_RATIO}x "
        f"(+{COMMANDS_SLACK}) the commands it cost at {small.records:,} (an id-prefix search: at most "
        f"{PREFIX_BOUND}; the budget query, if it walked all its index at the smaller size: at most "
        f"{BUDGET_BOUND:,}), and its median time at most {TIME_RATIO}x (or {TIME_SLACK_MS} ms above; not "
        "compared for the bounded ones).",
    ]
    return "\n".join(lines), failures(named, small, large)
