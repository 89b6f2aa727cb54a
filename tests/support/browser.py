"""Headless Chromium for the console's browser tests: Debian's ``chromium`` driven by Playwright.

Playwright's own browsers are never downloaded: ``chromium_context`` launches
``CHROMIUM`` (``/usr/bin/chromium``, installed by ``.ci/run`` when missing)
through ``executable_path``, headless, with a fresh user-data directory per
context (so each context has its own cookies: one signed-in key each).
Screenshots go to ``ARTIFACTS_DIR`` (``tests/artifacts/console/``, gitignored).
"""

from __future__ import annotations

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


@contextmanager
def chromium_contexts(user_data_root: Path) -> Iterator:
    """A function that opens a new browser context (its own profile under ``user_data_root``);
    every context is closed at exit."""
    with sync_playwright() as playwright:
        opened: list[BrowserContext] = []

        def new_context() -> BrowserContext:
            context = playwright.chromium.launch_persistent_context(
                user_data_root / f"profile-{len(opened)}", executable_path=CHROMIUM, headless=True,
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
