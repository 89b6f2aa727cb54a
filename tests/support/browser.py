"""Headless Chromium for the console's browser tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browsers are never downloaded: ``chromium_context`` launches
``CHROMIUM`` (``/usr/bin/chromium``) through ``executable_path``. When it is
missing, ``ensure_chromium`` installs Debian's package first (``apt-get``, as
root, at most ``CHROMIUM_INSTALL_TIMEOUT_S`` per step), so the README's test
command needs no set-up by hand; where it cannot, the tests fail with one line
saying how to install it (they never skip). Each context is headless, with a fresh user-data directory per
context (so each context has its own cookies: one signed-in key each).
Screenshots go to ``ARTIFACTS_DIR`` (``tests/artifacts/console/``, gitignored).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "console"
NAVIGATION_TIMEOUT_MS = 30_000
TABLET_VIEWPORT = {"width": 1024, "height": 768}
CHROMIUM_INSTALL_TIMEOUT_S = 900
APT_INSTALL = ["apt-get", "install", "-y", "-q", "chromium"]
INSTALL_LOCK_PATH = Path(tempfile.gettempdir()) / "loyalty-tests-chromium-install.lock"


class ChromiumMissing(RuntimeError):
    """Debian's chromium is not installed and this process cannot install it."""


def ensure_chromium() -> str:
    """``CHROMIUM``, installed with ``apt-get`` first when missing (root only); one test
    process installs at a time (``INSTALL_LOCK_PATH``: pytest-xdist runs several)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ChromiumMissing(f"the browser tests need {CHROMIUM}: install Debian's chromium "
                              "(apt-get install chromium) as root, then run them again")
    with open(INSTALL_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not os.access(CHROMIUM, os.X_OK):  # another test process may have installed it
            _apt_install()
    if not os.access(CHROMIUM, os.X_OK):
        raise ChromiumMissing(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], APT_INSTALL):
        subprocess.run(command, env=env, check=True, timeout=CHROMIUM_INSTALL_TIMEOUT_S,
                       stdout=subprocess.DEVNULL)


@contextmanager
def chromium_contexts(user_data_root: Path) -> Iterator:
    """A function that opens a new browser context (its own profile under ``user_data_root``);
    every context is closed at exit. Installs Debian's chromium first if it is missing."""
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        opened: list[BrowserContext] = []

        def new_context() -> BrowserContext:
            context = playwright.chromium.launch_persistent_context(
                user_data_root / f"profile-{len(opened)}", executable_path=executable, headless=True,
                args=CHROMIUM_ARGS, viewport=TABLET_VIEWPORT)
            context.set_default_timeout(NAVIGATION_TIMEOUT_MS)
            opened.append(context)
            return context

        try:
            yield new_context
        finally:
            for context in opened:
                context.close()


def sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/console/sign-in")
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/console/overview")


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
