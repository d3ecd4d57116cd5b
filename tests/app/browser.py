"""A real app in a real browser: `streamlit run app.py` on a free port, driven by headless Chromium.

Used by test_browser.py and by `python -m tests.app.browser` (screenshots for the README).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "tests" / "artifacts"


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed (Debian: apt-get install chromium chromium-driver; `make test` does it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in requirements.txt)"
    return None


def require_browser() -> None:
    """Skip where Chromium is missing; under CI (CI=true) fail with the reason instead: never a silent skip."""
    import pytest

    reason = browser_missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"the real-browser tests cannot run under CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(home: Path, timeout: float = 60):
    """Start the app on a free port; yield its URL; stop it."""
    port = free_port()
    env = {**os.environ, "KERNEL_STUDIO_HOME": str(home), "TI_SKIP_VERSION_CHECK": "ON"}
    log = open(home / "streamlit.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: "
                                   f"{(home / 'streamlit.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("streamlit did not become healthy")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def chromium(width: int = 1400, height: int = 1100):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ks-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_idle(driver, timeout: float = 60, settle: float = 0.4) -> None:
    """Wait until the app is drawn and no script run is in progress (the status widget says no 'Running')."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        ready = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"]')
        running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        busy = any("Running" in (el.text or "") for el in running) or driver.find_elements(
            By.CSS_SELECTOR, '[data-testid="stApp"][data-test-script-state="running"]')
        skeleton = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stAppSkeleton"]')
        if ready and not busy and not skeleton:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return
        else:
            quiet_since = None
        time.sleep(0.1)
    raise TimeoutError("the app kept running")


def wait_text(driver, text: str, timeout: float = 60) -> None:
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in driver.find_element(By.TAG_NAME, "body").text:
            return
        time.sleep(0.1)
    shot = ARTIFACTS / "failures" / f"{int(time.time())}.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(shot))
    raise TimeoutError(f"{text!r} never appeared (screenshot: {shot}); the page says: "
                       f"{driver.find_element(By.TAG_NAME, 'body').text[-1500:]!r}")


def open_page(driver, title: str) -> None:
    """Click a page in the sidebar navigation (keeps the session, unlike a new URL)."""
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebarNav"] a')
    for link in links:
        if link.text.strip().endswith(title):
            link.click()
            wait_idle(driver)
            return
    raise AssertionError(f"no page {title!r} in the sidebar ({[l.text for l in links]})")


def main_metric(driver, label: str) -> str:
    """The value of a metric in the main area."""
    from selenium.webdriver.common.by import By

    for metric in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] [data-testid="stMetric"]'):
        if metric.find_element(By.CSS_SELECTOR, '[data-testid="stMetricLabel"]').text.strip() == label:
            return metric.find_element(By.CSS_SELECTOR, '[data-testid="stMetricValue"]').text.strip()
    raise AssertionError(f"no metric {label!r}")


def click_key(driver, key: str) -> None:
    """Click the button of the widget with Streamlit key `key`."""
    _scrolled(driver, find(driver, f".st-key-{key} button")).click()


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By
    return driver.find_element(By.TAG_NAME, "body").text


def find(driver, css: str, timeout: float = 20):
    """The element `css` selects, waiting for it (a page is redrawn after every interaction)."""
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing on the page matches {css!r}")
        time.sleep(0.1)


def _scrolled(driver, element):
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    return element


def choose(driver, key: str, option: str) -> None:
    """Pick the option whose text is `option` in the selectbox with Streamlit key `key`."""
    from selenium.webdriver.common.by import By

    _scrolled(driver, find(driver, f".st-key-{key} input")).click()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for item in driver.find_elements(By.CSS_SELECTOR, "[role='option']"):
            if item.text.strip() == option:
                item.click()
                wait_idle(driver)
                return
        time.sleep(0.1)
    raise AssertionError(f"no option {option!r} in {key}")


def selected(driver, key: str) -> str:
    """The option the selectbox with Streamlit key `key` shows (it is the value of its search input)."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, f".st-key-{key}")
    field = box.find_elements(By.CSS_SELECTOR, "input")
    return (field[0].get_attribute("value") if field else "") or box.text.split("\n")[-1]


def toggle(driver, key: str) -> None:
    """Click the toggle or checkbox with Streamlit key `key`."""
    _scrolled(driver, find(driver, f".st-key-{key} label")).click()
    wait_idle(driver)


def type_into(driver, key: str, text: str) -> None:
    """Replace the text of the input with Streamlit key `key` and leave it (Tab: Enter would submit a form)."""
    from selenium.webdriver.common.keys import Keys

    field = _scrolled(driver, find(driver, f".st-key-{key} input"))
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)
    field.send_keys(text)
    field.send_keys(Keys.TAB)
    wait_idle(driver)


def click_text(driver, text: str) -> None:
    """Click the (first visible) button that reads `text`."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, "button"):
        if button.text.strip() == text and button.is_displayed():
            _scrolled(driver, button).click()
            wait_idle(driver)
            return
    raise AssertionError(f"no button {text!r}")


def click_tab(driver, label: str) -> None:
    from selenium.webdriver.common.by import By

    for tab in driver.find_elements(By.CSS_SELECTOR, "[role='tab']"):
        if tab.text.strip() == label:
            _scrolled(driver, tab).click()
            time.sleep(0.3)
            return
    raise AssertionError(f"no tab {label!r}")


def assert_no_exception(driver) -> None:
    """No Streamlit exception element on the page (a traceback a user would see)."""
    from selenium.webdriver.common.by import By

    shown = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not shown, shown[0].text[:2000]


def screenshot(driver, path: Path, height: int | None = None) -> Path:
    """A PNG of the page; `height` grows the window first so long pages fit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if height:
        width = driver.get_window_size()["width"]
        driver.set_window_size(width, height)
        time.sleep(0.5)
        wait_idle(driver)
    driver.execute_script("document.querySelectorAll('[data-testid=\"stMain\"]').forEach(e => e.scrollTop = 0);"
                          "window.scrollTo(0, 0);")
    driver.save_screenshot(str(path))
    return path


def readme_screenshot(out: Path = ROOT / "docs" / "screenshot.png") -> Path:
    """The Design page with VGG-16 = ASK_5a on the first 10 layers and ASK_2 on the last 3, as a small PNG."""
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    with tempfile.TemporaryDirectory(prefix="ks-shot-") as home, streamlit_app(Path(home)) as url, \
            chromium(1400, 1000) as driver:
        driver.get(url)
        wait_text(driver, "Kernel for 13 selected layers")
        wait_idle(driver)
        area = driver.find_element(By.CSS_SELECTOR, ".st-key-import_text textarea")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", area)
        area.send_keys("[[[2,4,5,6,8]]]*10 + [[[2,5],[4,5],[5,6],[5,8]]]*3")
        area.send_keys(Keys.CONTROL, Keys.ENTER)
        wait_idle(driver)
        click_key(driver, "import_paste")
        wait_text(driver, "ASK_5a x10, ASK_2 x3")
        wait_idle(driver)
        click_key(driver, "sel_none")
        wait_idle(driver)
        click_key(driver, "sel_all")
        wait_idle(driver)
        raw = screenshot(driver, Path(home) / "raw.png")
        image = Image.open(raw).convert("RGB")
        image = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        image.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return out


if __name__ == "__main__":
    path = readme_screenshot()
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
