"""Every Python or shell block of the documentation (docs/ and README.md) says how it is
kept true, in an HTML comment on the line before it:

- ``<!-- tested: PATH -->``: the test (or CI script) at PATH reads this page and runs or
  checks the block;
- ``<!-- settings -->``: a settings example; this module runs it and validates its
  ``Q_CLUSTER`` as the system checks would, and its ``cloud_tasks`` keys must be the
  settings reference's;
- ``<!-- illustrative -->``: shown, not run (a command against live Google APIs, a
  session's output).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from django_q_cloudtasks import conf

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CHECKED_LANGUAGES = {"python", "bash", "console", "sh", "shell"}
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<language>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!-- (?P<kind>illustrative|settings|tested: (?P<path>\S+)) -->\s*$")
REFERENCE = ROOT / "docs" / "reference" / "settings.md"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    marker: re.Match[str] | None

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    found, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        before = next((line for line in reversed(lines[:index]) if line.strip()), "")
        indent = len(fence["indent"])
        code = "\n".join(line[indent:] for line in lines[index + 1 : end])
        found.append(Block(page, index + 1, fence["language"], code, MARKER.match(before)))
        index = end + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
CHECKED = [block for block in ALL_BLOCKS if block.language in CHECKED_LANGUAGES]
SETTINGS = [block for block in CHECKED if block.marker and block.marker["kind"] == "settings"]


def test_the_pages_have_code_to_check() -> None:
    assert len(CHECKED) > 40
    assert len(SETTINGS) >= 5


@pytest.mark.parametrize("block", CHECKED, ids=str)
def test_each_block_says_how_it_is_kept_true(block: Block) -> None:
    assert block.marker, (
        f"{block}: mark the {block.language} block <!-- illustrative -->, "
        "<!-- settings --> or <!-- tested: PATH -->"
    )
    if block.marker["path"]:
        tester = ROOT / block.marker["path"]
        assert tester.is_file(), f"{block}: {block.marker['path']} does not exist"
        page = block.page.relative_to(ROOT)
        assert str(page) in tester.read_text(), (
            f"{block}: {block.marker['path']} never reads {page}"
        )
    if block.marker["kind"] == "settings":
        assert block.language == "python", f"{block}: a settings example is Python"


def reference_keys() -> set[str]:
    """The keys the settings reference's table of ``cloud_tasks`` names."""
    rows = [line for line in REFERENCE.read_text().splitlines() if line.startswith("| `")]
    return {key for row in rows for key in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_the_settings_reference_names_every_key_the_settings_know() -> None:
    assert reference_keys() == conf.QUEUE_KEYS | conf.ENDPOINT_KEYS


def cloud_tasks_keys(q_cluster: dict[str, Any]) -> set[str]:
    clusters = [q_cluster, *q_cluster.get("ALT_CLUSTERS", {}).values()]
    return {key for cluster in clusters for key in cluster.get("cloud_tasks", {})}


def test_the_settings_references_example_sets_every_key() -> None:
    (example,) = [block for block in SETTINGS if block.page == REFERENCE]
    namespace: dict[str, Any] = {}
    exec(compile(example.code, str(example), "exec"), namespace)
    assert cloud_tasks_keys(namespace["Q_CLUSTER"]) == conf.QUEUE_KEYS | conf.ENDPOINT_KEYS


@pytest.mark.parametrize("block", SETTINGS, ids=str)
def test_each_settings_example_is_valid(
    block: Block, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Secrets the example reads from the environment, as the deployed service has them.
    for name in re.findall(r"os\.environ\[\"(\w+)\"\]", block.code):
        monkeypatch.setenv(name, f"example-{name.lower()}")
    # Where the example leaves project, location or url to detection, the emulator's
    # defaults stand in for the metadata server.
    monkeypatch.setenv(conf.EMULATOR_ENV, conf.EMULATOR_ADDRESS)
    # A fragment changes the project's settings: here the test project's.
    namespace: dict[str, Any] = {"Q_CLUSTER": copy.deepcopy(settings.Q_CLUSTER)}
    exec(compile(block.code, str(block), "exec"), namespace)
    q_cluster = namespace["Q_CLUSTER"]
    assert cloud_tasks_keys(q_cluster) <= reference_keys()
    settings.Q_CLUSTER = q_cluster
    # A value the example leaves to detection (the url on Cloud Run) is found there, not
    # here: that one error is not the example's.
    errors = [str(error) for error in conf.configuration_errors()]
    assert [error for error in errors if "could not be detected" not in error] == []
