"""The OpenAPI document is valid, and the API behind the local server does what it says.

Schemathesis generates requests from ``openapi.json`` (valid and invalid ones; image bodies are real
images of random pixels or random bytes) and sends them over HTTP
to ``localmode.api_gateway`` serving the real ``handlers.query.handler``, backed by the node and moto
S3. Each response must not be a server error and must conform to the document: a declared status, the
declared content type and headers, and a body matching the declared schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from PIL import Image
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from handlers import query
from handlers.api_input import DOCUMENT
from localmode.api_gateway import running
from simsearch.formats import FORMATS
from tests import query_fixtures
from tests.image_factories import encode
from tests.query_fixtures import QueryApi

MAX_EXAMPLES = 100  # per operation in the fuzzing phase: about a minute on 2 cores

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# The fixtures this module uses (a `pytest_plugins` line in tests/conftest.py would make this unnecessary).
embedder, corpus, query_api = (
    query_fixtures.embedder,
    query_fixtures.corpus,
    query_fixtures.query_api,
)


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.1.")


def test_the_document_describes_every_route_of_the_handler() -> None:
    routes = {
        (route.method, route.rule.pattern) for route in query.app._static_routes + query.app._dynamic_routes
    }
    assert len(routes) == sum(len(operations) for operations in DOCUMENT["paths"].values())


@pytest.fixture(scope="module")
def api_url(query_api: QueryApi) -> Iterator[str]:  # noqa: ARG001 - the handler's world must be set up
    """A local server running the query handler over the test corpus."""
    with running(query.handler) as server:
        yield server.url


@st.composite
def encoded_images(draw: st.DrawFn, image_format: str) -> bytes:
    """A real image of random pixels and size in ``image_format``, so fuzzed searches reach the model."""
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), image_format)


for image_format in FORMATS:
    schemathesis.openapi.media_type(
        image_format.media_type, st.one_of(encoded_images(image_format.pillow), st.binary(max_size=256))
    )

# Loaded at import, not with `schemathesis.pytest.from_fixture`: its lazy loader writes `node._nodeid`,
# which pytest 9 no longer has. The base URL comes from the fixture instead.
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.generation.update(max_examples=MAX_EXAMPLES)


@pytest.mark.integration
@pytest.mark.slow
@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_and_every_response_conforms(case: Case[Any], api_url: str) -> None:
    case.call_and_validate(base_url=api_url, checks=CHECKS)
