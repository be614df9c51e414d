"""Headless Chromium for the browser tests (marker ``browser``): Debian's ``chromium`` package driven by
Playwright's Python package, launched with ``executable_path`` (Playwright's own browser downloads are
never used). CHROMIUM=path picks another binary. When Playwright or Chromium is missing the tests skip
with the reason, or fail with it under CI=true (scripts/setup-debian.sh browser installs both)."""
import os
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"


def unavailable(reason):
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail("browser unavailable (CI=true): %s" % reason, pytrace=False)
    pytest.skip("browser unavailable: %s" % reason)


@pytest.fixture(scope="session")
def chromium():
    """A launched headless Chromium (playwright Browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        unavailable("the playwright Python package is not installed (%s); run scripts/setup-debian.sh browser" % e)
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        unavailable("%s not found; install Debian's chromium package (scripts/setup-debian.sh browser)" % CHROMIUM)
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox"] if os.geteuid() == 0 else [])
        except Exception as e:  # a broken installation: say which
            unavailable("%s does not start under Playwright: %s" % (CHROMIUM, e))
        yield browser
        browser.close()


class Page:
    """A page with every console message, page error and request recorded."""

    def __init__(self, page):
        self.page, self.console, self.errors, self.requests = page, [], [], []
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1400, "height": 860}, device_scale_factor=1)
    p = context.new_page()
    yield Page(p)
    context.close()
