"""Dashboard sessions: a browser logs in once with a key and then carries a cookie.

A browser's EventSource cannot send an `Authorization` header, and a key kept in page
script would be readable by any script on the page. So `POST /dashboard/login` checks the
key and sets an HttpOnly, SameSite=Strict cookie holding a random session token; Redis
keeps only the token's SHA-256, mapped to the key's name, for SESSION_SECONDS. The role is
looked up in the configured keys on every request, so removing a key from the settings
ends its sessions at the next restart.

Requests authenticated by the cookie that change something must also carry the header
`X-PocketQueue-CSRF: 1`: a cross-site form cannot set a header, and a cross-site script
cannot send one without a CORS preflight this API does not grant. SameSite=Strict already
keeps the cookie off cross-site requests; the header is the second lock.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from pocketqueue.jobs.keys import Keys
from pocketqueue.keyring import ApiKey, Keyring, digest

COOKIE = "pq_session"
CSRF_HEADER = "x-pocketqueue-csrf"
SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _key(keys: Keys, token: str) -> str:
    return keys.session(digest(token).hex())


async def open_session(redis: Redis, keys: Keys, key: ApiKey) -> str:
    """A new session for `key`: the token to set as the cookie (Redis keeps its digest)."""
    token = secrets.token_urlsafe(32)
    await redis.set(_key(keys, token), key.name, ex=SESSION_SECONDS)
    return token


async def session_key(redis: Redis, keys: Keys, keyring: Keyring, token: str) -> ApiKey | None:
    """The configured key a session token stands for, or None (unknown, expired, or the key is gone)."""
    if not token or len(token) > 256:
        return None
    name = await redis.get(_key(keys, token))
    return keyring.named(str(name)) if name else None


async def close_session(redis: Redis, keys: Keys, token: str) -> None:
    if token and len(token) <= 256:
        await redis.delete(_key(keys, token))
