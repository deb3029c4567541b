from django.db import models


class Row(models.Model):
    """What the row-writing task writes: one per run."""

    number = models.IntegerField()
    written = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Row {self.number}"
