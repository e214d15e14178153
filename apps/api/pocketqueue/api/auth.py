"""Who is calling, and may they: the role every route requires.

Each route declares its role with one of the dependencies below (`ReadAccess`,
`WriteAccess`, `AdminAccess`), or takes the caller as a parameter (`WriteCaller`...) when
it needs the name (`dispatched_by`, the audit trail, rate limits). A test walks every
route of the app and fails on one that declares none.

The key is sent as `Authorization: Bearer <key>` or `X-API-Key: <key>`, read straight
from the headers: FastAPI's security classes would add two sub-dependencies to every
request, which cost a tenth of the dispatch throughput (bench phase `dispatch-key`). The
OpenAPI document declares both schemes all the same (`SECURITY_SCHEMES`, added by
api/openapi.py), so `/docs` offers an "Authorize" button. With no keys configured every
caller is `anonymous` with every role (the API refuses to start that way off loopback:
`Settings.exposure_problem`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts

from pocketqueue.api import sessions
from pocketqueue.errors import CrossSiteRefused, Forbidden, Unauthorized
from pocketqueue.keyring import ANONYMOUS, ApiKey, Keyring, Role

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The same key, as `X-API-Key`"},
}


@dataclass(frozen=True)
class Caller:
    """Who made the request: a configured key (`key`), or anonymous when none are configured."""

    name: str
    role: Role
    key: ApiKey | None = None

    @property
    def key_name(self) -> str | None:
        """The key's name, or None for an anonymous caller: what a job's `dispatched_by` records."""
        return self.key.name if self.key else None


def requires(role: Role) -> Callable[..., Awaitable[Caller]]:
    """A dependency that answers 401 (no or unknown key) or 403 (too low a role), else the caller."""

    async def caller(request: Request) -> Caller:
        keyring = request.app.state.settings.keyring
        if not keyring:
            return ANONYMOUS_CALLER
        presented = _presented(request)
        if presented:
            key = keyring.identify(presented)
            if key is None:
                raise Unauthorized("The API key sent is not one this API knows.")  # never echo what was sent
        else:
            key = await _session(request, keyring)
        if key.role < role:
            raise Forbidden(key.name, key.role.label, role.label)
        return Caller(key.name, key.role, key)

    caller.__name__ = f"requires_{role.label}"
    _REQUIRES[caller] = role
    return caller


ANONYMOUS_CALLER = Caller(ANONYMOUS, Role.ADMIN)


async def _session(request: Request, keyring: Keyring) -> ApiKey:
    """The key behind the dashboard's session cookie (api/sessions.py), CSRF-checked; else 401."""
    token = request.cookies.get(sessions.COOKIE)
    runtime = request.app.state.runtime
    key = await sessions.session_key(runtime.redis, runtime.store.keys, keyring, token) if token else None
    if key is None:
        raise Unauthorized("This API needs a key: send `Authorization: Bearer <key>` (or `X-API-Key: <key>`).")
    if request.method not in sessions.SAFE_METHODS and request.headers.get(sessions.CSRF_HEADER) != "1":
        raise CrossSiteRefused()
    return key


def _presented(request: Request) -> str | None:
    """The key the request carries: `Authorization: Bearer <key>`, else `X-API-Key`."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return request.headers.get("x-api-key") or None


_REQUIRES: dict[Callable[..., Awaitable[Caller]], Role] = {}


def app_routes(app: FastAPI) -> Iterator[tuple[str, APIRoute]]:
    """Every API route of `app` with its full path (FastAPI keeps included routers nested)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path is not None:
            yield context.path, route


def required_role(route: APIRoute) -> Role | None:
    """The role a route's dependencies require (None: it declares none, which a test refuses)."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        if dependant.call in _REQUIRES:
            return _REQUIRES[dependant.call]
        pending.extend(dependant.dependencies)
    return None


# As a route's `dependencies=[...]`, when the route does not need to know who called.
ReadAccess = Depends(requires(Role.READ))
WriteAccess = Depends(requires(Role.WRITE))
AdminAccess = Depends(requires(Role.ADMIN))

# As a parameter, when it does.
ReadCaller = Annotated[Caller, ReadAccess]
WriteCaller = Annotated[Caller, WriteAccess]
AdminCaller = Annotated[Caller, AdminAccess]
