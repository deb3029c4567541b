"""Headless Chromium from Debian's package, driven by Playwright, for the tests that look at
pages as a reader's browser draws them (the admin, the documentation site)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Browser, sync_playwright

# Debian's Chromium; DJQ_CHROMIUM names another build of it, or Chrome.
CHROMIUM = Path(os.environ.get("DJQ_CHROMIUM", "/usr/bin/chromium"))


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """A launched browser; the test is skipped where Chromium is missing, unless
    DJQ_REQUIRE_BROWSER is set (as CI sets it), where it fails."""
    if not CHROMIUM.exists() and not os.environ.get("DJQ_REQUIRE_BROWSER"):
        pytest.skip(f"No Chromium at {CHROMIUM} (set DJQ_REQUIRE_BROWSER=1 to fail instead)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def drawn_share(png: bytes) -> float:
    """The share of a screenshot's pixels that differ from its commonest colour (its
    background): 0 for a blank picture."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=image.width * image.height) or []
    background = max(count for count, _ in colours)
    return 1 - background / (image.width * image.height)
