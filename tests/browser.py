"""A real headless Chromium (selenium + chromedriver) for the pages' browser tests. Without a browser those
tests skip, except under CI, which must test in a browser. Import ``chromium_driver`` into a test module to
get its ``driver`` fixture (one browser per module)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest


def _find(*names: str) -> str | None:
    for n in names:
        if path := shutil.which(n):
            return path
    return None


def browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver; skip without them, but fail under CI, which must test in a browser."""
    chromium = _find("chromium", "chromium-browser", "google-chrome")
    chromedriver = _find("chromedriver")
    if chromium is None or chromedriver is None:
        msg = "headless Chromium and chromedriver are needed: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(f"CI must have a browser for the report test; {msg}")
        pytest.skip(msg)
    return chromium, chromedriver


@pytest.fixture(scope="module", name="driver")
def chromium_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    chromium, chromedriver = browser_paths()
    webdriver = pytest.importorskip("selenium.webdriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1300,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=chromedriver))
    drv.command_executor.client_config.timeout = 20  # no hanging command, whatever happens
    drv.set_page_load_timeout(20)
    drv.set_script_timeout(10)
    try:
        yield drv
    finally:
        drv.quit()


def severe_logs(drv: Any) -> list[Any]:
    return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
