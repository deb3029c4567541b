"""A process dying at a chosen line, for tests of what survives it."""

from __future__ import annotations

from typing import Any

import pytest

from django_q_cloudtasks import scheduling


class Killed(BaseException):
    """The process dies here: nothing after this line runs, the transaction is lost."""


def fire_killed_before_commit(slot: scheduling.Slot) -> None:
    """``scheduling.fire(slot)``, dying after the slot's task was enqueued and before the
    schedule was moved on and the transaction committed."""

    def die(*args: Any) -> bool:
        raise Killed

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(scheduling, "_move_on", die)
        with pytest.raises(Killed):
            scheduling.fire(slot)
