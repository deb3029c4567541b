"""Sessions: ``nox`` runs tests, lint and typecheck; ``nox -s tests`` the test matrix;
``nox -s slow`` the tests that take minutes (real schedule slots, a minute apart);
``nox -s demo`` the example's demo, checking that every demo task ends as it should;
``nox -s bench`` the benchmarks against qcluster (benchmarks/), writing their results;
``nox -s build`` the sdist and wheel, checked, and the wheel tried in a new virtualenv.
``bash tests/run`` is the quick way: the suite once, on SQLite, without nox.

The matrix runs for the interpreters this machine has, against SQLite and PostgreSQL
(127.0.0.1:5432, database ``test``, trust auth).
"""

import shutil
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.error_on_missing_interpreters = False
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
TEST_DEPENDENCIES = nox.project.dependency_groups(PYPROJECT, "test")
PACKAGE = ".[scheduler,jobs]"
# Most of the suite's time is spent waiting on servers and clocks: four at a time keep two
# cores busy.
PARALLEL = ["--numprocesses", "4"]

# (python, Django, django-q2, databases). The first entry runs the suite on both databases,
# and django-q2's own suite (tests/django_q_suite) with it; the others check the other
# versions on one database each, in turn, with the end-to-end tests of one delivery only
# (tests/e2e/test_delivery.py): what else the emulator and live servers show does not
# depend on these versions, and the whole run stays short. Django 6.x needs Python 3.12 or
# later.
MATRIX = [
    ("3.11", "5.2", "1.11.1", ("sqlite", "postgres")),  # the release of tests/django_q_suite
    ("3.11", "5.2", "1.8", ("postgres",)),
    ("3.12", "6.0", "1.11", ("sqlite",)),
    ("3.13", "6.1", "1.11", ("postgres",)),
]
DATABASES = ("sqlite", "postgres")


@nox.session
@nox.parametrize(
    ("python", "django", "django_q2", "databases"),
    MATRIX,
    ids=[f"py{py}-django{dj}-q{q}" for py, dj, q, _ in MATRIX],
)
def tests(session: nox.Session, django: str, django_q2: str, databases: tuple[str, ...]) -> None:
    session.install(PACKAGE, f"django~={django}.0", f"django-q2~={django_q2}.0", *TEST_DEPENDENCIES)
    first = (session.python, django, django_q2, databases) == MATRIX[0]
    if first:
        runs = [["-m", "not slow"]]
    else:
        runs = [
            ["-m", "not slow and not e2e", "--ignore", "tests/django_q_suite"],
            ["-m", "not slow", "tests/e2e/test_delivery.py"],
        ]
    for database in databases:
        for selection in runs:
            session.run(
                "pytest", *selection, *PARALLEL, *session.posargs, env={"DJQ_TEST_DB": database}
            )


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    """The slow tests, once, against each database; -rP shows what they measured. Tests in
    one xdist_group (the load test, the timed one) run one after the other."""
    session.install(PACKAGE, *TEST_DEPENDENCIES)
    for database in DATABASES:
        session.run(
            "pytest",
            "-m",
            "slow",
            "-rP",
            *PARALLEL,
            "--dist",
            "loadgroup",
            *session.posargs,
            env={"DJQ_TEST_DB": database},
        )


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff, and the GitHub Actions workflows against GitHub's schema (they run only there)."""
    session.install("ruff", "check-jsonschema")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    workflows = sorted(str(path) for path in Path(".github/workflows").glob("*.yml"))
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows)


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install(PACKAGE, "mypy", "django-stubs", "types-protobuf", *TEST_DEPENDENCIES)
    session.run("mypy")


@nox.session(python=False)
def demo(session: nox.Session) -> None:
    """The demo command of README.md and docs/how-to/example.md, without a prompt: fails
    unless every task ends as expected."""
    session.run("bash", "example/run", *(session.posargs or ["--check"]), external=True)


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """The benchmarks (benchmarks/): writes benchmarks/results/RESULTS.md and results.json.
    ``nox -s bench -- --quick`` checks that every step works, in a minute or two."""
    session.install(
        ".", "gunicorn", "psycopg[binary]", "redis", "psutil", "pyinstrument", "matplotlib"
    )
    session.run("python", "-m", "benchmarks", *session.posargs)


# Mermaid's script for the site's diagrams, from npm: the site then draws them with no CDN.
MERMAID = "mermaid@12.3.0"


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml, docs/) into site/, with --strict: a broken link,
    anchor or page fails it. Then tests/docs opens it in Chromium: the diagram and the
    charts must be drawn."""
    session.install(
        PACKAGE,
        "mkdocs~=1.6",
        "mkdocs-material~=9.8",
        "mkdocstrings[python]~=1.0",
        *TEST_DEPENDENCIES,
    )
    mermaid = Path(".cache/docs/mermaid")
    if not (mermaid / "package" / "dist" / "mermaid.min.js").is_file():
        mermaid.mkdir(parents=True, exist_ok=True)
        session.run(
            "npm", "pack", MERMAID, "--silent", "--pack-destination", str(mermaid), external=True
        )
        (tarball,) = mermaid.glob("mermaid-*.tgz")
        session.run(
            "tar",
            "xzf",
            str(tarball),
            "-C",
            str(mermaid),
            "package/dist/mermaid.min.js",
            "package/LICENSE",
            external=True,
        )
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})
    session.run("pytest", "tests/docs", "-p", "no:cacheprovider", env={"DJQ_SITE": "site"})


@nox.session(python="3.11")
def build(session: nox.Session) -> None:
    """The sdist and wheel into dist/, checked by twine; then the wheel alone in a new
    virtualenv, where the README's quick start runs (tests/test_quick_start.py)."""
    shutil.rmtree("dist", ignore_errors=True)
    session.install("build", "twine")
    session.run("python", "-m", "build")
    session.run("twine", "check", "--strict", *sorted(str(path) for path in Path("dist").iterdir()))
    (wheel,) = Path("dist").glob("*.whl")
    clean = Path(session.create_tmp()) / "installed"
    shutil.rmtree(clean, ignore_errors=True)
    session.run("python", "-m", "venv", str(clean))
    python = str(clean / "bin" / "python")
    session.run(python, "-m", "pip", "install", "-q", str(wheel), "pytest", external=True)
    session.run(python, "tests/support/wheel_contents.py", str(wheel), external=True)
    # Only pytest beside the wheel: not the suite's conftest, which needs the test group.
    session.run(
        python,
        "-m",
        "pytest",
        "--noconftest",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-W",
        "ignore::pytest.PytestConfigWarning",
        "tests/test_quick_start.py",
        external=True,
    )
