"""Fixtures the command tests share with the tests of the modules behind them."""

from tests.gcp.test_provisioning import cloud_tasks

__all__ = ["cloud_tasks"]
