"""The web dashboard: its page, its assets, and the login that gives a browser a session.

The page and its scripts (dashboard/static/, all written here, no third-party code) hold
no data: everything shown comes from the same /api/queue routes, under the same roles,
through the session cookie (api/sessions.py). So these routes are open, and out of the
OpenAPI document.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel

from pocketqueue.api import sessions
from pocketqueue.api.auth import ReadCaller
from pocketqueue.api.deps import RuntimeDep

STATIC = Path(__file__).resolve().parents[2] / "dashboard" / "static"
MAX_LOGIN_BODY = 4096

router = APIRouter(prefix="/dashboard", include_in_schema=False)


class SessionPublic(BaseModel):
    name: str
    role: str
    auth: str  # "open": no keys configured; "key": a session (or a key header)


def _page(name: str) -> FileResponse:
    # no-store: a page that changed with a deploy is never served stale next to new scripts.
    return FileResponse(STATIC / name, media_type="text/html", headers={"Cache-Control": "no-store"})


@router.get("")
async def dashboard() -> FileResponse:
    return _page("index.html")


@router.get("/login")
async def login_page() -> FileResponse:
    return _page("login.html")


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    """Check the key from the form; on success set the session cookie and go to the dashboard."""
    keyring = runtime.settings.keyring
    if not keyring:
        return RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER)
    body = await request.body()
    form = parse_qs(body[:MAX_LOGIN_BODY].decode(errors="replace"))
    key = keyring.identify(form.get("key", [""])[0].strip())
    if key is None:
        return RedirectResponse("/dashboard/login?error=1", status.HTTP_303_SEE_OTHER)
    token = await sessions.open_session(runtime.redis, runtime.store.keys, key)
    response = RedirectResponse("/dashboard", status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        sessions.COOKIE,
        token,
        max_age=sessions.SESSION_SECONDS,
        path="/",
        httponly=True,  # no script on the page can read it
        samesite="strict",  # no other site's page can make the browser send it
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, runtime: RuntimeDep) -> Response:
    token = request.cookies.get(sessions.COOKIE, "")
    await sessions.close_session(runtime.redis, runtime.store.keys, token)
    response = RedirectResponse("/dashboard/login", status.HTTP_303_SEE_OTHER)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@router.get("/session")
async def session(caller: ReadCaller, runtime: RuntimeDep) -> SessionPublic:
    """Who the browser is: the page shows only the actions this role may take."""
    auth = "key" if runtime.settings.keyring else "open"
    return SessionPublic(name=caller.name, role=caller.role.label, auth=auth)
