"""The API clients: one per process and API, made on first use; an emulator's reached again
soon after it restarts."""

from __future__ import annotations

import time

import pytest
from google.api_core import exceptions

from django_q_cloudtasks.emulator import Emulator
from django_q_cloudtasks.gcp.client import EMULATOR_RECONNECT_MS, tasks_client
from tests.support.ports import free_port_pair

QUEUE = "projects/test-project/locations/europe-west1/queues/tests"


def test_a_client_of_an_emulator_that_restarted_reaches_the_new_one_within_a_second():
    port = free_port_pair()
    with Emulator(port=port) as first:
        first.ensure_queue(QUEUE)
        client = tasks_client(first.address)
        assert client.get_queue(name=QUEUE).name == QUEUE
    # Nothing listens now: the client's channel fails, and waits before trying again.
    with pytest.raises(exceptions.ServiceUnavailable):
        client.get_queue(name=QUEUE, retry=None, timeout=2)
    with Emulator(port=port) as second:
        second.ensure_queue(QUEUE)
        restarted = time.monotonic()
        while True:
            try:
                assert client.get_queue(name=QUEUE, retry=None, timeout=5).name == QUEUE
                break
            except exceptions.ServiceUnavailable:
                assert time.monotonic() - restarted < EMULATOR_RECONNECT_MS / 1000 + 1
                time.sleep(0.05)
        assert tasks_client(second.address) is client  # the same client, still
