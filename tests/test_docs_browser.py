"""/docs in a real headless Chromium with no network but loopback: register, Authorize, Execute.

Swagger UI's scripts come from the app itself (docs_ui.py); with FastAPI's CDN pages this test
sees a blank page. `make test` installs Debian's chromium and chromium-driver when missing.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.live_server import alembic_upgrade, app_env, live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (`make test` installs them)",
)

if CHROMIUM and CHROMEDRIVER:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webelement import WebElement
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("docs-browser")
    env = app_env(tmp, DATABASE_URL=database_url)
    assert alembic_upgrade(tmp, env).returncode == 0
    with live_server(tmp, env, tmp / "uvicorn.log") as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="tm-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,2000",
        # No network but loopback: names do not resolve and everything else goes to a closed
        # proxy port (Chromium never sends loopback through a proxy).
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver: webdriver.Chrome, css: str, timeout: float = 10) -> WebElement:
    element: WebElement = WebDriverWait(driver, timeout).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, css))
    )
    return element


def _authorize(driver: webdriver.Chrome, username: str, password: str, *, expect: str) -> str:
    """Fill Swagger UI's OAuth2 password dialog and press its Authorize; return the dialog's
    text once it shows `expect` (or after 10 s), and close the dialog."""
    _wait(driver, ".auth-wrapper .btn.authorize").click()
    for field, value in (("#oauth_username", username), ("#oauth_password", password)):
        box = _wait(driver, field)
        box.clear()  # the dialog keeps what an earlier attempt typed
        box.send_keys(value)
    _wait(driver, ".auth-container .btn.modal-btn.auth.authorize").click()
    dialog = _wait(driver, ".auth-container")
    with contextlib.suppress(TimeoutException):
        WebDriverWait(driver, 10).until(lambda _: expect in dialog.text)
    text: str = dialog.text
    _wait(driver, ".modal-ux .close-modal").click()
    return text


def test_swagger_ui_offline_authorize_and_execute_lists_own_tasks(
    server: str, browser: webdriver.Chrome
) -> None:
    username = f"docs_{uuid.uuid4().hex[:10]}"
    registered = httpx.post(
        f"{server}/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 201, registered.text
    token = httpx.post(
        f"{server}/auth/login", json={"username": username, "password": PASSWORD}
    ).json()["access_token"]
    title = f"Seen through Swagger UI {uuid.uuid4().hex[:6]}"
    created = httpx.post(
        f"{server}/tasks", json={"title": title}, headers={"Authorization": f"Bearer {token}"}
    )
    assert created.status_code == 201, created.text

    browser.get(f"{server}/docs")
    _wait(browser, ".swagger-ui .info .title")  # rendered: the scripts loaded without internet

    wrong = "Incorrect username or password"  # the 401 body's error_description
    refused = _authorize(browser, username, "wrong-password-1", expect=wrong)
    assert wrong in refused, refused

    accepted = _authorize(browser, username, PASSWORD, expect="Logout")
    assert "Authorized" in accepted, accepted
    assert "Logout" in accepted, accepted

    operation = _wait(browser, '.opblock-get .opblock-summary-path[data-path="/tasks"]')
    operation.click()
    block = operation.find_element(By.XPATH, "./ancestor::div[contains(@class, 'opblock-get')]")
    block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    WebDriverWait(browser, 5).until(lambda _: block.find_elements(By.CSS_SELECTOR, ".btn.execute"))
    block.find_element(By.CSS_SELECTOR, ".btn.execute").click()
    live = WebDriverWait(browser, 10).until(
        lambda _: block.find_elements(By.CSS_SELECTOR, ".live-responses-table .response")
    )[0]
    assert live.find_element(By.CSS_SELECTOR, ".response-col_status").text.strip() == "200"
    assert title in live.find_element(By.CSS_SELECTOR, ".response-col_description").text


def test_redoc_renders_offline(server: str, browser: webdriver.Chrome) -> None:
    browser.get(f"{server}/redoc")
    heading = _wait(browser, ".api-info h1", timeout=15)
    assert "Task Manager API" in heading.text
