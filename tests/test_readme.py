"""README.md is the front page: short, and every link in it leads somewhere real."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_stays_a_front_page_under_200_lines():
    assert len(README.splitlines()) < 200


def test_every_relative_link_of_the_readme_is_a_file_or_folder_of_the_repository():
    relative = [target for target in LINK.findall(README) if not target.startswith("http")]
    assert relative, "the README links into the documentation"
    missing = [target for target in relative if not (ROOT / target.split("#")[0]).exists()]
    assert missing == []


def test_every_page_of_the_site_is_linked_from_the_readme():
    pages = {
        str(page.relative_to(ROOT))
        for page in (ROOT / "docs").rglob("*.md")
        if page.name not in {"index.md", "changelog.md"}
    }
    assert pages - set(LINK.findall(README)) == set()
