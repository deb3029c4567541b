"""Run django-q2 tasks on Google Cloud Tasks.

``CloudTasksBroker`` is imported on first access, so that importing this package (as
Django does for every app in INSTALLED_APPS) reads no settings and loads no API client.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["CloudTasksBroker"]

if TYPE_CHECKING:
    from .broker import CloudTasksBroker


def __getattr__(name: str) -> Any:
    if name == "CloudTasksBroker":
        from .broker import CloudTasksBroker

        return CloudTasksBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
