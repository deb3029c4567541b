from django.apps import AppConfig


class BenchmarkConfig(AppConfig):
    name = "benchmarks.project"
    label = "bench"
