"""Where the app runs: what Cloud Run, App Engine and the metadata server tell about it.

Used only to fill in settings the user left out. Off Google Cloud nothing here makes a
network call, so ``manage.py check`` on a laptop stays fast.
"""

import functools
import os
import urllib.error
import urllib.request

METADATA_TIMEOUT_SECONDS = 2.0


# Set on Cloud Run (a service; a job's execution), on App Engine, or by hand.
GOOGLE_CLOUD_MARKERS = ("K_SERVICE", "CLOUD_RUN_JOB", "GAE_SERVICE", "GCE_METADATA_HOST")


# What App Engine's runtime sets, in both environments (standard adds GAE_ENV=standard).
APP_ENGINE_MARKERS = ("GAE_SERVICE", "GAE_VERSION", "GAE_INSTANCE")
# What Cloud Run sets in a service and in a job's execution.
CLOUD_RUN_MARKERS = ("K_SERVICE", "CLOUD_RUN_JOB")


def on_app_engine() -> bool:
    """True in an App Engine instance: App Engine's runtime sets its variables there, and
    Cloud Run's are not set. The process's environment, never a request, says so."""
    return all(os.environ.get(name) for name in APP_ENGINE_MARKERS) and not any(
        os.environ.get(name) for name in CLOUD_RUN_MARKERS
    )


def app_engine_environment() -> str | None:
    """``"standard"`` or ``"flexible"`` in an App Engine instance; None elsewhere."""
    if not on_app_engine():
        return None
    return "standard" if os.environ.get("GAE_ENV") == "standard" else "flexible"


def on_google_cloud() -> bool:
    """True on Cloud Run (a service, or a job's execution), on App Engine, or wherever a
    metadata server is named explicitly."""
    return any(os.environ.get(name) for name in GOOGLE_CLOUD_MARKERS)


@functools.cache
def metadata(path: str) -> str | None:
    """One value of the metadata server (``project/project-id``...), or None when unreachable."""
    if not on_google_cloud():
        return None
    host = os.environ.get("GCE_METADATA_HOST", "metadata.google.internal")
    request = urllib.request.Request(
        f"http://{host}/computeMetadata/v1/{path}", headers={"Metadata-Flavor": "Google"}
    )
    try:
        with urllib.request.urlopen(request, timeout=METADATA_TIMEOUT_SECONDS) as response:
            return str(response.read().decode().strip())
    except (OSError, urllib.error.URLError):
        return None


def detect_project() -> str | None:
    return (
        os.environ.get("GOOGLE_CLOUD_PROJECT")
        or os.environ.get("GCLOUD_PROJECT")
        or _app_engine_project()
        or metadata("project/project-id")
    )


def _app_engine_project() -> str | None:
    """The project of App Engine's application id, ``e~my-project`` (a region prefix)."""
    application = os.environ.get("GAE_APPLICATION", "")
    return application.split("~", 1)[-1] or None


def detect_location() -> str | None:
    region = metadata("instance/region")  # "projects/NUMBER/regions/REGION"
    return region.rsplit("/", 1)[-1] if region else None


def detect_service_url() -> str | None:
    """The HTTPS root of this Cloud Run service or App Engine app, without a path. A Cloud
    Run job has none: its executions are told the receiver's ``url``."""
    if service := os.environ.get("K_SERVICE"):
        number, region = metadata("project/numeric-project-id"), detect_location()
        if number and region:
            return f"https://{service}-{number}.{region}.run.app"
    elif service := os.environ.get("GAE_SERVICE"):
        project = detect_project()
        if project:
            prefix = "" if service == "default" else f"{service}-dot-"
            return f"https://{prefix}{project}.appspot.com"
    return None
