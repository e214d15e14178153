"""The dashboard's server side, over HTTP: its page and assets, the login that sets an
HttpOnly SameSite session cookie, roles through that cookie, the CSRF header on changes,
logout, and the hour of outcomes its chart draws (the browser tests are test_browser.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from conftest import api_client, make_settings
from pocketqueue.config import Settings
from pocketqueue.keyring import digest
from test_api import assert_problem

READ, WRITE = "dash-read-key-0123456789abcd", "dash-write-key-0123456789abcd"
KEYS = f"viewer:read:{READ},web:write:{WRITE}"
CSRF = {"X-PocketQueue-CSRF": "1"}


@pytest.fixture
def keyed(redis_url: str, session_id: str) -> Settings:
    return make_settings(redis_url, session_id, queue_api_keys=KEYS)


@pytest.fixture
async def browser_like(keyed: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(keyed) as client:
        yield client


async def log_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    return await client.post(
        "/dashboard/login", content=f"key={key}", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )


async def test_the_page_and_its_assets_are_served_from_the_package(client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/dashboard/static/app.js" in page.text
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page.text)  # nothing fetched from elsewhere
    script = await client.get("/dashboard/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert (await client.get("/dashboard/static/style.css")).status_code == 200
    assert (await client.get("/dashboard/login")).status_code == 200


async def test_without_keys_the_session_is_open_with_every_role(client: httpx.AsyncClient) -> None:
    session = await client.get("/dashboard/session")
    assert session.json() == {"name": "anonymous", "role": "admin", "auth": "open"}


async def test_a_wrong_key_gets_no_session(browser_like: httpx.AsyncClient) -> None:
    assert_problem(await browser_like.get("/dashboard/session"), 401, "unauthorized")
    refused = await log_in(browser_like, "not-a-key-this-api-knows")
    assert refused.status_code == 303
    assert refused.headers["location"] == "/dashboard/login?error=1"
    assert "set-cookie" not in refused.headers


async def test_a_login_sets_an_httponly_samesite_cookie_that_carries_the_keys_role(
    browser_like: httpx.AsyncClient, keyed: Settings, sync_redis: redis.Redis
) -> None:
    answer = await log_in(browser_like, READ)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("pq_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    # Redis holds the token's digest, never the token (nor the key).
    stored = list(sync_redis.scan_iter(f"{keyed.queue_key_prefix}:session:*"))
    assert f"{keyed.queue_key_prefix}:session:{digest(token).hex()}" in stored
    assert all(token not in name for name in stored)
    session = (await browser_like.get("/dashboard/session")).json()
    assert session == {"name": "viewer", "role": "read", "auth": "key"}
    assert (await browser_like.get("/api/queue/stats", params={"history_minutes": 60})).status_code == 200
    # A read session may look, not act: the server refuses whatever the page shows.
    forged = await browser_like.delete("/api/queue/cancel/any-job", headers=CSRF)
    assert_problem(forged, 403, "forbidden")


async def test_a_change_through_the_cookie_needs_the_csrf_header(browser_like: httpx.AsyncClient) -> None:
    await log_in(browser_like, WRITE)
    later = {"task": "pocketqueue.debug", "delay_seconds": 600}
    job = (await browser_like.post("/api/queue/dispatch", json=later, headers=CSRF)).json()
    forged = await browser_like.delete(f"/api/queue/cancel/{job['job_id']}")  # what a cross-site form would send
    body = assert_problem(forged, 403, "cross-site-request")
    assert "X-PocketQueue-CSRF" in body["detail"]
    assert (await browser_like.get(f"/api/queue/status/{job['job_id']}")).json()["status"] == "scheduled"
    cancelled = await browser_like.delete(f"/api/queue/cancel/{job['job_id']}", headers=CSRF)
    assert cancelled.json()["status"] == "cancelled"
    # A key header needs no CSRF header (no browser sends one by itself), and it wins over the cookie.
    keyed = await browser_like.post("/api/queue/dispatch", json=later, headers={"Authorization": f"Bearer {WRITE}"})
    assert keyed.status_code == 202


async def test_logout_ends_the_session(browser_like: httpx.AsyncClient) -> None:
    await log_in(browser_like, READ)
    assert (await browser_like.get("/dashboard/session")).status_code == 200
    answer = await browser_like.post("/dashboard/logout")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/login"
    assert_problem(await browser_like.get("/dashboard/session"), 401, "unauthorized")


async def test_stats_history_gives_the_last_hour_minute_by_minute(client: httpx.AsyncClient) -> None:
    stats = (await client.get("/api/queue/stats", params={"history_minutes": 60})).json()
    history = stats["history"]
    assert len(history) == 60
    minutes = [entry["minute"] for entry in history]
    assert minutes == sorted(minutes)
    assert set(history[-1]["counts"]) == {"completed", "partial", "failed", "cancelled"}
    assert (await client.get("/api/queue/stats")).json()["history"] == []
    assert (await client.get("/api/queue/stats", params={"history_minutes": 61})).status_code == 422
