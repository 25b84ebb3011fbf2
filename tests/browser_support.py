"""A real headless Chromium for the console's browser tests (Debian's chromium + chromium-driver,
driven by selenium), and where their screenshots go.

Skipped with the reason when any of the three is missing; `.ci/run` installs them.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "console"  # gitignored; CI keeps it as the run's artifacts
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver",)


def chromium_path() -> str | None:
    return _find(CHROMIUM, "BITFIT_CHROMIUM")


def _find(names: tuple[str, ...], variable: str) -> str | None:
    given = os.environ.get(variable)
    if given:
        return given if Path(given).exists() else None
    return next((path for name in names if (path := shutil.which(name))), None)


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the test extra)"
    if _find(CHROMIUM, "BITFIT_CHROMIUM") is None:
        return "no chromium binary (apt-get install chromium chromium-driver; .ci/run does)"
    if _find(DRIVER, "BITFIT_CHROMEDRIVER") is None:
        return "no chromedriver (apt-get install chromium-driver)"
    return None


def start_chromium(binary: str | None = None):
    """A headless Chromium with its console log kept (CSP violations and uncaught errors are read
    back); ``binary``: another executable to start it with (a wrapper, e.g. under ``nice``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary or _find(CHROMIUM, "BITFIT_CHROMIUM")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000",
                "--disable-extensions", "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(_find(DRIVER, "BITFIT_CHROMEDRIVER")))
    driver.set_page_load_timeout(60)
    return driver


def until(driver, predicate: Callable[[], object], timeout: float = 30, what: str = "the page") -> object:
    """Poll ``predicate`` until it returns something truthy (stale elements count as not yet)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (StaleElementReferenceException, NoSuchElementException) as exc:
            last = exc
        time.sleep(0.1)
    text = driver.find_element("tag name", "main").text[:2000]
    raise AssertionError(f"timed out after {timeout}s waiting for {what} ({last!r}); the page shows:\n{text}")


def css(driver, selector):
    return driver.find_elements("css selector", selector)


def one(driver, selector):
    return driver.find_element("css selector", selector)


def text(driver, selector: str) -> str:
    """The element's text, read again if the page re-rendered it meanwhile (polled pages do)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(20):
        try:
            return driver.find_element("css selector", selector).text
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"{selector} kept being re-rendered")


def click(driver, selector: str, tries: int = 20) -> None:
    """Click ``selector`` as a user does: found again on each try, scrolled into view. A page
    that re-renders as events arrive (a job's) can replace the element between finding and
    clicking it (stale), or a row still being laid out can cover it for a moment."""
    from selenium.common.exceptions import ElementClickInterceptedException, StaleElementReferenceException

    for attempt in range(tries):
        try:
            element = driver.find_element("css selector", selector)
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
            element.click()
            return
        except (StaleElementReferenceException, ElementClickInterceptedException):
            if attempt == tries - 1:
                raise
            time.sleep(0.1)


def open_ui(driver, base: str, route: str = "#/tasks") -> None:
    """The console at ``route`` on the server at ``base``."""
    driver.get(f"{base}/ui{route}")


def no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def page_problems(driver) -> list[str]:
    """Console lines that mean the page broke: CSP violations and uncaught errors."""
    return [entry["message"] for entry in driver.get_log("browser")
            if "Content Security Policy" in entry["message"] or "Uncaught" in entry["message"]]


@pytest.fixture
def chromium():
    reason = missing()
    if reason:
        pytest.skip(reason)
    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()
