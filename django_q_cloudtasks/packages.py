"""django-q's signed task packages, read back: by the receiver before it runs a task, and
by the admin and the monitor to name the tasks waiting in a queue.

A package is verified before it is unpickled: a body that fails the signature is never
unpickled. A signed package that names code this process cannot import is not bad, only
early for this revision: :class:`CodeMissing` tells it apart.
"""

from __future__ import annotations

from typing import Any

# The content type of a Cloud Task that carries a signed package itself.
CONTENT_TYPE = "application/vnd.django-q.package"
REQUIRED_KEYS = ("id", "name", "func", "args", "kwargs")


class BadPackage(Exception):
    """The body is not a django-q package signed with this project's key."""


class CodeMissing(Exception):
    """A package signed with this project's key names a module or class this revision of
    the code lacks: one enqueued by a newer revision, during a rollout or a traffic split."""


def decode(body: bytes) -> dict[str, Any]:
    """Verify the signature, then unpickle.

    django-q signs with its ``Conf.SECRET_KEY`` (``SECRET_KEY`` as the process started) only;
    packages signed before a key rotation are accepted when the old key is in
    ``SECRET_KEY_FALLBACKS``, as Django's own signing does.
    """
    from django.conf import settings
    from django.core import signing
    from django_q.conf import Conf
    from django_q.signing import PickleSerializer

    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise BadPackage("The body is not a signed django-q package.") from None
    fallback_keys: list[str | bytes] = list(settings.SECRET_KEY_FALLBACKS)
    try:
        task = signing.loads(
            text,
            key=Conf.SECRET_KEY,
            fallback_keys=fallback_keys,
            salt=Conf.PREFIX,
            serializer=PickleSerializer,
        )
    except signing.BadSignature:
        raise BadPackage(
            "The body's signature matches neither SECRET_KEY nor SECRET_KEY_FALLBACKS: it was "
            "not enqueued by this project, or the key changed since and the old one is not "
            "in SECRET_KEY_FALLBACKS."
        ) from None
    except (ImportError, AttributeError) as error:  # unpickling found no such module or class
        raise CodeMissing(
            f"A signed package names code this revision lacks: {error!r}. It was enqueued by "
            "another revision of the code (a rollout, a traffic split)."
        ) from error
    except Exception as error:  # signed by us, yet unreadable: a bug, not an attack
        raise BadPackage(f"A signed package could not be read: {error!r}") from error
    if not isinstance(task, dict) or not all(key in task for key in REQUIRED_KEYS):
        raise BadPackage("The signed body is not a django-q task package.")
    return task


def func_name(task: dict[str, Any]) -> str:
    """The task's function as a dotted path: django-q keeps either the path or the callable."""
    func = task.get("func")
    if isinstance(func, str):
        return func
    module, name = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(func)
