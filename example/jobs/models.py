from django.db import models


class Counter(models.Model):
    """How often something happened; the flaky task counts its own attempts here."""

    key = models.CharField(max_length=100, unique=True)
    value = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}: {self.value}"


class Notification(models.Model):
    """Written by the hook that runs after a task finishes."""

    task_id = models.CharField(max_length=32)
    message = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.message
