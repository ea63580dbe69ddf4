"""The built site in a real browser: headless Chromium (Debian's package) driven by Playwright,
over HTTP on loopback. No console errors, rendered maths, working Colab links, a screenshot."""
import functools
import http.server
import shutil
import threading

import pytest

from coursetools.config import colab_url
from tests.conftest import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
SITE = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium must not try to reach Google's services from this offline machine.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-default-apps"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail("the book is not built: `make test` builds it first (or run `make book`)")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=SITE))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def visit(browser, url, shot):
    """Open url; return (page, problems) where problems are console errors, page errors and
    failed requests."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="networkidle")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / shot), full_page=False)
    return page, problems


def test_home_page(server, browser):
    page, problems = visit(browser, server + "/index.html", "home.png")
    assert problems == []
    assert "Deep Learning for Object Detection" in page.title()
    assert page.locator("h2", has_text="What the course covers").count() == 1
    assert page.locator('a[href*="01-colab.html"]').count() >= 1
    page.close()


def test_chapter_one(server, browser):
    page, problems = visit(browser, server + "/book/01-colab.html", "01-colab.png")
    assert problems == []
    page.wait_for_function("document.querySelectorAll('mjx-container').length > 0", timeout=15000)
    assert page.locator("mjx-container").count() >= 2  # $y = Wx + b$, $2n^3$, ...
    launch = page.locator(f'a[href="{colab_url("book/01-colab.ipynb")}"]')
    assert launch.count() == 1
    assignment = page.locator(f'a.colab-assignment-button[href="{colab_url("assignments/a01-colab/a01-colab.ipynb")}"]')
    assert assignment.count() == 1 and assignment.is_visible()
    assert "Open the assignment in Colab" in assignment.inner_text()
    assert page.locator("div.cell_output img").count() >= 4  # figures drawn by the page's code
    assignment.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "01-colab-assignment-link.png"))
    page.close()
