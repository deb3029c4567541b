"""A local Cloud Tasks for development and tests: ``python manage.py cloudtasks_emulator``.

It speaks the real gRPC API (v2, and v2beta3 for queue statistics), delivers tasks as real
HTTP requests with Cloud Tasks' headers, retries and rate limits, and signs OIDC tokens
that the receiver verifies as in production. Modules, in the order data flows:

* ``service``: the gRPC API, translating messages to and from the store's records;
* ``state``: queues and tasks, the rules the real service enforces, and its errors;
* ``journal``: the optional state file that survives restarts;
* ``dispatcher``: the HTTP deliveries, retries and rate limits;
* ``identity``: the signing key, ID tokens and the certificates endpoint;
* ``server``: all of the above as one :class:`Emulator`.
"""

from .server import Emulator

__all__ = ["Emulator"]
