"""What Cloud Scheduler does in production: call the tick endpoint on the clock.

The call carries an ID token from the emulator's identity, so the endpoint checks it
exactly as it checks a delivery.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request

from .identity import Identity

logger = logging.getLogger("django_q_cloudtasks.emulator")

TICK_TIMEOUT = 60.0


class Ticker:
    """POSTs to ``url`` every ``every`` seconds, at multiples of it on the clock (as cron
    does, at second 0 of each minute for 60), from a thread of its own."""

    def __init__(
        self, identity: Identity, url: str, *, audience: str, email: str, every: float
    ) -> None:
        self.identity = identity
        self.url = url
        self.audience = audience
        self.email = email
        self.every = every
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="emulator-ticker", daemon=True)

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=TICK_TIMEOUT + 1)

    def call(self) -> int | None:
        """One tick; the HTTP status, or None when the server could not be reached."""
        request = urllib.request.Request(
            self.url,
            data=b"",
            method="POST",
            headers={
                "Authorization": f"Bearer {self.identity.token(self.email, self.audience)}",
                "User-Agent": "Google-Cloud-Scheduler",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TICK_TIMEOUT) as response:
                status: int = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except (urllib.error.URLError, OSError) as error:
            logger.warning("Tick %s: not reached (%s)", self.url, error)
            return None
        log = logger.info if 200 <= status < 300 else logger.warning
        log("Tick %s -> %s", self.url, status)
        return status

    def _run(self) -> None:
        while not self._stopped.wait(self.every - time.time() % self.every):
            self.call()
