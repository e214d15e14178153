"""API keys and their roles: parsed from the settings, checked in constant time.

A key is `name:role:secret`. The secret may be written as `sha256:<64 hex digits>`, its
digest, so a settings file need not hold the secret itself (`python -m pocketqueue key
new NAME ROLE` prints both forms). Every secret is kept only as its digest: a presented
key is hashed and compared with each known digest by `hmac.compare_digest`, so neither
the comparison nor which key matched shows in the time an answer takes.

Roles nest: `read` < `write` < `admin`; a key may do what its role and every lower one may.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from enum import IntEnum

from pocketqueue.errors import ConfigurationError


class Role(IntEnum):
    """What a key may do; a higher role includes every lower one."""

    READ = 1  # every GET, the event streams, /metrics
    WRITE = 2  # + dispatch, batches, cancel, batch-status
    ADMIN = 3  # + re-drive, dead-letter operations, schedules, test routes, the audit trail

    @property
    def label(self) -> str:
        return self.name.lower()


NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ANONYMOUS = "anonymous"  # the caller's name when no keys are configured; no key may take it
# URL-safe characters (what `secrets.token_urlsafe` makes), no ':' (the field separator);
# 16 is the shortest accepted: a guessable key is no key.
SECRET = re.compile(r"[A-Za-z0-9_.~+/=-]{16,256}")
DIGEST = re.compile(r"sha256:([0-9a-f]{64})")


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class ApiKey:
    name: str  # what logs, `dispatched_by` and the audit trail show; never the secret
    role: Role
    secret_digest: bytes = field(repr=False)


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `tokens` jobs per `seconds`, a burst of up to `tokens` at once."""

    tokens: int
    seconds: int

    @property
    def per_second(self) -> float:
        return self.tokens / self.seconds


PERIODS = {"s": 1, "m": 60, "h": 3600}
RATE = re.compile(r"(\d{1,9})/(s|m|h)")


def parse_rate(setting: str, text: str) -> RateLimit:
    """`200/s`, `600/m` or `10000/h`; a positive count per period."""
    found = RATE.fullmatch(text.strip())
    if not found or int(found.group(1)) < 1:
        raise ConfigurationError(f"{setting}: a rate is a positive count per s, m or h, e.g. 200/s; got {text!r}")
    return RateLimit(int(found.group(1)), PERIODS[found.group(2)])


def parse_key(line: str, where: str) -> ApiKey:
    """One `name:role:secret` entry; errors name the entry by its name, never its secret."""
    parts = line.strip().split(":", 2)
    if len(parts) != 3:
        raise ConfigurationError(f"{where}: each key is name:role:secret (the secret itself is not shown here)")
    name, role_text, secret = parts
    if not NAME.fullmatch(name) or name == ANONYMOUS:
        raise ConfigurationError(
            f"{where}: a key's name is 1-64 of A-Z a-z 0-9 _ . -, not {ANONYMOUS!r} (got {name!r})"
        )
    try:
        role = Role[role_text.upper()]
    except KeyError:
        raise ConfigurationError(
            f"{where}: key {name!r} has role {role_text!r}; roles are read, write, admin"
        ) from None
    stored = DIGEST.fullmatch(secret)
    if stored:
        return ApiKey(name, role, bytes.fromhex(stored.group(1)))
    if not SECRET.fullmatch(secret):
        raise ConfigurationError(
            f"{where}: key {name!r}: a secret is 16-256 URL-safe characters (no ':'), or sha256:<64 hex digits>"
        )
    return ApiKey(name, role, digest(secret))


def parse_keys(entries: list[str], where: str) -> tuple[ApiKey, ...]:
    keys = tuple(parse_key(entry, where) for entry in entries if entry.strip())
    names = [key.name for key in keys]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigurationError(f"{where}: key names must be unique; repeated: {', '.join(repeated)}")
    digests = [key.secret_digest for key in keys]
    if len(set(digests)) != len(digests):
        raise ConfigurationError(f"{where}: two keys share a secret; each key needs its own")
    return keys


def read_key_lines(text: str) -> list[str]:
    """A keys file: one `name:role:secret` a line; blank lines and `#` comments skipped."""
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class Keyring:
    """The configured keys; `identify` finds the one a request presented."""

    def __init__(self, keys: tuple[ApiKey, ...]) -> None:
        self.keys = keys

    def __bool__(self) -> bool:
        return bool(self.keys)

    def named(self, name: str) -> ApiKey | None:
        """The key called `name` (a session remembers the name, never the secret)."""
        return next((key for key in self.keys if key.name == name), None)

    def identify(self, presented: str) -> ApiKey | None:
        candidate = digest(presented)
        found = None
        for key in self.keys:  # every digest is compared, whichever matches
            if hmac.compare_digest(candidate, key.secret_digest):
                found = key
        return found


def new_key(name: str, role: str) -> tuple[str, str]:
    """A fresh key: (the secret to give the caller, the entry to configure, holding only its digest)."""
    secret = secrets.token_urlsafe(32)
    entry = f"{name}:{role}:sha256:{digest(secret).hex()}"
    parse_key(entry, "key new")  # the same checks as the settings apply
    return secret, entry
