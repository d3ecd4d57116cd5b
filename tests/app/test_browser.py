"""The app in a real browser: headless Chromium drives `streamlit run app.py` on a free port.

Opens every page, toggles a tap on the Design page and sees the FLOP figure
change (main area and sidebar), and saves a screenshot of each page under
tests/artifacts/ (git-ignored).
"""
from __future__ import annotations

import pytest

from tests.app.browser import (
    ARTIFACTS,
    chromium,
    click_key,
    main_metric,
    open_page,
    require_browser,
    screenshot,
    streamlit_app,
    wait_idle,
    wait_text,
)


@pytest.fixture(autouse=True)
def _browser():
    require_browser()

PAGES = ["Analyze", "Benchmark", "Train", "Runs", "Sweeps"]


def sidebar_text(driver) -> str:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebar"]').text


def test_every_page_and_a_tap_toggle_in_chromium(tmp_path):
    with streamlit_app(tmp_path) as url, chromium() as driver:
        driver.get(url)
        wait_text(driver, "Kernel for 13 selected layers")
        wait_idle(driver)
        assert main_metric(driver, "MACs") == "313.46M"
        screenshot(driver, ARTIFACTS / "design.png")

        click_key(driver, "tap_0_1")  # tap 1 (top left) off on all 13 layers
        wait_text(driver, "278.66M")
        wait_idle(driver)
        assert main_metric(driver, "MACs") == "278.66M"
        assert "278.66M" in sidebar_text(driver)
        click_key(driver, "undo")
        wait_text(driver, "Undo")
        wait_idle(driver)
        assert main_metric(driver, "MACs") == "313.46M"

        for page in PAGES:
            open_page(driver, page)
            wait_text(driver, page)
            assert "313.46M" in sidebar_text(driver)  # the design follows to every page
            body = driver.find_element("tag name", "body").text
            assert "Traceback" not in body and "Error" not in body.split("Kernel Studio")[0]
            screenshot(driver, ARTIFACTS / f"{page.lower()}.png")
        assert (ARTIFACTS / "runs.png").stat().st_size > 10_000
