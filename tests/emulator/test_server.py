"""The emulator as one object, started and stopped in a process that keeps using it."""

from __future__ import annotations

import pytest
from google.api_core import exceptions

from django_q_cloudtasks.client import get_client
from django_q_cloudtasks.emulator import Emulator
from tests.support.ports import free_port_pair

QUEUE = "projects/test-project/locations/europe-west1/queues/tests"


def test_an_emulator_started_again_on_an_address_answers_its_clients_at_once():
    port = free_port_pair()
    with Emulator(port=port) as first:
        first.ensure_queue(QUEUE)
        assert get_client(first.address).get_queue(name=QUEUE).name == QUEUE
    address = first.address
    # Nothing listens now: the client's channel fails, and backs off before trying again.
    with pytest.raises(exceptions.ServiceUnavailable):
        get_client(address).get_queue(name=QUEUE, retry=None, timeout=2)
    with Emulator(port=port) as second:
        second.ensure_queue(QUEUE)
        assert get_client(address).get_queue(name=QUEUE, retry=None, timeout=5).name == QUEUE
