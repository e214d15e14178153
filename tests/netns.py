"""Hosts in Linux network namespaces, joined by one switch, whose links a test can cut.

One `Network` per test, with names and addresses no other run uses:

    root namespace (the test)                    switch namespace "pq-<run>-switch"
      pq<run>t  10.231.N.1/25 ─────────────────── port "test"  ┐
    host "redis"  eth0 10.231.N.10/25 ─────────── port "redis" │
    host "api"    eth0 10.231.N.11/25 ─────────── port "api"   ├─ bridge br0
    host "w1"     eth0 10.231.N.12/25 ─────────── port "w1"    │
    host "w2"     eth0 10.231.N.13/25 ─────────── port "w2"    ┘
    host "api"    front 10.231.N.130/30 ── pq<run>f1 10.231.N.129/30 (root namespace)

Every host is a namespace of its own ("pq-<run>-<name>") with no default route: it can
reach its switch neighbours and nothing else. A host may also get a front link, a veth
pair straight to the root namespace, so the test can talk to it (an API) while its link
to the switch is cut. The 10.231.N.0/24 block is picked at random among those no route
of this machine touches.

Cutting a host sets its switch port down: the host's interface loses carrier, nothing
it sends arrives and nothing arrives for it, yet its sockets stay open, as when a cable
or a switch between two machines fails. Restoring brings the port up again; a TCP
connection that has not timed out meanwhile carries on.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET_PREFIX = "10.231"  # private (RFC 1918); only ever configured inside this module's veths
BRIDGE = "br0"


class NetnsUnavailable(Exception):
    """This machine (or this user) cannot create network namespaces and veth pairs."""


def ip_binary() -> str:
    found = shutil.which("ip")
    if found is None:
        raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
    return found


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raise with its stderr when it fails and `check` is set."""
    done = subprocess.run([ip_binary(), *args], capture_output=True, text=True, check=False, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _free_block() -> int:
    """A third octet N such that no address or route of the root namespace is in 10.231.N.0/24."""
    taken = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show", "table", "all").stdout
    for _ in range(50):
        octet = secrets.randbelow(256)
        if f"{SUBNET_PREFIX}.{octet}." not in taken:
            return octet
    raise RuntimeError(f"no free {SUBNET_PREFIX}.N.0/24 block on this machine")


@dataclass
class Host:
    """One network namespace on the switch: a machine of its own."""

    name: str
    namespace: str
    address: str  # on the switch
    front_address: str | None = None  # on its front link to the root namespace, if it has one


class HostProcess:
    """A child process running inside a host's namespace (in a session of its own), its output in a log file."""

    def __init__(self, host: Host, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.host = host
        self.log_path = log_path
        self._log = log_path.open("wb")
        # `ip netns exec` enters the namespace and execs argv: the child's pid is argv's.
        self.process = subprocess.Popen(
            [ip_binary(), "netns", "exec", host.namespace, *argv],
            env=dict(env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL the whole session if it has not exited within `grace` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        # Whatever is left of the session (a worker's pool processes) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()


@dataclass
class Network:
    """A switch namespace with a bridge, the test's port on it, and hosts added on demand."""

    run: str = field(default_factory=lambda: secrets.token_hex(3))
    block: int = -1
    hosts: dict[str, Host] = field(default_factory=dict)
    processes: list[HostProcess] = field(default_factory=list)
    _namespaces: list[str] = field(default_factory=list)
    _root_links: list[str] = field(default_factory=list)
    _fronts: int = 0

    @property
    def switch(self) -> str:
        return f"pq-{self.run}-switch"

    @property
    def test_address(self) -> str:
        """The test process's own address on the switch (in the root namespace)."""
        return self._address(1)

    def _address(self, last: int) -> str:
        return f"{SUBNET_PREFIX}.{self.block}.{last}"

    def create(self) -> None:
        """Build the switch and the test's port on it; NetnsUnavailable when this machine cannot."""
        ip_binary()  # NetnsUnavailable when there is none
        self._add_namespace(self.switch, unavailable_ok=True)
        self.block = _free_block()
        ip("-n", self.switch, "link", "add", BRIDGE, "type", "bridge")
        ip("-n", self.switch, "link", "set", BRIDGE, "up")
        root_end = f"pq{self.run}t"
        try:
            ip("link", "add", "name", root_end, "type", "veth", "peer", "name", "test", "netns", self.switch)
        except RuntimeError as exc:
            raise NetnsUnavailable(f"cannot create a veth pair: {exc}") from exc
        self._root_links.append(root_end)
        ip("-n", self.switch, "link", "set", "test", "master", BRIDGE, "up")
        ip("addr", "add", f"{self.test_address}/25", "dev", root_end)
        ip("link", "set", root_end, "up")

    def add_host(self, name: str, front: bool = False) -> Host:
        """A new namespace on the switch (and, with `front`, a direct link to the root namespace)."""
        namespace = f"pq-{self.run}-{name}"
        self._add_namespace(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")
        address = self._address(10 + len(self.hosts))
        ip(*f"link add name {name} netns {self.switch} type veth peer name eth0 netns {namespace}".split())
        ip("-n", self.switch, "link", "set", name, "master", BRIDGE, "up")
        ip("-n", namespace, "addr", "add", f"{address}/25", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        host = Host(name, namespace, address)
        if front:
            host.front_address = self._add_front_link(namespace)
        self.hosts[name] = host
        return host

    def _add_front_link(self, namespace: str) -> str:
        # A /30 per front link, in the upper half of the block: .128/30, .132/30, ...
        base = 128 + 4 * self._fronts
        self._fronts += 1
        root_end = f"pq{self.run}f{self._fronts}"
        ip("link", "add", "name", root_end, "type", "veth", "peer", "name", "front", "netns", namespace)
        self._root_links.append(root_end)
        ip("addr", "add", f"{self._address(base + 1)}/30", "dev", root_end)
        ip("link", "set", root_end, "up")
        ip("-n", namespace, "addr", "add", f"{self._address(base + 2)}/30", "dev", "front")
        ip("-n", namespace, "link", "set", "front", "up")
        return self._address(base + 2)

    def cut(self, host: Host) -> None:
        """Pull the host's cable out of the switch: it can reach no other host, and none can reach it."""
        ip("-n", self.switch, "link", "set", host.name, "down")

    def restore(self, host: Host) -> None:
        """Plug the host's cable back in."""
        ip("-n", self.switch, "link", "set", host.name, "up")

    def start(self, host: Host, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> HostProcess:
        """Run `argv` on `host`; the network stops it when it is torn down."""
        process = HostProcess(host, argv, env, log_path)
        self.processes.append(process)
        return process

    def _add_namespace(self, namespace: str, unavailable_ok: bool = False) -> None:
        done = ip("netns", "add", namespace, check=False)
        if done.returncode != 0:
            if unavailable_ok:
                raise NetnsUnavailable(f"`ip netns add` is not permitted here: {done.stderr.strip()}")
            raise RuntimeError(f"ip netns add {namespace} failed: {done.stderr.strip()}")
        self._namespaces.append(namespace)

    def destroy(self) -> list[str]:
        """Stop every process, then delete every namespace and link; returns what could not be removed."""
        problems = []
        for process in reversed(self.processes):
            try:
                process.stop()
            except Exception as exc:  # keep tearing down; report it
                problems.append(f"process {process.pid} on {process.host.name}: {exc}")
        for namespace in reversed(self._namespaces):
            # Deleting a namespace deletes its veths, and with them their peers elsewhere.
            done = ip("netns", "del", namespace, check=False)
            if done.returncode != 0:
                problems.append(f"namespace {namespace}: {done.stderr.strip()}")
        for link in self._root_links:
            if ip("link", "show", link, check=False).returncode == 0:
                deleted = ip("link", "del", link, check=False)
                if deleted.returncode != 0:
                    problems.append(f"link {link}: {deleted.stderr.strip()}")
        return problems


def leftovers(run: str) -> list[str]:
    """Namespaces and root links of run `run` that still exist."""
    namespaces = [line.split()[0] for line in ip("netns", "list").stdout.splitlines() if line.strip()]
    links = ip("-o", "link", "show").stdout
    found = [ns for ns in namespaces if ns.startswith(f"pq-{run}-")]
    found += [word.split("@")[0] for word in links.split() if word.startswith(f"pq{run}")]
    return found
