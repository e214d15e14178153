"""The same dispatch load through `wrk` (a C load generator), when it is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class WrkResult:
    rate: float
    p50: float  # seconds
    p99: float
    errors: int


def available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, body: dict[str, Any], clients: int, seconds: float, threads: int, work_dir: Path) -> WrkResult:
    """POST `body` to `url` from `clients` connections for `seconds`; parse wrk's summary."""
    script = work_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    argv = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url]
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(completed.stdout)


def parse_wrk(output: str) -> WrkResult:
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if rate is None or p50 is None or p99 is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses:\s+(\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors is not None:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(
        rate=float(rate.group(1)),
        p50=float(p50.group(1)) * UNITS[p50.group(2)],
        p99=float(p99.group(1)) * UNITS[p99.group(2)],
        errors=errors,
    )
