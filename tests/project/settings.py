"""Settings of the project the tests run, in-process and as a live server.

Environment:
  DJQ_TEST_DB        sqlite (default) or postgres (127.0.0.1:5432, trust auth)
  DJQ_DB_NAME        the database a live server uses: the test database of the test run
  DJQ_DB_PORT        PostgreSQL's port for a live server (a test's proxy in front of it)
  DJQ_SECRET_KEY, DJQ_SECRET_KEY_FALLBACKS (comma-separated): a live server's keys
  DJQ_RECEIVER_URL   where Cloud Tasks delivers: the live server's receiver URL
  DJQ_VERIFY_TOKEN   0 for an emulator that sends no ID tokens (the third-party one)
  DJQ_LOG_FORMAT     json: the package's log lines as Cloud Logging's structured JSON
  CLOUD_TASKS_EMULATOR_HOST  read by the package itself: emulator mode
  DJQ_CACHE_URL      a Redis URL (redis://HOST:PORT/DB): the cache is Redis, shared by the
                     live servers and the tests (qinfo, qmonitor); else LocMemCache
  DJQ_CACHE_PREFIX   the cache's KEY_PREFIX with DJQ_CACHE_URL: one per test run sharing a Redis
  DJQ_JOB_CLUSTER    1: the cluster "long" runs its tasks in the Cloud Run job "tests-worker"
  DJQ_APP_ENGINE_CLUSTER  1: the cluster "worker" sends its tasks inside App Engine
  DJQ_SHARDS         the queues the main cluster "tests" spreads its tasks over (default 1)
  DJQ_QUEUE_OPTIONS  JSON: the queue_options of every cluster's queue
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = os.environ.get("DJQ_SECRET_KEY", "tests-only-secret-key-do-not-use-elsewhere")
SECRET_KEY_FALLBACKS = [
    key for key in os.environ.get("DJQ_SECRET_KEY_FALLBACKS", "").split(",") if key
]
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "django_q_cloudtasks",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
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
STATIC_URL = "static/"

if os.environ.get("DJQ_TEST_DB", "sqlite") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("DJQ_DB_NAME", "test"),
            "HOST": "127.0.0.1",
            "PORT": int(os.environ.get("DJQ_DB_PORT", 5432)),
            "USER": os.environ.get("PGUSER", "postgres"),
            "ATOMIC_REQUESTS": True,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("DJQ_DB_NAME", str(BASE_DIR / "db.sqlite3")),
            "ATOMIC_REQUESTS": True,
            # Processes write at once (servers, jobs, the tests): a transaction takes the
            # write lock when it begins, so that two never deadlock upgrading to it.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
            # A file, not memory: the live server the end-to-end tests start shares it.
            "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"djq-tests-{os.getpid()}.sqlite3")},
        }
    }

if os.environ.get("DJQ_CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["DJQ_CACHE_URL"],
            "KEY_PREFIX": os.environ.get("DJQ_CACHE_PREFIX", ""),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

Q_CLUSTER: dict[str, Any] = {
    "name": "tests",
    "broker_class": "django_q_cloudtasks.CloudTasksBroker",
    "timeout": 20,
    "max_attempts": 3,
    "save_limit": 0,  # keep every result: the tests count them
    "cloud_tasks": {
        "project": "test-project",
        "location": "europe-west1",
        "url": os.environ.get("DJQ_RECEIVER_URL", "https://tasks.example.com/_tasks/"),
        "service_account_email": "tasks@test-project.iam.gserviceaccount.com",
        "enqueue_timeout": 10,
        "shards": int(os.environ.get("DJQ_SHARDS", "1")),
        **({"verify_token": False} if os.environ.get("DJQ_VERIFY_TOKEN") == "0" else {}),
        **(
            {"queue_options": json.loads(os.environ["DJQ_QUEUE_OPTIONS"])}
            if os.environ.get("DJQ_QUEUE_OPTIONS")
            else {}
        ),
    },
    "ALT_CLUSTERS": {
        "second": {"timeout": 10, "max_attempts": 2, "cloud_tasks": {"queue": "second-queue"}},
    },
}
# A job cluster: each of its tasks runs in an execution of a Cloud Run job.
JOB_CLUSTER = {
    "timeout": 7200,
    "max_attempts": 2,
    "cloud_tasks": {"target": "cloud_run_job", "job": "tests-worker", "queue": "long-queue"},
}
if os.environ.get("DJQ_JOB_CLUSTER") == "1":
    Q_CLUSTER["ALT_CLUSTERS"]["long"] = JOB_CLUSTER
# An App Engine cluster: its tasks go to the service "worker", which scales basically.
APP_ENGINE_CLUSTER = {
    "timeout": 7200,
    "max_attempts": 2,
    "cloud_tasks": {
        "target": "app_engine",
        "service": "worker",
        "scaling": "basic",
        "queue": "worker-queue",
    },
}
if os.environ.get("DJQ_APP_ENGINE_CLUSTER") == "1":
    Q_CLUSTER["ALT_CLUSTERS"]["worker"] = APP_ENGINE_CLUSTER

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,  # gunicorn's access log, in the live servers
    "formatters": {"cloud": {"()": "django_q_cloudtasks.cloud_logging.CloudLoggingFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            **({"formatter": "cloud"} if os.environ.get("DJQ_LOG_FORMAT") == "json" else {}),
        }
    },
    "loggers": {"django_q_cloudtasks": {"handlers": ["console"], "level": "INFO"}},
}
