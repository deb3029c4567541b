"""``python tests/support/wheel_contents.py WHEEL``: fails unless the wheel holds what an
installed package needs beside its modules (run by ``nox -s build``)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
PACKAGE = REPOSITORY / "django_q_cloudtasks"


def missing_from(wheel: Path) -> list[str]:
    """Every file of the package in the checkout that the wheel lacks, and its licence."""
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = [
        str(path.relative_to(REPOSITORY))
        for path in sorted(PACKAGE.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]
    missing = [name for name in wanted if name not in names]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        missing.append("LICENSE (in .dist-info/licenses/)")
    return missing


if __name__ == "__main__":
    missing = missing_from(Path(sys.argv[1]))
    if missing:
        sys.exit("The wheel lacks: " + ", ".join(missing))
    print(f"{sys.argv[1]}: every file of the package, and its licence.")
