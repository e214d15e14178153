"""The markdown report: the machine, a summary against the targets, then each measurement."""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from loadgen import percentile
from model import (
    NAIVE_ASYNC_TARGET,
    NAIVE_TARGET,
    PHASES,
    PQ_KEY_TARGET,
    PQ_TARGET,
    DispatchRun,
    DrainRun,
    Options,
    Results,
    SoakRun,
)
from pocketqueue.embedded import redis_server_binary
from procs import machine_summary

STALL_SECONDS = 1.0


def render(results: Results, seconds: float) -> str:
    options = results.options
    sections = [
        "# PocketQueue benchmark",
        machine_line(),
        run_line(options, seconds, results.code),
        other_load_line(results),
        summary(results),
    ]
    if results.dispatch:
        sections.append(dispatch_section(results))
    if results.delay:
        sections.append(delay_section(results))
    if results.latency:
        sections.append(latency_section(results))
    if results.drain:
        sections.append(drain_section(results))
    if results.drain_async:
        sections.append(drain_async_section(results))
    if results.drain_flow:
        sections.append(drain_flow_section(results))
    if results.dispatch_key:
        sections.append(dispatch_key_section(results))
    if results.soak:
        sections.append(soak_section(results))
    sections.append(method_section(options))
    return "\n\n".join(sections) + "\n"


def run_line(options: Options, seconds: float, code: tuple[str, str]) -> str:
    kind = "quick smoke run (`--quick`)" if options.quick else "full run"
    if options.phases != PHASES:
        kind += f", phases: {', '.join(options.phases)}"
    version = f"code at {code[0]}"
    if code[1] != code[0]:
        version += f" when it started and {code[1]} when it ended: **the code changed during the run**"
    return f"**Run:** {kind}, {version}; took {minutes(seconds)}."


def machine_line() -> str:
    machine = machine_summary()
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio loop"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    packages = ", ".join(f"{name} {package_version(name)}" for name in ("celery", "kombu", "fastapi", "redis"))
    return (
        f"**Machine:** {machine['cpu']}, {machine['cores']} cores, {machine['memory']} RAM, "
        f"Python {machine['python']}, {machine['os']}; redis-server {redis_server_version()}; "
        f"{packages}; uvicorn {package_version('uvicorn')} ({loop}, {parser})."
    )


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def redis_server_version() -> str:
    try:
        out = subprocess.run([redis_server_binary(), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    return next((part[2:] for part in out.split() if part.startswith("v=")), "?")


def other_load_line(results: Results) -> str:
    shares = ", ".join(f"{phase} {share:.0%}" for phase, share in results.other_cpu.items())
    worst = max(results.other_cpu.values(), default=0.0)
    warning = "; **the machine was not idle; numbers may be skewed**" if worst > 0.1 else ""
    return (
        f"**Other load:** CPU used by processes this run did not start, as a share of the machine: {shares}{warning}."
    )


# Formatting -------------------------------------------------------------------------


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def ratio(value: float, baseline: float) -> str:
    return f"{value / baseline:.2f}x" if baseline > 0 else "n/a"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if side == "r" else "---" for side in align]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


# Sections -----------------------------------------------------------------------------


def summary(results: Results) -> str:
    rows: list[list[str]] = []
    pq, naive = results.dispatch.get(PQ_TARGET.name), results.dispatch.get(NAIVE_TARGET.name)
    if pq and naive:
        rows.append(
            [
                f"Dispatch throughput, {pq.result.clients} clients",
                f"{pq.result.rate:,.0f} req/s",
                f"{naive.result.rate:,.0f} req/s",
                ratio(pq.result.rate, naive.result.rate),
                ">= 2x",
                verdict(pq.result.rate >= 2 * naive.result.rate),
            ]
        )
    if len(results.latency) == 2:
        pq_p50 = statistics.median(results.latency["pocketqueue"])
        raw_p50 = statistics.median(results.latency["celery"])
        rows.append(
            [
                "Dispatch-to-result p50",
                f"{ms(pq_p50)} (HTTP)",
                f"{ms(raw_p50)} (in-process `delay().get()`)",
                ratio(pq_p50, raw_p50),
                "<= 2x",
                verdict(pq_p50 <= 2 * raw_p50),
            ]
        )
    if len(results.drain) == 2:
        pq_drain, celery_drain = results.drain["pocketqueue"], results.drain["celery"]
        rows.append(
            [
                f"Worker drain, {pq_drain.jobs:,} no-op jobs",
                f"{pq_drain.rate:,.0f} jobs/s",
                f"{celery_drain.rate:,.0f} jobs/s (plain Celery)",
                ratio(pq_drain.rate, celery_drain.rate),
                ">= 0.9x",
                verdict(pq_drain.rate >= 0.9 * celery_drain.rate),
            ]
        )
    rows.extend(delay_summary_rows(results))
    rows.extend(drain_async_summary_rows(results))
    rows.extend(drain_flow_summary_rows(results))
    rows.extend(dispatch_key_summary_rows(results))
    rows.extend(soak_summary_rows(results))
    header = ["Measurement", "PocketQueue", "Baseline", "Ratio", "Target", "Result"]
    return "## Summary\n\n" + table(header, rows, "lrrrll")


def delay_summary_rows(results: Results) -> list[list[str]]:
    """Ours against each other way of enqueueing from Python: the target is faster than each."""
    ours = results.delay.get("pocketqueue")
    if ours is None:
        return []
    baselines = {
        "celery": "Celery `delay`, result backend",
        "celery_no_backend": "Celery `delay`, no backend",
        "rq": "RQ `enqueue`",
    }
    return [
        [
            f"In-process `.delay()`, one thread, {ours.jobs:,} jobs x {len(ours.rates)}",
            f"{ours.median:,.0f} jobs/s",
            f"{theirs.median:,.0f} jobs/s ({label})",
            ratio(ours.median, theirs.median),
            "> 1x",
            verdict(ours.median > theirs.median),
        ]
        for name, label in baselines.items()
        if (theirs := results.delay.get(name)) is not None
    ]


def drain_async_summary_rows(results: Results) -> list[list[str]]:
    runs_async, runs_sync = results.drain_async.get("async"), results.drain_async.get("sync")
    if not runs_async or not runs_sync:
        return []
    rate_async, rate_sync = median_rate(runs_async), median_rate(runs_sync)
    return [
        [
            f"Worker drain, {runs_async[0].jobs:,} `async def` no-op jobs",
            f"{rate_async:,.0f} jobs/s",
            f"{rate_sync:,.0f} jobs/s (`def` no-op)",
            ratio(rate_async, rate_sync),
            "reported",
            "",
        ]
    ]


def stage_overhead_ms(results: Results) -> float | None:
    """What each stage of a flow job adds to a job, in ms of a worker process's time: the
    drain's extra seconds per job, times the worker's 2 processes, over the 5 stages."""
    runs_flow, runs_sync = results.drain_flow.get("flow"), results.drain_flow.get("sync")
    if not runs_flow or not runs_sync:
        return None
    per_job = 2 * (1 / median_rate(runs_flow) - 1 / median_rate(runs_sync))
    return 1000 * per_job / 5


def drain_flow_summary_rows(results: Results) -> list[list[str]]:
    overhead = stage_overhead_ms(results)
    if overhead is None:
        return []
    rate_flow, rate_sync = median_rate(results.drain_flow["flow"]), median_rate(results.drain_flow["sync"])
    return [
        [
            f"Flow job overhead per stage (5-node no-op flow, {results.drain_flow['flow'][0].jobs:,} jobs)",
            f"{overhead:.2f} ms ({rate_flow:,.0f} jobs/s)",
            f"{rate_sync:,.0f} jobs/s (plain no-op)",
            "",
            "< 5 ms",
            verdict(overhead < 5),
        ]
    ]


def dispatch_key_summary_rows(results: Results) -> list[list[str]]:
    without, keyed = results.dispatch_key.get(PQ_TARGET.name), results.dispatch_key.get(PQ_KEY_TARGET.name)
    if not without or not keyed:
        return []
    rate_without = statistics.median(run.result.rate for run in without)
    rate_keyed = statistics.median(run.result.rate for run in keyed)
    return [
        [
            f"Dispatch throughput with an API key ({len(keyed)} alternating runs, median)",
            f"{rate_keyed:,.0f} req/s",
            f"{rate_without:,.0f} req/s (no keys)",
            ratio(rate_keyed, rate_without),
            ">= 0.9x",
            verdict(rate_keyed >= 0.9 * rate_without),
        ]
    ]


def dispatch_key_section(results: Results) -> str:
    rows = [
        [
            runs[0].target.label,
            ", ".join(f"{run.result.rate:,.0f}" for run in runs),
            f"{statistics.median(run.result.rate for run in runs):,.0f}",
            f"{statistics.median(run.api_cpu for run in runs):.0%}",
        ]
        for runs in results.dispatch_key.values()
    ]
    header = ["API (one process, no worker)", "req/s per run", "median req/s", "API CPU"]
    return "## 1c. Dispatch with an API key\n\n" + table(header, rows)


def median_rate(runs: Sequence[DrainRun]) -> float:
    return statistics.median(run.rate for run in runs)


def soak_summary_rows(results: Results) -> list[list[str]]:
    pq = results.soak.get(PQ_TARGET.name)
    if pq is None:
        return []
    naive = results.soak.get(NAIVE_TARGET.name)
    growth = rss_growth(pq)
    return [
        [
            f"Soak: API RSS growth over {pq.result.requests:,} dispatches",
            f"{growth / 1024:+.0f} MiB, {pq.result.slower_than(STALL_SECONDS)} stalls",
            f"{rss_growth(naive) / 1024:+.0f} MiB over {naive.result.requests:,}, "
            f"{naive.result.slower_than(STALL_SECONDS)} stalls (naive)"
            if naive
            else "not run",
            "",
            "flat",
            verdict(growth <= max(16 * 1024, 0.1 * pq.samples[0][2])),
        ]
    ]


def rss_growth(run: SoakRun) -> int:
    """KiB gained from the start (after the warm-up) to the end of the soak."""
    return run.samples[-1][2] - run.samples[0][2]


def dispatch_section(results: Results) -> str:
    rows = []
    for run in results.dispatch.values():
        result = run.result
        rows.append(
            [
                run.target.label,
                f"{result.rate:,.0f}",
                ms(result.percentile(0.5)),
                ms(result.percentile(0.99)),
                ms(result.max_latency),
                result.describe_errors(),
                f"{run.api_cpu:.0%}",
                f"{run.redis_cpu:.0%}",
                f"{run.loadgen_cpu:.0%}",
            ]
        )
    header = [
        "API (one process, no worker)",
        "req/s",
        "p50",
        "p99",
        "max",
        "errors",
        "API CPU",
        "Redis CPU",
        "client CPU",
    ]
    text = "## 1. Dispatch throughput\n\n" + table(header, rows)
    wrk_rows = [wrk_row(run) for run in results.dispatch.values() if run.wrk is not None]
    if wrk_rows:
        text += (
            f"\n\nCross-check with wrk (`wrk -t2 -c{results.options.clients}`, 1 s warm-up then "
            f"{results.options.wrk_seconds:.0f} s, right after the run above):\n\n"
        )
        text += table(["API", "req/s", "p50", "p99", "errors"], wrk_rows)
    naive_async = results.dispatch.get(NAIVE_ASYNC_TARGET.name)
    if naive_async is not None:
        text += (
            "\n\nThe `async def` variant calls Celery's synchronous producer on the event loop, so every "
            "publish blocks all other requests; shown for reference, the comparison uses the `def` endpoint."
        )
    return text


def wrk_row(run: DispatchRun) -> list[str]:
    assert run.wrk is not None
    return [run.target.label, f"{run.wrk.rate:,.0f}", ms(run.wrk.p50), ms(run.wrk.p99), str(run.wrk.errors)]


def latency_section(results: Results) -> str:
    labels = {
        "pocketqueue": "PocketQueue: POST /dispatch + GET /wait/{id} (HTTP, keep-alive)",
        "celery": "raw Celery: `task.delay().get()` in-process",
    }
    rows = []
    for name, samples in results.latency.items():
        ordered = sorted(samples)
        rows.append(
            [
                labels[name],
                str(len(samples)),
                ms(percentile(ordered, 0.5)),
                ms(percentile(ordered, 0.99)),
                ms(statistics.fmean(ordered)),
                ms(ordered[-1]),
            ]
        )
    header = ["Round trip (one worker, concurrency 2)", "samples", "p50", "p99", "mean", "max"]
    return "## 2. Dispatch-to-result latency\n\n" + table(header, rows)


def drain_section(results: Results) -> str:
    labels = {"pocketqueue": "PocketQueue worker (`pocketqueue.debug`)", "celery": "plain Celery worker (no-op task)"}
    rows = [
        [
            labels[name],
            f"{run.jobs:,}",
            f"{run.enqueue_seconds:.1f} s",
            f"{run.done_at_ready:,}",
            f"{run.seconds:.2f} s",
            f"{run.rate:,.0f}",
        ]
        for name, run in results.drain.items()
    ]
    header = ["Worker (concurrency 2, prefork)", "jobs", "enqueue", "done at ready", "ready → all done", "jobs/s"]
    return "## 3. Worker drain\n\n" + table(header, rows)


def delay_section(results: Results) -> str:
    ours = results.delay.get("pocketqueue")
    rows = [
        [
            run.label,
            f"{run.jobs:,}",
            ", ".join(f"{rate:,.0f}" for rate in run.rates),
            f"{run.median:,.0f}",
            ratio(ours.median, run.median) if ours is not None and run is not ours else "",
            f"{statistics.median(run.redis_us):,.0f} us" if run.redis_us else "",
        ]
        for run in results.delay.values()
    ]
    header = ["From one Python thread (no worker)", "jobs per run", "jobs/s per run", "median jobs/s", "ours/theirs"]
    header.append("Redis CPU per job")
    return "## 1b. In-process dispatch (`.delay()`)\n\n" + table(header, rows)


def drain_async_section(results: Results) -> str:
    labels = {"async": "`async def` no-op (one event loop per pool process)", "sync": "`def` no-op"}
    rows = [
        [
            labels[kind],
            f"{runs[0].jobs:,}",
            ", ".join(f"{run.rate:,.0f}" for run in runs),
            f"{median_rate(runs):,.0f}",
        ]
        for kind, runs in results.drain_async.items()
    ]
    header = ["PocketQueue task (one worker, concurrency 2)", "jobs", "jobs/s per run", "median jobs/s"]
    return "## 3b. Worker drain, async tasks\n\n" + table(header, rows)


def drain_flow_section(results: Results) -> str:
    labels = {"flow": "5-node no-op flow job (`@flow_task`)", "sync": "`def` no-op"}
    rows = [
        [labels[kind], f"{runs[0].jobs:,}", ", ".join(f"{run.rate:,.0f}" for run in runs), f"{median_rate(runs):,.0f}"]
        for kind, runs in results.drain_flow.items()
    ]
    header = ["PocketQueue task (one worker, concurrency 2)", "jobs", "jobs/s per run", "median jobs/s"]
    return "## 3c. Worker drain, flow jobs\n\n" + table(header, rows)


def soak_section(results: Results) -> str:
    rows = []
    for run in results.soak.values():
        result = run.result
        done = f"{result.requests:,}"
        if run.capped:
            done += f" of {run.requested:,} (time cap)"
        rows.append(
            [
                run.target.label,
                done,
                f"{result.rate:,.0f}",
                *(mib(kib) for kib in quarter_rss(run)),
                mib(max(kib for _, _, kib in run.samples)),
                ms(result.max_latency),
                str(result.slower_than(STALL_SECONDS)),
                result.describe_errors(),
            ]
        )
    header = ["API", "dispatches", "req/s", "RSS start", "25%", "50%", "75%", "100%", "max RSS"]
    header += ["max latency", "stalls > 1 s", "errors"]
    return "## 4. Soak (no worker; RSS of the API process)\n\n" + table(header, rows)


def quarter_rss(run: SoakRun) -> list[int]:
    """RSS at the start, at the first sample past 25/50/75% of the requests done, and at the end."""
    total = run.result.requests
    marks = [
        next((kib for done, _, kib in run.samples if done >= total * quarter), run.samples[-1][2])
        for quarter in (0.25, 0.5, 0.75)
    ]
    return [run.samples[0][2], *marks, run.samples[-1][2]]


def method_section(options: Options) -> str:
    how = {
        "dispatch": f"- Dispatch: {options.clients} concurrent keep-alive clients in a closed loop from a lean asyncio "
        f"HTTP/1.1 client (bench/loadgen.py), {options.warmup:.0f} s warm-up then {options.duration:.0f} s "
        "measured, one API process (uvicorn, one worker process), no Celery worker running, so jobs queue up. "
        "The naive API is bench/naive_api.py: a FastAPI `def` endpoint calling `apply_async` on a plain "
        "Celery app (same Redis as broker and result backend, JSON). The client shares the 2 cores with "
        "the API and Redis; the CPU columns show each process's share of one core over the loaded time.",
        "latency": f"- Latency: {options.samples} sequential round trips after {options.latency_warmup} warm-up "
        "ones, one worker with concurrency 2. PocketQueue: POST /api/queue/dispatch then "
        "GET /api/queue/wait/{id}?timeout=10 on one connection; raw Celery: `delay().get()` from the "
        "benchmark process (pub/sub result backend), against a plain Celery worker.",
        "drain": f"- Drain: {options.drain_jobs:,} no-op jobs queued while no worker runs, then one worker "
        "(prefork, concurrency 2, late acks, prefetch 1, JSON) started; timed from Celery's `worker_ready` "
        "signal until every job is done (PocketQueue: all records in the completed index; Celery: queue "
        "and `unacked` empty). Jobs/s counts only jobs finished after ready.",
        "delay": f"- In-process dispatch: a child process with the settings in its environment calls, from one "
        f"thread, {options.delay_jobs:,} times per run: a `@task` no-op's `.delay()` (bench/bench_tasks.py, "
        "through the default Client), the plain Celery app's `task.delay()` (with its Redis result backend, "
        "which subscribes to each task's result channel, and with none) and RQ's `Queue.enqueue(func)`, all "
        f"on the run's Redis, no worker running; one warm-up run each, then {options.delay_runs} rounds, "
        "the systems interleaved within each round (bench/delay.py). The median run is reported; "
        "Redis CPU per job is what Redis's main thread used (INFO cpu: commands, scripts, network, AOF "
        "writes); one thread waits on each reply, so most of it is on the caller's clock.",
        "drain-async": f"- Async drain: as the drain, {options.drain_jobs:,} jobs of bench/bench_tasks.py's "
        "`async def` no-op, then of its `def` twin (TASK_MODULES=bench_tasks), alternating, "
        f"{options.drain_async_runs} run(s) each; the median run is reported.",
        "dispatch-key": f"- Dispatch with a key: as the dispatch, {options.dispatch_key_runs} alternating runs of the "
        "API with no keys and of the API with three keys configured and the write key sent with every request "
        "(`Authorization: Bearer`); the median of each is compared.",
        "drain-flow": f"- Flow drain: as the drain, {max(1, options.drain_jobs // 5):,} jobs of bench/bench_tasks.py's "
        "5-node no-op flow task, then of its `def` no-op, alternating; the overhead per stage is the extra "
        "drain time per job, times the worker's 2 processes, over 5 stages.",
        "soak": f"- Soak: the same closed loop until {options.soak:,} dispatches (naive: {options.naive_soak:,}, "
        f"capped at {options.naive_soak_seconds:.0f} s), VmRSS of the API process sampled every "
        f"{options.rss_interval:.0f} s; a stall is a request slower than {STALL_SECONDS:.0f} s. "
        "Latencies are per request, measured by the client.",
    }
    lines = [
        "## How this was measured",
        "",
        "- Everything ran on this machine over loopback, against a Redis started for this run "
        "(redis-server with PocketQueue's local settings: AOF on, fsync every second), flushed between runs.",
        *(how[phase] for phase in options.phases),
    ]
    return "\n".join(lines)
