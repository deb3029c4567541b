"""Benchmarks: CloudTasksBroker with its receiver against django-q2's qcluster, on this
machine, in one run. ``nox -s bench`` runs them; ``python -m benchmarks --help`` lists the
options. See ``harness.py`` for what is measured and how."""
