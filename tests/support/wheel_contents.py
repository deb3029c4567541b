"""``python tests/support/wheel_contents.py WHEEL``: fails unless the wheel holds what an
installed package needs beside its modules, and its description (README.md, PyPI's
page) links only to pages of the site and files of the repository, by their full
addresses (run by ``nox -s build``)."""

from __future__ import annotations

import email
import re
import sys
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGE = REPOSITORY / "django_q_cloudtasks"
SITE = "https://django-q-cloudtasks.github.io/django-q-cloudtasks/"
FILES = "https://github.com/django-q-cloudtasks/django-q-cloudtasks/blob/main/"
LINK = re.compile(r"\]\(([^)\s]+)\)")


def missing_from(wheel: Path) -> list[str]:
    """Every file of the package in the checkout that the wheel lacks, and its licence."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    wanted = [
        str(path.relative_to(REPOSITORY))
        for path in sorted(PACKAGE.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]
    missing = [name for name in wanted if name not in names]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        missing.append("LICENSE (in .dist-info/licenses/)")
    return missing


def broken_links(wheel: Path) -> list[str]:
    """The description's links that PyPI could not follow, or that lead to no page of the
    site or file of the repository."""
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [name for name in archive.namelist() if name.endswith("/METADATA")]
        description = str(email.message_from_bytes(archive.read(metadata)).get_payload())
    links = LINK.findall(description)
    if len(links) < 20:  # README.md links every page of the site
        return [f"only {len(links)} links in the description: is it README.md?"]
    broken = []
    for target in links:
        address = target.split("#")[0]
        if address.startswith(SITE):
            page = address.removeprefix(SITE).rstrip("/")
            # MkDocs serves docs/PAGE.md at PAGE/, and docs/index.md at the site's root.
            found = (
                page.rpartition("/")[2] != "index"
                and (REPOSITORY / "docs" / (f"{page}.md" if page else "index.md")).is_file()
            )
        elif address.startswith(FILES):
            found = (REPOSITORY / address.removeprefix(FILES)).exists()
        else:
            found = address.startswith("https://")
        if not found:
            broken.append(target)
    return broken


if __name__ == "__main__":
    wheel = Path(sys.argv[1])
    if missing := missing_from(wheel):
        sys.exit("The wheel lacks: " + ", ".join(missing))
    if broken := broken_links(wheel):
        sys.exit("The description's links lead nowhere on PyPI: " + ", ".join(broken))
    print(f"{wheel}: every file of the package, its licence, and a description whose links work.")
