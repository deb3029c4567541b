"""Settings of the benchmark project, chosen by the environment:

  BENCH_BROKER   cloudtasks (CloudTasksBroker and its receiver), orm or redis (django-q2's
                 own brokers, run by qcluster)
  BENCH_DB       sqlite or postgres (127.0.0.1:5432, database BENCH_PG_NAME)
  BENCH_WORK     the folder for the SQLite file and the records the tasks write
  BENCH_WORKERS  qcluster's worker processes (the receiver's are gunicorn's -w)
  BENCH_RECEIVER_URL, CLOUD_TASKS_EMULATOR_HOST  where the emulator delivers, and is

Both sides get what a production set-up would have: DEBUG off, persistent database
connections, a Redis cache, every result kept (save_limit 0) so that results can be
counted.
"""

import os
from pathlib import Path

BROKER = os.environ.get("BENCH_BROKER", "cloudtasks")
DATABASE = os.environ.get("BENCH_DB", "sqlite")
WORK = Path(os.environ.get("BENCH_WORK", Path(__file__).resolve().parents[2] / ".cache" / "bench"))
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")

SECRET_KEY = "benchmark-only-insecure-key"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "benchmarks.project.urls"
WSGI_APPLICATION = "benchmarks.project.wsgi.application"

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_q",
    *(["django_q_cloudtasks"] if BROKER == "cloudtasks" else []),
    "benchmarks.project",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

if DATABASE == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("BENCH_PG_NAME", "djq_bench"),
            "HOST": "127.0.0.1",
            "PORT": 5432,
            "USER": os.environ.get("PGUSER", "postgres"),
            "CONN_MAX_AGE": 600,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(WORK / "bench.sqlite3"),
            "CONN_MAX_AGE": 600,
            # What Django's documentation suggests for SQLite with concurrent writers.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"{REDIS_URL}/12",
        "KEY_PREFIX": "djq-bench",
    }
}

Q_CLUSTER: dict = {
    "name": "bench",
    "timeout": 30,
    "retry": 60,
    "max_attempts": 1,
    "save_limit": 0,
    "workers": int(os.environ.get("BENCH_WORKERS", "2")),
}
if BROKER == "cloudtasks":
    Q_CLUSTER["broker_class"] = "django_q_cloudtasks.CloudTasksBroker"
    Q_CLUSTER["cloud_tasks"] = {
        "project": "bench-project",
        "location": "europe-west1",
        "url": os.environ.get("BENCH_RECEIVER_URL", "http://127.0.0.1:8000/_tasks/"),
    }
elif BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
elif BROKER == "redis":
    Q_CLUSTER["redis"] = f"{REDIS_URL}/11"
else:
    raise ValueError(f"BENCH_BROKER must be cloudtasks, orm or redis, not {BROKER!r}")

# As users run them: django-q's lines per task at INFO (its default), and the receiver's own.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_q_cloudtasks": {"handlers": ["console"], "level": "INFO"}},
}
