"""Schemathesis over the published OpenAPI document: generated requests to every operation, with the response
checks on (no 5xx, documented status codes and content types, responses that match their schemas).

Requests carry a real admin token (agent routes: a real agent token) on a store with a fleet, a tenant and a
job, so most requests get past authentication and exercise the routes themselves. Bounded to a few examples per
operation to keep the suite fast.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def seeded_api(api):
    api.import_fleet()
    acme = api.tenant("acme")
    api.agent("texas")
    api.submit(acme, {"id": "seed", "accelerator": "H100-SXM", "gpus": 64, "work": "2d"})
    api.cycle()
    return api


def test_api_conforms_to_its_openapi(seeded_api):
    schema = schemathesis.openapi.from_asgi("/openapi.json", seeded_api.app)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 30
    for op in operations:
        _fuzz(op, seeded_api.agents["texas"][0] if op.path.startswith("/v1/agent/") else seeded_api.admin)


def _fuzz(op, headers):
    """A few generated requests to one operation, each response checked."""

    @given(case=op.as_strategy())
    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def check(case):
        if case.path.endswith("/events") and case.query:
            case.query["wait_s"] = 0  # a long poll only waits; it has nothing else to test here
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()
