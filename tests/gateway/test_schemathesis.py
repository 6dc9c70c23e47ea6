"""schemathesis against the gateway's own OpenAPI schema, with valid tokens: no 5xx, every response as documented."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.gateway.conftest import PASSWORDS, Stack
from tests.mqtt import publish
from tests.payloads import now_ms, occupancy

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def exercise(operation: schemathesis.APIOperation[Any, Any, Any, Any], credentials: dict[str, Any]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=CHECKS, **credentials)

    check()


def test_gateway_openapi_contract(stack: Stack) -> None:
    """Every operation, generated from the schema (schemathesis' pytest loader does not run on pytest 9)."""
    publish(stack.broker.port, [("stations/v1/PL-KT-001/status", {"state": "online"}),
                                ("stations/v1/PL-KT-001/occupancy", occupancy(1, 4, ts=now_ms() - 1000))])
    schema = schemathesis.openapi.from_url(f"{stack.gateway.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 10
    token = {"headers": {"Authorization": stack.operator.headers["Authorization"]}}
    station = {"auth": ("PL-KT-001", PASSWORDS["PL-KT-001"])}  # so generated readings reach validation
    for operation in operations:
        exercise(operation, station if operation.path.endswith("/telemetry") else token)
