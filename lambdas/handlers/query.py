"""The query Lambda: the routes of ``openapi.json`` over one ``SearchService`` per container.

Routes only translate: ``api_input`` reads requests into typed queries, the service decides, and
``http_errors`` turns every error into its status. Local mode serves this same ``handler`` through
``localmode.api_gateway``, so there is one implementation of the API.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from handlers import api_input, http_errors
from simsearch import bootstrap
from simsearch.search import SearchService
from simsearch.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service="query")
copy_config_to_registered_loggers(source_logger=logger, include={"simsearch"})

# The resolver exists before the first request builds the settings, so its one setting is read here. Any
# origin by default: the API takes no cookies or credentials, and the web page may be served from anywhere.
CORS_ORIGIN = os.environ.get(Settings.env_name("cors_origin"), Settings.cors_origin)
app = APIGatewayRestResolver(
    cors=CORSConfig(allow_origin=CORS_ORIGIN, expose_headers=["Retry-After"], max_age=600)
)
http_errors.register(app, logger=logger, allowed_methods=api_input.allowed_methods)


@cache
def service() -> SearchService:
    """The composition root, once per container: loading the model is most of a cold start."""
    return bootstrap.search(Settings.from_env())


if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "provisioned-concurrency":
    # Lambda initialises a provisioned environment before any request reaches it: build the root now, or
    # its first request would still load the model. If that fails, the first request builds it (and
    # answers the error as the API does); the environment is not lost.
    try:
        service()
    except Exception:
        logger.exception("the query service could not be built at initialisation; the first request will")


@app.post("/search")
def search() -> dict[str, Any]:
    query, options = api_input.search_request(app.current_event)
    return asdict(service().search(query, options))


@app.post("/uploads")
def uploads() -> dict[str, Any]:
    return asdict(service().upload_form())


@app.get("/images/<image_id>")
def image(image_id: str) -> dict[str, Any]:
    return asdict(service().image(api_input.image_id(image_id)))


@app.get("/images/<image_id>/duplicates")
def image_duplicates(image_id: str) -> dict[str, Any]:
    checked = api_input.image_id(image_id)
    threshold = api_input.duplicates_threshold(app.current_event)
    return asdict(service().duplicates(checked, threshold=threshold))


@app.get("/health")
def health() -> dict[str, Any]:
    return asdict(service().health())


@app.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return api_input.DOCUMENT


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
