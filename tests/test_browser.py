"""The dashboard in a real Chromium (Debian's, driven by Playwright), against a real API
process, a real worker and Redis: it loads without console errors, a job dispatched over
the API appears without a reload and its progress bar moves, cancel and retry work from
the page, "retry all matching" re-drives exactly the filtered set, and a read-only key
sees no actions and has a forged one refused.

Each page is also saved as a screenshot: to SCREENSHOTS_DIR when set (`make screenshots`
writes docs/screenshots/, the README's pictures), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ApiProcess, WorkerProcess, make_settings, wait_until
from pocketqueue.config import Settings

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (make install)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: `make tools` installs Debian's package (as root)"
)

ADMIN, READER = "browser-admin-key-0123456789", "browser-read-key-0123456789"
KEYS = f"ops:admin:{ADMIN},viewer:read:{READER}"


class Dashboard:
    """The API (with keys) and a worker on a queue of their own, and a Chromium to drive them."""

    def __init__(self, api: ApiProcess, browser: Any, shots: Path) -> None:
        self.api = api
        self.browser = browser
        self.shots = shots
        self.http = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=20)

    def page(self, key: str) -> tuple[Any, list[str]]:
        """A logged-in page, and the console errors it logs (a test asserts there are none)."""
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{self.api.url}/dashboard/login")
        page.fill("input[name=key]", key)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_url(f"{self.api.url}/dashboard*")
        return page, errors

    def dispatch(self, task: str, **body: Any) -> str:
        answer = self.http.post("/api/queue/dispatch", json={"task": task, **body})
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["job_id"]
        return job_id

    def job(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.http.get(f"/api/queue/status/{job_id}").json()
        return found

    def shot(self, page: Any, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def dashboard(
    redis_url: str,
    session_id: str,
    browser: Any,
    start_worker: Callable[[Settings], WorkerProcess],
    start_api: Callable[..., ApiProcess],
    tmp_path: Path,
) -> Iterator[Dashboard]:
    settings = make_settings(redis_url, f"{session_id}-browser-{os.urandom(3).hex()}")
    start_worker(settings)
    api = start_api(settings, QUEUE_API_KEYS=KEYS)
    shots = Path(os.environ.get("SCREENSHOTS_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    board = Dashboard(api, browser, shots)
    yield board
    board.http.close()


def test_the_overview_loads_with_no_console_errors_and_shows_the_queue(dashboard: Dashboard) -> None:
    dashboard.dispatch("tests.add", args=[1, 2])
    page, errors = dashboard.page(ADMIN)
    page.wait_for_selector("[data-testid=count-completed] .count")
    wait_until(lambda: page.inner_text("[data-testid=count-completed] .count").strip() not in ("", "0"), timeout=15)
    assert page.locator("#throughput-chart").count() == 1
    wait_until(lambda: page.inner_text("[data-testid=workers-online] .count").strip() == "1", timeout=15)
    dashboard.shot(page, "overview")
    assert errors == []
    page.context.close()


def test_a_dispatched_job_appears_without_reload_and_its_progress_bar_advances(dashboard: Dashboard) -> None:
    page, errors = dashboard.page(ADMIN)
    page.goto(f"{dashboard.api.url}/dashboard#/jobs")
    page.wait_for_selector("main#view")
    page.evaluate("window.__same_page = true")  # gone if the page reloads
    job_id = dashboard.dispatch("pocketqueue.debug", kwargs={"sleep": 4, "steps": 8})
    row = f"tr[data-job-id='{job_id}']"
    page.wait_for_selector(row, timeout=15_000)
    bar = f"{row} progress[data-testid=progress]"

    def progressed() -> bool:
        return float(page.get_attribute(bar, "value") or 0) > 0

    wait_until(progressed, timeout=20)
    dashboard.shot(page, "jobs")
    page.goto(f"{dashboard.api.url}/dashboard#/jobs/{job_id}")
    wait_until(lambda: page.inner_text("[data-testid=job-status]").strip() == "completed", timeout=20)
    assert page.get_attribute("progress[data-testid=job-progress]", "value") in ("100", "100.0")
    dashboard.shot(page, "job")
    assert page.evaluate("window.__same_page") is True
    assert errors == []
    page.context.close()


def test_cancel_and_retry_work_from_the_page(dashboard: Dashboard) -> None:
    page, errors = dashboard.page(ADMIN)
    running = dashboard.dispatch("pocketqueue.debug", kwargs={"sleep": 60})
    wait_until(lambda: dashboard.job(running)["status"] == "processing", timeout=20)
    page.goto(f"{dashboard.api.url}/dashboard#/jobs/{running}")
    page.click("button[data-action=cancel]")
    wait_until(lambda: dashboard.job(running)["status"] == "cancelled", timeout=20)
    wait_until(lambda: page.inner_text("[data-testid=job-status]").strip() == "cancelled", timeout=20)

    failed = dashboard.dispatch("tests.fail", args=["once more"])
    wait_until(lambda: dashboard.job(failed)["status"] == "failed", timeout=20)
    page.goto(f"{dashboard.api.url}/dashboard#/jobs/{failed}")
    page.click("button[data-action=retry]")
    # The page says what happened once the API has answered (before that, the job is the
    # same failed job it was, so its record cannot tell).
    wait_until(lambda: "Re-driven" in page.inner_text("[data-testid=action-outcome]"), timeout=20)
    # Re-driven: same id, attempts reset, and it runs (and fails) again.
    wait_until(lambda: dashboard.job(failed)["attempts"] == 1 and dashboard.job(failed)["status"] == "failed", 20)
    audit = dashboard.http.get("/api/queue/audit").json()["entries"]
    assert [(entry["action"], entry["job_ids"]) for entry in audit[:2]] == [
        ("retry_job", [failed]),
        ("cancel_job", [running]),
    ]
    assert errors == []
    page.context.close()


def test_retry_all_matching_re_drives_exactly_the_filtered_set(dashboard: Dashboard) -> None:
    matching = [dashboard.dispatch("tests.fail", args=[f"boom {n}"]) for n in range(3)]
    others = [dashboard.dispatch("tests.permanent") for _ in range(2)]
    wait_until(lambda: all(dashboard.job(job)["status"] == "failed" for job in matching + others), timeout=30)
    page, errors = dashboard.page(ADMIN)
    page.goto(f"{dashboard.api.url}/dashboard#/dead-letters")
    page.wait_for_function("document.querySelector('[data-testid=dl-summary]')?.textContent.includes('5 failed jobs')")
    page.fill("#dl-task", "tests.fail")
    wait_until(lambda: "3 match the filter" in page.inner_text("[data-testid=dl-summary]"), timeout=10)
    page.click("[data-action=retry-matching]")
    dialog = page.locator("dialog[open]")
    assert "3" in dialog.inner_text()
    dashboard.shot(page, "dead-letters")
    dialog.locator("[data-action=confirm]").click()
    page.wait_for_selector("[data-testid=retry-outcome]")
    assert "3" in page.inner_text("[data-testid=retry-outcome]")
    entry = dashboard.http.get("/api/queue/audit").json()["entries"][0]
    assert entry["action"] == "retry_dead_letters"
    assert sorted(entry["job_ids"]) == sorted(matching)
    for job in others:  # left alone: still failed, never run again
        assert (dashboard.job(job)["status"], dashboard.job(job)["attempts"]) == ("failed", 1)
    assert errors == []
    page.context.close()


def test_a_read_only_key_sees_no_actions_and_a_forged_one_is_refused(dashboard: Dashboard) -> None:
    running = dashboard.dispatch("pocketqueue.debug", kwargs={"sleep": 60})
    failed = dashboard.dispatch("tests.fail", args=["for the reader"])
    wait_until(lambda: dashboard.job(failed)["status"] == "failed", timeout=20)
    page, errors = dashboard.page(READER)
    for job_id in (running, failed):
        page.goto(f"{dashboard.api.url}/dashboard#/jobs/{job_id}")
        page.wait_for_selector("[data-testid=job-status]")
        assert page.locator("[data-action]").count() == 0
    page.goto(f"{dashboard.api.url}/dashboard#/dead-letters")
    page.wait_for_selector("main#view")
    assert page.locator("[data-action]").count() == 0
    # The page hides the buttons; the server refuses the action anyway.
    status = page.evaluate(
        """async (id) => (await fetch(`/api/queue/cancel/${id}`,
               {method: "DELETE", headers: {"X-PocketQueue-CSRF": "1"}})).status""",
        running,
    )
    assert status == 403
    assert dashboard.job(running)["status"] in ("queued", "processing")
    page.goto(f"{dashboard.api.url}/dashboard#/workers")
    page.wait_for_selector("main#view")
    dashboard.shot(page, "workers")
    assert [error for error in errors if "403" not in error] == []
    page.context.close()
    dashboard.http.delete(f"/api/queue/cancel/{running}")


def test_the_pages_fit_a_phone_and_the_keyboard_reaches_them(dashboard: Dashboard) -> None:
    job_id = dashboard.dispatch("tests.add", args=[2, 3])
    page, errors = dashboard.page(ADMIN)
    page.set_viewport_size({"width": 390, "height": 844})
    for route in ("#/", "#/jobs", f"#/jobs/{job_id}", "#/dead-letters", "#/workers", "#/schedules"):
        page.goto(f"{dashboard.api.url}/dashboard{route}")
        page.wait_for_function("!document.querySelector('main#view').textContent.includes('Loading')")
        # Wide tables scroll inside their own box; the page itself never scrolls sideways.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, (route, width)
    # Tab walks every link of the navigation (from wherever the page put the focus).
    page.goto(f"{dashboard.api.url}/dashboard#/")
    page.wait_for_selector("[data-testid=count-completed] .count")
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement.dataset.nav || document.activeElement.id || ''"))
    assert {"overview", "jobs", "dead-letters", "workers", "schedules", "batches"} <= reached, reached
    assert errors == []
    page.context.close()
