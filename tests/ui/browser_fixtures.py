"""A real Chromium (Debian's, found by path) driven by Playwright, against real server processes.
Without Chromium the browser tests do not run, and the run says so loudly (tests/conftest.py);
under CI (CI=true) a missing browser is a failure. Not a conftest.py: a second module named
`conftest` would shadow tests/server/conftest.py for `from conftest import ...`."""

import os
import shutil

import pytest

CHROMIUM_CANDIDATES = ["chromium", "chromium-browser", "google-chrome"]
INSTALL_HINT = "install it with `apt-get install chromium` (or set PURE_API_CHROMIUM to a Chromium binary)"


def find_chromium() -> str | None:
    explicit = os.environ.get("PURE_API_CHROMIUM")
    if explicit:
        return explicit if os.path.isfile(explicit) else None
    return next((path for path in map(shutil.which, CHROMIUM_CANDIDATES) if path), None)


@pytest.fixture(scope="module", name="browser")
def chromium_browser():
    """Module-scoped: Playwright's sync API runs an event loop on this thread until it is closed,
    and later tests call asyncio.run()."""
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium, so the browser tests cannot run: {INSTALL_HINT}")
        pytest.skip(f"BROWSER TESTS DID NOT RUN: no Chromium; {INSTALL_HINT}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        yield browser
        browser.close()


@pytest.fixture(name="page")
def chromium_page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.dialogs = []  # any alert() would land here: none may
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.set_default_timeout(60_000)
    yield page
    context.close()
