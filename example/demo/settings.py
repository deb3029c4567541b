"""Settings of the example project.

Locally it talks to the built-in emulator at 127.0.0.1:8123 and delivers to
127.0.0.1:8000. On Cloud Run, the project, region and service URL are detected; the
environment names the queue's service account; tasks of the cluster "long" run in the
Cloud Run job "demo-worker" (locally, the emulator runs it). On App Engine (app.yaml,
worker.yaml) every task goes inside App Engine: the cluster "demo"'s to the default
service, the cluster "long"'s to the service "worker", which scales basically and lets a
task run for 24 hours.
"""

import os
from pathlib import Path

from django_q_cloudtasks.environment import on_app_engine

BASE_DIR = Path(__file__).resolve().parent.parent
# The service sets K_SERVICE; its worker job (same image and settings) CLOUD_RUN_JOB.
ON_CLOUD_RUN = "K_SERVICE" in os.environ or "CLOUD_RUN_JOB" in os.environ
ON_APP_ENGINE = on_app_engine()  # as the receiver decides it (GAE_SERVICE, ...)
ON_GOOGLE_CLOUD = ON_CLOUD_RUN or ON_APP_ENGINE

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key")
DEBUG = not ON_GOOGLE_CLOUD
ALLOWED_HOSTS = ["*"] if ON_GOOGLE_CLOUD else ["127.0.0.1", "localhost"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "django_q_cloudtasks",
    "jobs",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "demo.urls"
WSGI_APPLICATION = "demo.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# SQLite by default. On Cloud Run, point DATABASE_* at Cloud SQL (PostgreSQL) so that
# every instance sees the same results.
if os.environ.get("DATABASE_NAME"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["DATABASE_NAME"],
            "HOST": os.environ.get("DATABASE_HOST", ""),
            "USER": os.environ.get("DATABASE_USER", ""),
            "PASSWORD": os.environ.get("DATABASE_PASSWORD", ""),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DATABASE_FILE", str(BASE_DIR / "db.sqlite3")),
            # Processes write at once (servers, jobs, the tests): a transaction takes the
            # write lock when it begins, so that two never deadlock upgrading to it.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

Q_CLUSTER = {
    "name": "demo",
    "broker_class": "django_q_cloudtasks.CloudTasksBroker",
    "timeout": 30,
    "max_attempts": 3,
    "cloud_tasks": {
        # On Cloud Run these are detected; set them to override.
        "project": os.environ.get("CLOUD_TASKS_PROJECT"),
        "location": os.environ.get("CLOUD_TASKS_LOCATION"),
        "url": os.environ.get("RECEIVER_URL"),
        "service_account_email": os.environ.get("CLOUD_TASKS_SERVICE_ACCOUNT"),
    },
    "ALT_CLUSTERS": {
        # Work longer than a request may last: each task in an execution of a Cloud Run job.
        "long": {
            "timeout": 3600,
            "max_attempts": 2,
            "cloud_tasks": {
                "target": "cloud_run_job",
                "job": os.environ.get("CLOUD_TASKS_JOB", "demo-worker"),
                "queue_options": {"retry_config": {"min_backoff": 1, "max_backoff": 60}},
            },
        },
    },
}
if ON_APP_ENGINE:
    # Inside App Engine: no URL, no token; the long work goes to the worker service.
    Q_CLUSTER["cloud_tasks"].update(target="app_engine", service="default")
    Q_CLUSTER["ALT_CLUSTERS"]["long"]["cloud_tasks"] = {
        "target": "app_engine",
        "service": "worker",
        "scaling": "basic",
        "queue_options": {"retry_config": {"min_backoff": 1, "max_backoff": 60}},
    }
if not ON_GOOGLE_CLOUD:
    # Local development: the built-in emulator (python manage.py cloudtasks_emulator).
    os.environ.setdefault("CLOUD_TASKS_EMULATOR_HOST", "127.0.0.1:8123")
    Q_CLUSTER["cloud_tasks"]["url"] = os.environ.get(
        "RECEIVER_URL", "http://127.0.0.1:8000/_tasks/"
    )

# django-q's cache: cached results, async_iter and the receiver rows of qinfo/qmonitor.
# Every instance must share it; the database does (python manage.py createcachetable).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache"}
}

# On Cloud Run, one JSON object per line: Cloud Logging indexes the fields of each task.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"cloud": {"()": "django_q_cloudtasks.cloud_logging.CloudLoggingFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            **({"formatter": "cloud"} if ON_GOOGLE_CLOUD else {}),
        }
    },
    "loggers": {"django_q_cloudtasks": {"handlers": ["console"], "level": "INFO"}},
}
