"""The Django project every benchmarked system runs: the same tasks, models and database
settings, with only the broker changing (``BENCH_BROKER``)."""
