"""A provisioned query environment builds its service while Lambda initialises it, before any request.

Lambda tells how it initialises an environment in ``AWS_LAMBDA_INITIALIZATION_TYPE``. The handler module
is imported in a fresh process per case, as a Lambda container does, with ``bootstrap.search`` replaced
by a stand-in that counts its calls (and fails, when asked to).
"""

from __future__ import annotations

import pytest

from tests.cold_import import last_json_line

IMPORT = """
import json, os
from simsearch import bootstrap
built = []
def search(settings):
    built.append(settings.images_bucket)
    if os.environ.get("FAIL_BUILD"):
        raise RuntimeError("the domain is not reachable yet")
    return object()
bootstrap.search = search
from handlers import query
at_init = list(built)
try:
    query.service()  # what the first request does
except RuntimeError:
    pass
print(json.dumps({"at_init": at_init, "after_first_request": built}))
"""


def import_handler(**environment: str) -> dict[str, list[str]]:
    answer: dict[str, list[str]] = last_json_line(
        IMPORT,
        {
            "POWERTOOLS_LOG_LEVEL": "CRITICAL",
            "SIMSEARCH_MODEL_DIR": "/nonexistent",
            "SIMSEARCH_IMAGES_BUCKET": "images",
            **environment,
        },
        unset={"AWS_LAMBDA_INITIALIZATION_TYPE"},
    )
    return answer


@pytest.mark.parametrize("initialisation", ["on-demand", "snap-start", None])
def test_an_environment_initialised_on_demand_builds_the_service_on_its_first_request(
    initialisation: str | None,
) -> None:
    environment = {"AWS_LAMBDA_INITIALIZATION_TYPE": initialisation} if initialisation else {}
    assert import_handler(**environment) == {"at_init": [], "after_first_request": ["images"]}


def test_a_provisioned_environment_builds_the_service_at_initialisation_once() -> None:
    answer = import_handler(AWS_LAMBDA_INITIALIZATION_TYPE="provisioned-concurrency")
    assert answer == {"at_init": ["images"], "after_first_request": ["images"]}


def test_a_provisioned_environment_whose_build_fails_still_starts_and_retries_on_the_first_request() -> None:
    answer = import_handler(AWS_LAMBDA_INITIALIZATION_TYPE="provisioned-concurrency", FAIL_BUILD="1")
    assert answer == {"at_init": ["images"], "after_first_request": ["images", "images"]}
