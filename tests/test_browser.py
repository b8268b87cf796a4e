"""The smoke report in a real headless Chromium: no console errors, no off-host requests, every
image decoded, every task section present, a header click sorts its table; a screenshot is kept
in test-artifacts/ for a person to look at."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="needs Debian's chromium and chromium-driver (make test installs them when run as root)"),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser, snakemake_run):
    workdir, _ = snakemake_run
    report = workdir / "reports" / "index.html"
    for kind in ("browser", "performance"):
        browser.get_log(kind)  # drop what the browser did before it opened the report (its new-tab page)
    browser.get(report.as_uri())
    browser.execute_script("return document.readyState")
    return browser, workdir


def test_report_loads_without_console_errors_or_off_host_requests(page):
    driver, _ = page
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    assert any(u.startswith("file://") for u in urls), urls
    # chrome:// is the browser's own new-tab page still loading; anything over a network is off-host
    off_host = [u for u in urls if u.split(":", 1)[0].lower() in ("http", "https", "ws", "wss", "ftp")]
    assert off_host == [], off_host


def test_every_image_is_decoded_and_every_task_has_a_section(page):
    driver, workdir = page
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.alt])")
    assert images, "the report has figures"
    bad = [i for i in images if not (i[0] and i[1] > 0 and i[2] > 0)]
    assert bad == [], bad
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for task in params["tasks"]:
        assert driver.execute_script(f"return document.getElementById({json.dumps(task)}) !== null"), task


def test_clicking_a_header_sorts_the_leaderboard(page):
    from selenium.webdriver.common.by import By

    driver, _ = page
    table = driver.find_element(By.CSS_SELECTOR, "table.sortable.leaderboard")
    headers = table.find_elements(By.CSS_SELECTOR, "thead th")
    column = next(i for i, h in enumerate(headers) if h.text.strip().startswith("run"))

    def values():
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        return [r.find_elements(By.CSS_SELECTOR, "td")[column].text for r in rows]

    headers[column].click()
    first = values()
    assert first == sorted(first) or first == sorted(first, reverse=True)
    headers[column].click()
    second = values()
    assert second == list(reversed(first)) and second != first


def test_screenshot_for_a_person(page):
    driver, _ = page
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    driver.set_window_size(1280, 2400)
    assert driver.save_screenshot(str(out / "report-smoke.png"))
    assert (out / "report-smoke.png").stat().st_size > 10_000
    driver.set_window_size(390, 2400)  # a phone's width: nothing may overflow the page itself
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    driver.save_screenshot(str(out / "report-phone.png"))
    assert overflow <= 1, f"page wider than a phone screen by {overflow}px"
