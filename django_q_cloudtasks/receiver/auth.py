"""Who may call the receiver: requests carrying a Google-signed OIDC ID token, and, on
App Engine, the tasks App Engine routes to it.

Cloud Tasks signs each request as the task's service account. The token is checked with
google-auth (signature, expiry, audience), then against the configured issuers and
e-mails.

An App Engine task carries no token. App Engine removes ``X-AppEngine-*`` headers from
every request that comes from outside the app (but for its signed-in administrators), so
in an App Engine instance a request naming a queue in ``X-AppEngine-QueueName``, and a
task in ``X-AppEngine-TaskName``, came from Cloud Tasks. Whether this process is such an
instance comes from its environment, which App Engine's runtime sets and no request can
(``environment.on_app_engine``); anywhere else, and at the tick, the headers count for
nothing. The body's own django-q signature is checked after, as for any delivery, and
the task must be of a cluster that sends its tasks to that queue. Certificates are cached for as long as their Cache-Control allows, so a
request costs no network call; an unknown key id triggers one early refresh, which is
how key rotation is picked up. A document is replaced only by a newer one fetched
successfully: while Google's endpoint cannot be reached, the last one keeps serving, so
that no caller, least of all one sending made-up key ids, can leave the receiver
without certificates.

What a caller sent never reaches a log line or an answer as it came: refusals carry a
fixed reason, and any detail of the token only escaped and cut short.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

from ..conf import QUEUE_ID, ReceiverSettings
from ..exceptions import AuthenticationFailed, CertificatesUnavailable

logger = logging.getLogger("django_q_cloudtasks")

MAX_TOKEN_LENGTH = 16 * 1024
DEFAULT_CERTS_TTL = 300.0
MAX_CERTS_TTL = 24 * 3600.0
# An unknown key id refreshes the certificates, at most this often.
MIN_REFRESH_INTERVAL = 30.0
# After a failed fetch, the stale document serves (or the failure is reported) this long
# before the endpoint is asked again.
FAILURE_MEMORY = 10.0
# Verified tokens remembered (VerifiedTokens): a few per service account and audience.
VERIFIED_TOKENS = 256


@dataclass
class _Response:
    """What google-auth reads of a transport response."""

    status: int
    data: bytes
    headers: dict[str, str]


class CachedCertificates:
    """A google-auth transport for certificate documents, caching each URL's answer.

    A document expires after its max-age; then, or when a key id is unknown, it is
    fetched again. A failed fetch keeps the last good document in use (a stale one serves
    better than none) and is remembered for ``FAILURE_MEMORY`` seconds.
    """

    def __init__(self) -> None:
        self._documents: dict[str, _Document] = {}
        self._failed_at: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> _Response:
        document = self._documents.get(url)
        if document and document.fresh:
            return document.response
        # While one thread fetches, the others go on with the stale document, if any.
        if not self._lock.acquire(blocking=document is None):
            assert document is not None
            return document.response
        try:
            document = self._documents.get(url)
            if document and document.fresh:
                return document.response
            return self._fetch(url, stale=document)
        finally:
            self._lock.release()

    def current(self, url: str) -> _Response | None:
        """The document cached for ``url`` while it is fresh, else None."""
        document = self._documents.get(url)
        return document.response if document and document.fresh else None

    def refresh(self, url: str) -> bool:
        """Fetch the document again, unless it was fetched moments ago or another thread is
        fetching it; True if a new document came. The one cached stays until another
        replaces it."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            document = self._documents.get(url)
            if document and time.monotonic() - document.fetched_at < MIN_REFRESH_INTERVAL:
                return False
            with contextlib.suppress(CertificatesUnavailable):
                self._fetch(url, stale=document)
            return self._documents.get(url) is not document
        finally:
            self._lock.release()

    def clear(self) -> None:
        self._documents.clear()
        self._failed_at.clear()

    def _fetch(self, url: str, *, stale: _Document | None) -> _Response:
        """Fetch ``url`` (the lock held); on failure, the stale document if there is one."""
        failed_at = self._failed_at.get(url)
        if failed_at is None or time.monotonic() - failed_at >= FAILURE_MEMORY:
            try:
                response = _download(url)
            except CertificatesUnavailable as error:
                failure: CertificatesUnavailable = error
            else:
                if response.status == 200 and _is_object(response.data):
                    self._failed_at.pop(url, None)
                    self._documents[url] = _Document(response)
                    return response
                failure = CertificatesUnavailable(
                    f"{url} answered {response.status}"
                    + (", not with a JSON object." if response.status == 200 else ".")
                )
            self._failed_at[url] = time.monotonic()
            logger.warning(
                "Could not fetch the token certificates: %s%s",
                failure,
                " The ones fetched before keep serving." if stale else "",
            )
        else:
            failure = CertificatesUnavailable(f"Fetching {url} failed moments ago.")
        if stale is not None:
            return stale.response
        raise failure


@dataclass
class _Document:
    """A certificate document as fetched, fresh for its max-age."""

    response: _Response
    fetched_at: float = field(default_factory=time.monotonic)
    expires_at: float = field(init=False)

    def __post_init__(self) -> None:
        self.expires_at = self.fetched_at + _max_age(self.response.headers)

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at


def _is_object(data: bytes) -> bool:
    """Whether a document could be certificates: ``{key id: PEM}`` (a captive portal or a
    proxy's error page answers 200 too)."""
    try:
        return isinstance(json.loads(data), dict)
    except ValueError:
        return False


def _download(url: str) -> _Response:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return _Response(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return _Response(error.code, b"", {})
    except (OSError, ValueError) as error:
        raise CertificatesUnavailable(f"Could not fetch {url}: {error}") from error


certificates = CachedCertificates()


class VerifiedTokens:
    """The claims of tokens whose signature was checked, while they are valid: a caller
    that sends the same token with many requests, as Google's token sources do while it
    is fresh, pays for one signature check instead of one a request.

    A token is taken from here only until it expires, and only while the certificate
    document that verified it is still the one cached: new certificates mean a new check.
    """

    def __init__(self, size: int = VERIFIED_TOKENS) -> None:
        self.size = size
        self._claims: OrderedDict[tuple[Any, ...], tuple[dict[str, Any], _Response]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], certs_url: str, clock_skew: int) -> dict[str, Any] | None:
        with self._lock:
            entry = self._claims.get(key)
        if entry is None:
            return None
        claims, document = entry
        expires = claims.get("exp")
        if (
            certificates.current(certs_url) is not document
            or not isinstance(expires, int | float)
            or time.time() > expires + clock_skew
        ):
            with self._lock:
                self._claims.pop(key, None)
            return None
        return claims

    def put(self, key: tuple[Any, ...], certs_url: str, claims: dict[str, Any]) -> None:
        document = certificates.current(certs_url)
        if document is None:  # not cached: nothing to tie the claims to
            return
        with self._lock:
            self._claims[key] = (claims, document)
            while len(self._claims) > self.size:
                self._claims.popitem(last=False)


verified_tokens = VerifiedTokens()


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as far as the receiver can tell."""

    claims: dict[str, Any] | None = None  # the verified token's claims
    # The queue of an App Engine task, which App Engine vouches for: the task delivered
    # must be of a cluster that sends its tasks there (``delivery.take_task``).
    app_engine_queue: str | None = None


def authenticate(
    request: HttpRequest, settings: ReceiverSettings, *, app_engine_tasks: bool = False
) -> Caller:
    """Who called: a verified token's claims; on App Engine, for an endpoint App Engine tasks
    call (``app_engine_tasks``), an App Engine task's queue; nothing when verification is
    off. Raises AuthenticationFailed."""
    if app_engine_tasks and settings.on_app_engine:
        queue = _app_engine_queue(request)
        if queue is not None:
            return Caller(app_engine_queue=queue)
    if not settings.verify_token:
        return Caller()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("No bearer token.")
    if len(token) > MAX_TOKEN_LENGTH:
        raise AuthenticationFailed("Token too long.")
    claims = _verify(token.strip(), settings)
    if claims.get("iss") not in settings.issuers:
        raise AuthenticationFailed("The token's issuer is not accepted.", detail=claims.get("iss"))
    if claims.get("email") not in settings.allowed_emails:
        raise AuthenticationFailed(
            "The token's e-mail may not call the receiver.", 403, detail=claims.get("email")
        )
    if claims.get("email_verified") is not True:
        raise AuthenticationFailed(
            "The token's e-mail is not verified.", 403, detail=claims.get("email")
        )
    return Caller(claims=claims)


def _app_engine_queue(request: HttpRequest) -> str | None:
    """The queue of a task as App Engine delivers it (see the module's docstring), or None:
    only asked on App Engine, where no outside request keeps these headers."""
    queue = request.headers.get("X-AppEngine-QueueName", "")
    if QUEUE_ID.fullmatch(queue) and request.headers.get("X-AppEngine-TaskName"):
        return queue
    return None


def _verify(token: str, settings: ReceiverSettings) -> dict[str, Any]:
    key = (token, settings.audiences)
    claims = verified_tokens.get(key, settings.certs_url, settings.clock_skew)
    if claims is None:
        claims = _verify_signature(token, settings)
        verified_tokens.put(key, settings.certs_url, claims)
    return claims


def _verify_signature(token: str, settings: ReceiverSettings) -> dict[str, Any]:
    try:
        return _decode(token, settings)
    except _UnknownKey:
        # Google rotated its keys since the certificates were cached: fetch them once more.
        if not certificates.refresh(settings.certs_url):
            raise
    return _decode(token, settings)


class _UnknownKey(AuthenticationFailed):
    pass


def _decode(token: str, settings: ReceiverSettings) -> dict[str, Any]:
    # 0.19 s at import: paid at the first token a process checks, not at its start.
    from google.auth import exceptions
    from google.oauth2 import id_token

    try:
        claims = id_token.verify_token(
            token,
            certificates,  # type: ignore[arg-type]  # google-auth only calls its transport
            audience=list(settings.audiences),
            certs_url=settings.certs_url,
            clock_skew_in_seconds=settings.clock_skew,
        )
    except exceptions.TransportError as error:
        raise CertificatesUnavailable(str(error)) from error
    except CertificatesUnavailable:
        raise
    except Exception as error:  # a hostile token can break the parser in many ways
        if "Certificate for key id" in str(error):
            raise _UnknownKey("Invalid token: its key id is unknown.", detail=error) from error
        raise AuthenticationFailed("Invalid token.", detail=error) from error
    if not isinstance(claims, dict):
        raise AuthenticationFailed("Invalid token: its payload is not an object.")
    return claims


def _max_age(headers: dict[str, str]) -> float:
    cache_control = {k.lower(): v for k, v in headers.items()}.get("cache-control", "")
    match = re.search(r"max-age=(\d+)", cache_control)
    return min(float(match.group(1)), MAX_CERTS_TTL) if match else DEFAULT_CERTS_TTL
