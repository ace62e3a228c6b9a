"""The job manager's dashboard in a real headless browser: Debian's chromium driven by selenium
through chromedriver (``scripts/install-test-deps.sh`` installs both), against a job manager
running a real job (``start_jm``).

The browser only ever reads what the page shows: every wait polls the DOM (WebDriverWait) for a
condition; the bounds are hang guards, not speed assertions. The test also takes the dashboard's
screenshot: into its temporary directory, or with ``EVENTAPP_DOCS_SCREENSHOT=1`` to
``docs/images/dashboard.png`` (how the one in the docs is made; a test run never changes the tree).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_SCRIPT = ROOT / "scripts" / "install-test-deps.sh"
SCREENSHOT = ROOT / "docs" / "images" / "dashboard.png"
ENDLESS = "tests.daemon.jm_jobs:build_endless"
TOKEN = "dashboard-s3cret"
#: Only stops a hung test (a loaded 2-core machine is slow, never this slow).
HANG_GUARD_S = 180.0


def _missing() -> list[str]:
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]


def _ensure_browser() -> None:
    """Install chromium and chromium-driver with the test-deps script if they are missing; skip the
    test (saying why) only when that cannot be done here."""
    if not _missing():
        return
    if shutil.which("bash") is None or not INSTALL_SCRIPT.is_file():
        pytest.skip(f"{', '.join(_missing())} missing and {INSTALL_SCRIPT} cannot run here")
    try:
        run = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        log = run.stderr[-2000:]
    except subprocess.TimeoutExpired:
        log = "the install script timed out"
    if _missing():
        pytest.skip(
            f"{', '.join(_missing())} missing and could not be installed with {INSTALL_SCRIPT} "
            f"(Debian packages chromium and chromium-driver): {log}"
        )


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _ensure_browser()

    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(HANG_GUARD_S)
    driver.set_script_timeout(HANG_GUARD_S)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The dashboard as the browser shows it."""

    def __init__(self, driver: Any, jm: Any) -> None:
        self.driver = driver
        self.jm = jm

    def wait(self, condition: Callable[[], Any], what: str) -> Any:
        """``condition()`` once it is truthy, polling the DOM; on a hang, what the page and the job
        manager showed."""
        try:
            return WebDriverWait(
                self.driver,
                HANG_GUARD_S,
                poll_frequency=0.2,
                ignored_exceptions=[StaleElementReferenceException],
            ).until(lambda _driver: condition())
        except TimeoutException:
            body = self.driver.execute_script("return document.body.innerText")
            raise AssertionError(
                f"gave up waiting for {what}.\n--- page:\n{body[-4000:]}\n--- job manager:\n"
                f"{self.jm.output()[-3000:]}"
            ) from None

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def text(self, element_id: str) -> str:
        return str(self.js("return document.getElementById(arguments[0]).textContent.trim()", element_id))

    def rows(self, table_id: str) -> list[dict[str, str]]:
        """``#table_id``'s body rows as {cell class: text}, read at once (the page rebuilds them on
        every refresh)."""
        return list(
            self.js(
                """return [...document.querySelectorAll('#' + arguments[0] + ' tbody tr')].map((tr) =>
                     Object.fromEntries([...tr.cells].map((td) => [td.classList[0], td.textContent.trim()])));""",
                table_id,
            )
        )

    def result(self, element_id: str) -> dict[str, str]:
        return dict(
            self.js(
                """const node = document.getElementById(arguments[0]);
                   return {status: node.dataset.status, location: node.dataset.location || '',
                           text: node.textContent.trim()};""",
                element_id,
            )
        )

    def fill(self, element_id: str, value: str) -> None:
        field = self.driver.find_element(By.ID, element_id)
        field.clear()
        field.send_keys(value)

    def click(self, element_id: str) -> None:
        button = self.driver.find_element(By.ID, element_id)
        self.wait(button.is_enabled, f"#{element_id} to be enabled")
        button.click()

    def finished(self, element_id: str) -> dict[str, str]:
        """The result of the operation shown in ``#element_id`` once it completed or failed."""
        return dict(
            self.wait(
                lambda: (r := self.result(element_id))["status"] in ("completed", "failed") and r,
                f"#{element_id} to show the operation's outcome",
            )
        )

    def script_errors(self) -> list[str]:
        """The page's console errors other than failed requests (a 401 on purpose, the job
        manager gone after the stop)."""
        return [
            e["message"]
            for e in self.driver.get_log("browser")
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]
        ]

    def screenshot(self, path: Path) -> None:
        height = int(self.js("return document.documentElement.scrollHeight"))
        self.driver.set_window_size(1400, min(max(height + 140, 800), 4000))
        self.wait(
            lambda: self.js("return window.innerHeight >= document.documentElement.scrollHeight - 4"),
            "the window to fit the whole page",
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self.driver.save_screenshot(str(path)), path


def test_dashboard_in_a_headless_browser(browser: Any, start_jm: Callable[..., Any], tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    jm = start_jm(
        ENDLESS,
        2,
        "--rest-token-file",
        str(token_file),
        "--restart-strategy",
        "fixed-delay:attempts=3,delay=0",
    )
    jm.wait_ready()
    page = Page(browser, jm)
    browser.get(f"{jm.url}/")
    assert "eventapp" in browser.title

    # The overview, the splits with their owner slots and progress, the slots.
    page.wait(lambda: page.text("job-state") == "RUNNING", "the job state RUNNING")
    owners = {row["split"]: str(row["owner"]) for row in jm.get("/jobs/jm-endless")["splits"]}
    assert sorted(owners) == [f"endless-{i}" for i in range(4)]
    splits = page.wait(
        lambda: (
            (rows := page.rows("splits"))
            and len(rows) == 4
            and all(
                r["offset"].replace(",", "").isdigit() and int(r["offset"].replace(",", "")) > 0 for r in rows
            )
            and all(r["last-checkpoint"].startswith("#") for r in rows)
            and rows
        ),
        "4 splits with offsets and checkpoints",
    )
    assert {r["split"]: r["owner"] for r in splits} == owners
    assert all(r["status"] == "RUNNING" and r["watermark"].startswith("19") for r in splits), splits
    assert all(r["state-size"].endswith("B") for r in splits), splits
    assert page.text("job-name") == "jm-endless" and page.text("job-parallelism") == "2"
    assert page.text("job-restarts") == "0"
    page.wait(lambda: page.text("job-ready") == "yes", "the job to show ready")
    slots = page.wait(lambda: len(rows := page.rows("slots")) == 2 and rows, "2 slots")
    assert [s["subtask"] for s in slots] == ["0", "1"] and all(s["attempt"] == "1" for s in slots)

    # The checkpoint chart (uPlot draws on a canvas) and the count of checkpoints.
    page.wait(
        lambda: page.js(
            """const chart = document.getElementById('checkpoint-chart');
               return chart.querySelector('canvas') !== null && Number(chart.dataset.points) > 0
                 && Number(document.getElementById('checkpoint-count').dataset.count) > 0;"""
        ),
        "the checkpoint chart to have data",
    )
    assert int(page.text("checkpoint-count").replace(",", "")) > 0

    # A savepoint: without the token the job manager answers 401 and the page says so.
    page.fill("savepoint-target", str(tmp_path / "savepoints"))
    page.click("savepoint-button")
    refused = page.finished("savepoint-result")
    assert refused["status"] == "failed" and "401" in refused["text"] and "token" in refused["text"], refused
    page.fill("token", TOKEN)
    page.click("token-save")
    page.wait(
        lambda: page.js("return sessionStorage.getItem('eventapp.dashboard.token')") == TOKEN,
        "the token to be kept in sessionStorage",
    )
    page.click("savepoint-button")
    savepoint = page.finished("savepoint-result")
    assert savepoint["status"] == "completed", savepoint
    first = Path(savepoint["location"])
    assert first.is_relative_to(tmp_path / "savepoints") and (first / "_metadata").is_file(), savepoint
    assert str(first) in savepoint["text"]

    # A killed worker shows up in the exception history, and its slot runs again.
    pid = jm.get("/jobs/jm-endless")["slots"][0]["pid"]
    os.kill(pid, signal.SIGKILL)
    entry = page.wait(
        lambda: page.js(
            """const li = document.querySelector('#exceptions li[data-subtask="0"]');
               return li && li.textContent;"""
        ),
        "the exception list to show subtask 0's failure",
    )
    assert "subtask 0" in entry and f"exit code {-signal.SIGKILL}" in entry, entry
    page.wait(
        lambda: (
            (rows := page.rows("slots"))
            and rows[0]["attempt"] == "2"
            and all(r["status"] == "RUNNING" for r in rows)
            and page.text("job-ready") == "yes"
        ),
        "slot 0 to run again",
    )
    assert page.text("job-restarts") == "1"
    assert page.script_errors() == []
    page.screenshot(
        SCREENSHOT if os.environ.get("EVENTAPP_DOCS_SCREENSHOT") == "1" else tmp_path / "dashboard.png"
    )

    # Stop with a drained savepoint: the final location, then the job manager exits 0.
    page.fill("stop-target", str(tmp_path / "savepoints"))
    page.click("stop-drain")
    assert page.js("return document.getElementById('stop-drain').checked") is True
    page.click("stop-button")
    stopped = page.finished("stop-result")
    assert stopped["status"] == "completed", stopped
    final = Path(stopped["location"])
    assert final != first and final.is_relative_to(tmp_path / "savepoints"), stopped
    assert (final / "_metadata").is_file(), stopped
    assert jm.wait_exit() == 0
    assert "FINISHED" in jm.output()
    assert page.script_errors() == []
