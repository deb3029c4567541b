"""MkDocs hooks: what the site takes from the code and the benchmarks rather than from
hand-written copies that could drift.

- ``<!-- commands -->`` in a page becomes the reference of every management command, read
  from the commands' own argument parsers.
- The benchmark charts (``benchmarks/results/*.svg``, drawn by ``nox -s bench``) are
  served under ``assets/benchmarks/``.
- Mermaid's script is served from the copy ``nox -s docs`` fetches from npm
  (``.cache/docs/mermaid/``), so that the diagrams draw with no request to a CDN.
"""

from __future__ import annotations

import argparse
import html
import importlib
import pkgutil
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "benchmarks" / "results"
MERMAID = ROOT / ".cache" / "docs" / "mermaid" / "package" / "dist" / "mermaid.min.js"
COMMANDS_MARKER = "<!-- commands -->"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    if not MERMAID.is_file():
        raise PluginError(f"{MERMAID} is missing: build the site with `nox -s docs`.")
    files.append(File.generated(config, "javascripts/mermaid.min.js", abs_src_path=str(MERMAID)))
    for chart in sorted(CHARTS.glob("*.svg")):
        files.append(
            File.generated(config, f"assets/benchmarks/{chart.name}", abs_src_path=str(chart))
        )
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if COMMANDS_MARKER in markdown:
        markdown = markdown.replace(COMMANDS_MARKER, commands_reference())
    return markdown


def commands_reference() -> str:
    """Each command of the package: its help, then a table of its arguments."""
    _set_up_django()
    from django.core.management import load_command_class

    import django_q_cloudtasks.management.commands as package

    sections = []
    for module in pkgutil.iter_modules(package.__path__):
        command = load_command_class("django_q_cloudtasks", module.name)
        parser = command.create_parser("manage.py", module.name)
        own = [action for action in parser._actions if action.dest not in DJANGOS_OWN]
        usage = " ".join(["python manage.py", module.name, *map(_usage, own)])
        rows = [
            f"| {_names(action)} | {_cell(action.help or '')} | {_default(action)} |"
            for action in own
        ]
        table = ["| Argument | Meaning | Default |", "| --- | --- | --- |", *rows] if rows else []
        sections.append(
            "\n".join(
                [
                    f"## {module.name}",
                    "",
                    f"`{usage}`",
                    "",
                    _cell(command.help),
                    "",
                    *table,
                    "",
                ]
            )
        )
    return "\n".join(sections)


# The options every Django command has, which Django's documentation describes.
DJANGOS_OWN = {"help", "version", "verbosity", "settings", "pythonpath", "traceback"}
DJANGOS_OWN |= {"no_color", "force_color", "skip_checks"}


def _names(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest.upper()}`"
    value = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
    return ", ".join(f"`{name}{value}`" for name in action.option_strings)


def _usage(action: argparse.Action) -> str:
    name = _names(action).split(", ")[-1].strip("`")
    shown = name if action.required or not action.option_strings else f"[{name}]"
    if action.nargs in ("*", "?"):
        shown = f"[{name} ...]" if action.nargs == "*" else f"[{name}]"
    elif action.nargs == "+":
        shown = f"{name} [{name} ...]"
    return shown


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS):
        return ""
    return f"`{action.default}`"


def _cell(text: str) -> str:
    """Help text as a table cell: one line, its own markup escaped, and `|` and `[` written
    out (a table's column, a Markdown link)."""
    return (
        html.escape(" ".join(text.split()), quote=False)
        .replace("|", "&#124;")
        .replace("[", "&#91;")
    )


def _set_up_django() -> None:
    """The least a project needs for the commands to build their parsers: no database is
    opened and no Google API is called."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django_q", "django_q_cloudtasks"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            SECRET_KEY="docs",
            Q_CLUSTER={
                "name": "docs",
                "broker_class": "django_q_cloudtasks.CloudTasksBroker",
                "timeout": 60,
                "retry": 120,
                "cloud_tasks": {"emulator_host": "127.0.0.1:8123"},
            },
        )
        django.setup()
    importlib.import_module("django_q_cloudtasks.management.commands")
