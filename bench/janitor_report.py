"""The markdown report of bench/janitor.py: the janitors' Redis cost, phase by phase."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from procs import code_version, machine_summary
from redis_watch import ClientTally, Window

if TYPE_CHECKING:
    from janitor import Phase, Scenario

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class After:
    """What the run left, and Redis on its own once every worker had stopped."""

    records: tuple[int, int, int]  # job records seen, published again by a janitor, started twice
    log_lines: dict[str, int]  # worker log lines containing each needle
    max_excess: int  # the highest (broker lists - queued) of the run
    quiet: Window  # no worker running, the jobs still queued
    quiet_busy: float  # the machine's busy CPU seconds during `quiet`


def per_second(count: float, seconds: float) -> str:
    return f"{count / seconds:,.1f}" if seconds > 0 else "-"


def roles(phase: Phase) -> tuple[list[ClientTally], list[ClientTally]]:
    """The janitors of a phase: (leaders, followers). Only a leader looks at the schedule."""
    janitors = list(phase.tally.janitors().values())
    return [t for t in janitors if t.due_calls], [t for t in janitors if not t.due_calls]


def per_tick(tallies: list[ClientTally]) -> float:
    ticks = sum(t.ticks for t in tallies)
    return sum(t.commands for t in tallies) / ticks if ticks else 0.0


def summary_rows(phases: list[Phase]) -> list[str]:
    rows = [
        "| phase | workers | jobs run/s | jobs queued | Redis CPU ms/s | commands/s | in commands ms/s "
        "| janitor commands/s | janitors' share | commands/tick, leader | commands/tick, each other janitor "
        "| ticks/s, all janitors | lists - queued, min / max |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for phase in phases:
        window, tally = phase.window, phase.tally
        leaders, followers = roles(phase)
        janitor = sum(t.commands for t in [*leaders, *followers])
        total = tally.total_commands()
        ticks = sum(t.ticks for t in [*leaders, *followers])
        rows.append(
            f"| {phase.label} | {phase.workers} "
            f"| {per_second(phase.middle.completed - phase.start.completed, window.seconds)} "
            f"| {phase.end.queued:,} | {window.cpu / window.seconds * 1000:.1f} "
            f"| {per_second(window.total_calls, window.seconds)} | {window.total_usec / window.seconds / 1000:.2f} "
            f"| {per_second(janitor, tally.seconds)} | {janitor / total:.0%} "
            f"| {per_tick(leaders):.1f} | {f'{per_tick(followers):.1f}' if followers else '-'} "
            f"| {per_second(ticks, tally.seconds)} | {phase.excess[0]:+,} / {phase.excess[1]:+,} |"
        )
    return rows


def janitor_table(phases: list[Phase]) -> list[str]:
    """Each command a janitor sends (scripts by name) or its scripts run, per tick, by role."""
    columns: list[tuple[str, list[ClientTally]]] = []
    for phase in phases:
        leaders, followers = roles(phase)
        columns.append((f"{phase.label} leader", leaders))
        if followers:
            columns.append((f"{phase.label} other", followers))
    names: set[str] = set()
    for _, tallies in columns:
        for tally in tallies:
            names |= set(tally.sent) | {f"in scripts: {name}" for name in tally.inner}
    rows = ["| command | " + " | ".join(label for label, _ in columns) + " |", "|---|" + "--:|" * len(columns)]
    for name in sorted(names, key=lambda n: (n.startswith("in scripts"), n)):
        cells = []
        for _, tallies in columns:
            ticks = sum(t.ticks for t in tallies)
            inner = name.removeprefix("in scripts: ")
            count = sum(t.inner[inner] if inner != name else t.sent[name] for t in tallies)
            cells.append(f"{count / ticks:.2f}" if ticks and count else "")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [f"{per_tick(tallies):.2f}" for _, tallies in columns]
    rows.append("| **all** | " + " | ".join(totals) + " |")
    rows.append("| ticks counted | " + " | ".join(f"{sum(t.ticks for t in ts):,}" for _, ts in columns) + " |")
    return rows


def commandstats_table(phases: list[Phase], top: int = 25) -> list[str]:
    rates: dict[str, list[float]] = {}
    for index, phase in enumerate(phases):
        for name, calls in phase.window.calls.items():
            rates.setdefault(name, [0.0] * len(phases))[index] = calls / phase.window.seconds
    rows = [
        "| command (calls/s) | " + " | ".join(phase.label for phase in phases) + " |",
        "|---|" + "--:|" * len(phases),
    ]
    for name, values in sorted(rates.items(), key=lambda item: -max(item[1]))[:top]:
        rows.append(f"| {name} | " + " | ".join(f"{value:,.1f}" if value else "" for value in values) + " |")
    if len(rates) > top:
        rows.append(f"| ({len(rates) - top} more, each less) | " + " | ".join("" for _ in phases) + " |")
    cores = os.cpu_count() or 1
    extra = {
        "**all commands**": [per_second(p.window.total_calls, p.window.seconds) for p in phases],
        "Redis CPU, ms/s (/proc)": [f"{p.window.cpu / p.window.seconds * 1000:.1f}" for p in phases],
        "Redis time in commands, ms/s": [f"{p.window.total_usec / p.window.seconds / 1000:.2f}" for p in phases],
        "forks (AOF rewrites)": [str(p.window.forks) for p in phases],
        "machine busy, % of all cores": [f"{p.busy / (p.window.seconds * cores):.0%}" for p in phases],
    }
    rows += [f"| {name} | " + " | ".join(values) + " |" for name, values in extra.items()]
    return rows


def quiet_line(after: After, queued: int) -> str:
    quiet, cores = after.quiet, os.cpu_count() or 1
    return (
        f"For comparison, no worker (after the run, {queued:,} jobs still queued; {quiet.seconds:.0f} s): "
        f"Redis CPU {quiet.cpu / quiet.seconds * 1000:.1f} ms/s, {per_second(quiet.total_calls, quiet.seconds)} "
        f"commands/s, {quiet.total_usec / quiet.seconds / 1000:.2f} ms/s in commands "
        f"(machine busy {after.quiet_busy / (quiet.seconds * cores):.0%} of all cores)."
    )


def broker_lines(phases: list[Phase], after: After) -> list[str]:
    lines = [
        f"Highest (sum of the broker lists' LLEN) - (queued index) over the whole run: **{after.max_excess:+,}** "
        "(read in one MULTI every 0.5 s; below 0: a message a worker has taken whose job has not started yet).",
        "",
        "| phase | start: lists / queued / running / unacked | end: lists / queued / running / unacked |",
        "|---|--:|--:|",
    ]
    for phase in phases:
        start, end = phase.start, phase.end
        lines.append(
            f"| {phase.label} | {start.listed:,} / {start.queued:,} / {start.processing} / {start.unacked} "
            f"| {end.listed:,} / {end.queued:,} / {end.processing} / {end.unacked} |"
        )
    return lines


def render(scenario: Scenario, dispatch_seconds: float, phases: list[Phase], after: After, wall: float) -> str:
    options, settings = scenario.options, scenario.settings
    machine = ", ".join(f"{name} {value}" for name, value in machine_summary().items())
    seen, again, restarted = after.records
    leaders = "; ".join(f"{phase.label}: {phase.leader}" for phase in phases)
    lines = [
        f"# PocketQueue janitor: Redis cost with {options.jobs:,} jobs queued, 1 vs {options.many} workers",
        "",
        f"machine: {machine}; code {code_version(BENCH_DIR.parent)}",
        f"command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        f"settings: {options.jobs:,} x `pocketqueue.debug` sleeping {options.sleep} s; workers of concurrency 1; "
        f"QUEUE_RECOVERY_SECONDS {settings.queue_recovery_seconds} (janitor ticks every 0.5 s plus its own time, "
        f"sweeps every {settings.janitor_interval:g} s; heartbeat every {settings.lease_seconds / 3:g} s); per phase "
        f"{options.window:g} s measured without MONITOR, then {options.monitor:g} s under it",
        f"dispatch: {options.jobs:,} jobs in {dispatch_seconds:.1f} s ({options.jobs / dispatch_seconds:,.0f}/s) "
        f"through the dispatch flow, 1 worker running; whole run {wall:.0f} s",
        f"leader at the end of each phase: {leaders}",
        "",
        "## Summary",
        "",
        "Jobs run, CPU and commands: the window without MONITOR (INFO commandstats deltas, which count commands "
        "run inside scripts; the bench's own sampling, 2 MULTIs/s, taken out of the counts but not out of the "
        "CPU). Janitor figures: the MONITOR window, every "
        "command credited to the connection that sent it (a script's commands to its EVALSHA); a janitor tick "
        "is one call of lead.lua.",
        "",
        *summary_rows(phases),
        "",
        quiet_line(after, phases[-1].end.queued),
        "",
        "## Broker lists against queued jobs",
        "",
        *broker_lines(phases, after),
        "",
        "## A janitor's commands per tick, by command (MONITOR)",
        "",
        "`leader`: the janitor holding the lease (it looks at the schedule every tick, sweeps every "
        f"{settings.janitor_interval:g} s); `other`: the average of the others. `in scripts`: run inside its "
        "EVALSHA calls.",
        "",
        *janitor_table(phases),
        "",
        "## Every command Redis ran, per second (INFO commandstats, without MONITOR)",
        "",
        *commandstats_table(phases),
        "",
        "## After the run",
        "",
        f"- job records: {seen:,}; published again by a janitor (`republished` set): {again:,}; "
        f"started more than once: {restarted:,}",
        "- worker log lines: " + ", ".join(f"'{needle}' {count:,}" for needle, count in after.log_lines.items()),
    ]
    return "\n".join(lines) + "\n"
