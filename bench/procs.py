"""The processes a benchmark run starts: each in its own session, each stopped by its id."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pocketqueue.embedded import LocalRedis

STOP_GRACE_SECONDS = 15.0
POLL_SECONDS = 0.05


class ServiceError(RuntimeError):
    """A service did not start, or died while it was needed."""


class Service:
    """A child process (and its children, e.g. Celery's pool) with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServiceError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> Service:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which then stops us in order
        )
        return self

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise ServiceError(f"{self.name} exited early; its log:\n{self.log_tail()}")

    def wait_http(self, port: int, path: str, timeout: float = 30.0) -> None:
        """Block until GET `path` answers 200 (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        while not http_ok("127.0.0.1", port, path):
            self.check_alive()
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.name} did not answer on port {port} within {timeout:.0f} s")
            time.sleep(POLL_SECONDS)

    def wait_file(self, path: Path, timeout: float = 60.0) -> float:
        """Block until `path` exists; returns time.perf_counter() when it was seen."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise ServiceError(f"{self.name} was not ready within {timeout:.0f} s")
            time.sleep(0.005)
        return time.perf_counter()

    def stop(self) -> None:
        """SIGTERM the process (a graceful stop), then SIGKILL whatever is left of its group."""
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            # The group id is our child's pid: this reaches only what it started (e.g. pool workers).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def http_ok(host: str, port: int, path: str) -> bool:
    """One GET over a fresh socket; True on a 200 (used only for readiness checks)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def code_version(repo: Path) -> str:
    """The last commit that changed the package, plus a digest of any uncommitted change to it."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        return run.stdout.strip() if run.returncode == 0 else ""

    paths = ["--", "apps", "pyproject.toml", "requirements.txt"]
    head = git("log", "-1", "--format=%h", *paths) or "unknown"
    diff = git("diff", "HEAD", *paths)
    return f"{head}+dirty.{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else head


def rss_kib(pid: int) -> int:
    """The resident set size of `pid` in KiB (VmRSS from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ServiceError(f"no VmRSS for pid {pid}")


def machine_summary() -> dict[str, str]:
    """CPU model, core count, Python, OS: the first line of the report."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        total_kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f"{total_kib / 1024**2:.0f} GiB"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time `pid` has used so far (from /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot, summed over cores (/proc/stat)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_tree_seconds() -> float:
    """CPU time of this process plus every child it has waited for (and theirs, transitively)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@dataclass
class Scratch:
    """A scenario's scratch directory, its logs folder and its own Redis, already running."""

    work_dir: Path
    logs: Path
    redis: LocalRedis
    url: str


def scratch(stack: ExitStack, name: str, keep: bool) -> Scratch:
    """A scratch directory (removed on exit unless `keep`) with a Redis of its own in it.

    The Redis is stopped on exit after everything registered on `stack` later (workers,
    samplers), since an ExitStack unwinds last-in, first-out.
    """
    work_dir = Path(tempfile.mkdtemp(prefix=f"pocketqueue-{name}-"))
    if not keep:
        stack.callback(shutil.rmtree, work_dir, ignore_errors=True)
    logs = work_dir / "logs"
    logs.mkdir()
    server = LocalRedis(work_dir, write_port_file=False)
    stack.callback(server.stop)
    url = server.start()
    return Scratch(work_dir, logs, server, url)


def write_report(kind: str, text: str, failures: list[str]) -> int:
    """Print the report with its verdict, keep it as bench/results/<kind>-<time>.md; the exit code."""
    from datetime import datetime

    text += "\n\nverdict: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)) + "\n"
    print(text, flush=True)
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    out_file = out_dir / f"{kind}-{datetime.now():%Y%m%d-%H%M%S}.md"
    out_file.write_text(text)
    print(f"[{datetime.now():%H:%M:%S}] report written to {out_file}", flush=True)
    return 1 if failures else 0
