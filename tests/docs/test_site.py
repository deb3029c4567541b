"""The built documentation site in a real browser: the architecture diagram, the
benchmark charts and the pictures of the admin and the terminal monitor are drawn, from
the site's own files.

``nox -s docs`` runs these after building the site, with DJQ_SITE naming its directory;
elsewhere they are skipped, as there is no site to look at.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Request

from tests.support.browser import drawn_share, headless_chromium

pytestmark = pytest.mark.browser

# A drawing leaves at least this share of its pixels off the background; a blank box, or
# one line of text where a picture should be, leaves far less.
DRAWN = 0.02
# (page, the end of the picture's address)
PICTURES = [
    *(
        ("explanation/performance/", f"assets/benchmarks/{chart}")
        for chart in ("cpu-per-task.svg", "latency.svg", "throughput.svg")
    ),
    ("how-to/monitoring/", "admin-cloud-tasks.png"),
    ("how-to/monitoring/", "cloudtasks-monitor.svg"),
]
# Material's closed shadow roots, opened so that the test can see the diagram's <svg>.
OPEN_SHADOW_ROOTS = """
const attach = Element.prototype.attachShadow;
Element.prototype.attachShadow = function (options) {
    return attach.call(this, { ...options, mode: "open" });
};
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """The built site over HTTP, as a browser would be served it; yields its URL."""
    if not os.environ.get("DJQ_SITE"):
        pytest.skip("No site to look at: `nox -s docs` builds it and runs these tests.")
    root = Path(os.environ["DJQ_SITE"]).resolve()
    assert (root / "index.html").is_file(), f"{root} holds no built site"
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with headless_chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser, site: str) -> Iterator[Page]:
    """A page that refuses every request for a script, style, font or picture from
    anywhere but the site, as a reader's network might, and records them."""
    context = browser.new_context(base_url=site, viewport={"width": 1280, "height": 900})
    context.add_init_script(OPEN_SHADOW_ROOTS)
    opened = context.new_page()
    opened.elsewhere = []  # type: ignore[attr-defined]

    def only_the_site(route: Any, request: Request) -> None:
        if request.url.startswith(site):
            route.continue_()
        elif request.resource_type in {"script", "stylesheet", "font", "image"}:
            opened.elsewhere.append(request.url)  # type: ignore[attr-defined]
            route.abort()
        else:  # the repository's star count, which Material fetches for the header
            route.abort()

    opened.route("**/*", only_the_site)
    yield opened
    context.close()


def test_the_architecture_diagram_is_drawn_by_the_sites_own_mermaid(page: Page) -> None:
    page.goto("explanation/architecture/")
    diagram = page.locator(".mermaid").first
    diagram.locator("svg").first.wait_for(state="visible", timeout=30_000)
    labels = diagram.locator("svg .nodeLabel").all_inner_texts()
    assert any("Receiver view" in label for label in labels), labels
    assert drawn_share(diagram.screenshot()) > DRAWN
    assert page.elsewhere == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(("address", "picture"), PICTURES)
def test_each_picture_is_drawn(page: Page, address: str, picture: str) -> None:
    page.goto(address)
    image = page.locator(f'img[src$="{picture}"]')
    image.scroll_into_view_if_needed()
    loaded = image.evaluate("img => img.decode().then(() => img.naturalWidth)")
    assert loaded > 0, f"{picture} did not load"
    assert drawn_share(image.screenshot()) > DRAWN, f"{picture} is blank"
    assert page.elsewhere == []  # type: ignore[attr-defined]
