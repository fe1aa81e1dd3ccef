"""The query function answers browsers with the origin the deployment allows (``SIMSEARCH_CORS_ORIGIN``).

The resolver is built when the handler module is imported, so each case imports it in a fresh process
with its own environment, as a Lambda container would.
"""

from __future__ import annotations

import pytest

from tests.cold_import import last_json_line

ANSWER = """
import json
from handlers import query
from tests import api_events
headers = {"Origin": "https://app.example.org", "Access-Control-Request-Method": "POST"}
preflight = api_events.call(query.handler, api_events.request("OPTIONS", "/search", headers=headers))
document = api_events.call(query.handler, api_events.request("GET", "/openapi.json", headers=headers))
print(json.dumps({
    "preflight": [preflight.status, preflight.headers.get("access-control-allow-origin")],
    "document": [document.status, document.headers.get("access-control-allow-origin")],
}))
"""


def answers_with(environment: dict[str, str]) -> dict[str, list[object]]:
    answer: dict[str, list[object]] = last_json_line(
        ANSWER, {"POWERTOOLS_LOG_LEVEL": "WARNING", **environment}, unset={"SIMSEARCH_CORS_ORIGIN"}
    )
    return answer


@pytest.mark.parametrize(
    ("environment", "origin"),
    [
        ({}, "*"),
        ({"SIMSEARCH_CORS_ORIGIN": "https://app.example.org"}, "https://app.example.org"),
    ],
)
def test_preflights_and_answers_name_the_configured_origin(environment: dict[str, str], origin: str) -> None:
    answers = answers_with(environment)
    assert answers["preflight"] == [204, origin]
    assert answers["document"] == [200, origin]
