"""The package's layout: its imports point one way, and sit at the top of their modules.

Read from the source, not from what an import happens to load: each module's imports at its
top level (``if TYPE_CHECKING:`` blocks aside, which never run) make the edges of a graph
that must have no cycle. An import inside a function is allowed only with a comment saying
why (a startup cost, an optional dependency, Django's app registry), on its line or the
line above.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "django_q_cloudtasks"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name; migrations aside."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent).with_suffix("")
        if "migrations" in relative.parts:
            continue
        parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
        found[".".join(parts)] = path
    return found


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> Iterator[str]:
    """The package's modules an import statement names."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    yield target
    yield from (f"{target}.{alias.name}" for alias in node.names)


def top_level_imports(module: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    known = modules()
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = _imported(node, module, path.name == "__init__.py")
            found.update(name for name in names if name in known and name != module)
    return found


def graph() -> dict[str, set[str]]:
    return {module: top_level_imports(module, path) for module, path in modules().items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, each as the path that closes it."""
    found, state, stack = [], dict.fromkeys(edges, "new"), []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for imported in sorted(edges.get(module, ())):
            if state.get(imported) == "open":
                found.append([*stack[stack.index(imported) :], imported])
            elif state.get(imported) == "new":
                visit(imported)
        stack.pop()
        state[module] = "done"

    for module in sorted(edges):
        if state[module] == "new":
            visit(module)
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    """The control: the test above would see one."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_graph_sees_relative_imports_of_modules_and_packages():
    edges = graph()
    assert "django_q_cloudtasks.gcp.queue_admin" in edges["django_q_cloudtasks.broker"]
    assert "django_q_cloudtasks.wire" in edges["django_q_cloudtasks.gcp.queue_admin"]
    assert "django_q_cloudtasks.broker" in edges["django_q_cloudtasks.receiver.execution"]


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("django_q_cloudtasks.wire", "django_q_cloudtasks.broker"),
        ("django_q_cloudtasks.gcp", "django_q_cloudtasks.receiver"),
        ("django_q_cloudtasks.broker", "django_q_cloudtasks.receiver"),
        ("django_q_cloudtasks.emulator", "django_q_cloudtasks.gcp"),
    ],
)
def test_a_lower_layer_imports_nothing_of_a_higher_one(lower, upper):
    edges = graph()
    wrong = {
        (module, imported)
        for module, imports in edges.items()
        if module == lower or module.startswith(f"{lower}.")
        for imported in imports
        if imported == upper or imported.startswith(f"{upper}.")
    }
    assert wrong == set()


def imports_in_functions(path: Path) -> Iterator[tuple[int, str]]:
    """(line, source) of each import inside a function of ``path`` that no comment explains:
    on its line, on another line of the run of imports it stands in, or above that run."""
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import | ast.ImportFrom):
                first = last = inner.lineno - 1
                while first > 0 and lines[first - 1].strip().startswith(("from ", "import ")):
                    first -= 1
                while last + 1 < len(lines) and lines[last + 1].strip().startswith(
                    ("from ", "import ")
                ):
                    last += 1
                run = lines[max(first - 1, 0) : last + 1]
                if not any("#" in line for line in run):
                    yield inner.lineno, lines[inner.lineno - 1].strip()


def test_every_import_inside_a_function_says_why():
    unexplained = {
        f"{path.relative_to(ROOT.parent)}:{line}": source
        for path in modules().values()
        for line, source in imports_in_functions(path)
    }
    assert unexplained == {}


def test_an_unexplained_import_inside_a_function_is_found(tmp_path):
    """The control: the test above would see one."""
    module = tmp_path / "module.py"
    module.write_text(
        "def quiet():\n"
        "    # Django's app registry: models load after the apps\n"
        "    from django.apps import apps\n"
        "\n"
        "\n"
        "def loud():\n"
        "    x = 1\n"
        "    import json\n"
    )
    assert list(imports_in_functions(module)) == [(8, "import json")]
