"""Schemathesis fuzzing of the live service from its own OpenAPI schema.

Every operation gets generated requests, valid and invalid (wrong types, missing parts, odd
headers, random bytes as images); every response must be a non-5xx whose status code,
content type, headers and body conform to the schema. Bounded to run in well under a minute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

if TYPE_CHECKING:
    from live_server import LiveServer

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 100


def _served_schema() -> dict:
    """The OpenAPI document of a default-settings app, built without loading any model.

    (schemathesis' lazy fixture loader does not work with this pytest; the test checks that
    the live server serves exactly this document.)
    """
    from product_classifier.serving.app import create_app
    from product_classifier.serving.settings import ServeSettings

    return create_app(ServeSettings()).openapi()


OPENAPI = _served_schema()
schema = schemathesis.openapi.from_dict(OPENAPI)


def test_the_fuzzed_schema_is_the_served_one(server: LiveServer) -> None:
    assert server.client().get("/openapi.json").json() == OPENAPI


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=2000,  # ms per request: the tiny contract model answers in a few
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run: CI failures reproduce
    database=None,
)
def test_api_conforms_to_its_schema(case: schemathesis.Case, server: LiveServer) -> None:
    # The schema can say "binary", not "a decodable image": random bytes that fit the schema
    # are rightly refused with 415, so "schema-valid data must be accepted" does not apply.
    excluded = [positive_data_acceptance]
    if case.operation.label == "POST /v1/predict/batch":
        # Any multipart part is bytes, so a "wrong type" part is just an undecodable file, and
        # the batch answers 200 with a per-file error for it, by design.
        excluded.append(negative_data_rejection)
    case.call_and_validate(base_url=server.base_url, excluded_checks=excluded, timeout=30)
