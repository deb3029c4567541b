"""Random bodies and header sets against the receiver's endpoints, with and without a
valid token: never a 5xx, never a task run, never an unpickle of a body this project did
not sign.

Bodies are random bytes, or a signed package of a real task cut, flipped and spliced;
headers add random Cloud Tasks headers and content types. Every pickle the receiver
would unpickle goes through django-q's PickleSerializer, which the test watches.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django_q.models import Task
from django_q.signing import PickleSerializer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from django_q_cloudtasks.models import Receipt
from django_q_cloudtasks.wire import PACKAGE_CONTENT_TYPE, REFERENCE_CONTENT_TYPE
from tests.support.packages import make_task, sign
from tests.support.tokens import SigningKey

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXAMPLES = 10_000
TRACE = Path("/nonexistent-dir/fuzz-trace")  # a task that ran would leave a Failure row
PACKAGE = sign(make_task("tests.project.tasks.append", str(TRACE), "x"))


@st.composite
def mangled_packages(draw: st.DrawFn) -> bytes:
    """A real signed package, cut, with bytes flipped or inserted: never the package itself."""
    body = bytearray(PACKAGE)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(body) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if action == "flip":
            body[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del body[position : position + draw(st.integers(1, 16))]
        elif action == "insert":
            body[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            del body[position:]
        if not body:
            break
    assume(body != PACKAGE)  # a cut that undid an insert: the real, signed package again
    return bytes(body)


bodies = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=512).map(str.encode),
    mangled_packages(),
    st.builds(lambda a, b: a + b":" + b, st.binary(max_size=64), st.binary(max_size=64)),
)
header_values = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\r\n"), max_size=64
)
cloud_tasks_headers = st.dictionaries(
    st.sampled_from(
        [
            "X-CloudTasks-TaskRetryCount",
            "X-CloudTasks-TaskExecutionCount",
            "X-CloudTasks-TaskName",
            "X-CloudTasks-QueueName",
            "X-CloudTasks-TaskETA",
            "X-CloudTasks-TaskPreviousResponse",
        ]
    ),
    st.one_of(header_values, st.integers(-(2**70), 2**70).map(str)),
)


@pytest.fixture
def unpickled(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every pickle django-q's serializer is handed; the fuzzed task package is never run."""
    seen: list[bytes] = []
    real_loads = PickleSerializer.loads

    def watched(data: bytes) -> Any:
        seen.append(data)
        return real_loads(data)

    monkeypatch.setattr(PickleSerializer, "loads", staticmethod(watched))
    return seen


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of refusals, each logged: keep them out of the test report."""
    monkeypatch.setattr(logging.getLogger("django_q_cloudtasks"), "disabled", True)
    monkeypatch.setattr(logging.getLogger("django.request"), "disabled", True)


def test_random_deliveries_never_fail_run_or_unpickle(
    client: Client, signing_key: SigningKey, verifying: Any, unpickled: list[bytes], quiet: None
) -> None:
    tokens = {
        "none": None,
        "valid": signing_key.token(),
        "wrong audience": signing_key.token(aud="https://evil.example.com"),
        "another key": SigningKey.generate(signing_key.kid).token(),
    }
    statuses: dict[int, int] = {}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        path=st.sampled_from(["/_tasks/", "/_tasks/schedule/"]),
        # A valid token in about half the examples: those bodies get read.
        token=st.one_of(st.just("valid"), st.sampled_from(list(tokens)), header_values),
        body=bodies,
        content_type=st.one_of(
            st.sampled_from([PACKAGE_CONTENT_TYPE, REFERENCE_CONTENT_TYPE, "application/json"]),
            header_values,
        ),
        headers=cloud_tasks_headers,
    )
    def deliver(
        path: str, token: str, body: bytes, content_type: str, headers: dict[str, str]
    ) -> None:
        bearer = tokens.get(token, token)
        if bearer is not None:
            headers = {**headers, "Authorization": f"Bearer {bearer}"}
        response = client.post(path, data=body, content_type=content_type, headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (response.status_code, response.content)

    deliver()
    print("answers:", dict(sorted(statuses.items())))
    assert sum(statuses.values()) >= EXAMPLES
    assert statuses.get(200, 0) > 0  # bodies were read: rejected
    assert statuses.get(401, 0) > 0  # tokens were refused
    assert unpickled == []
    assert not Task.objects.exists()
    assert not Receipt.objects.exists()
