"""The one table from error classes to HTTP statuses, and the JSON body every error response has.

Bodies are ``{"error": {"code": ..., "message": ...}}``: ``code`` is the error class's stable code,
``message`` is written for the caller (the value received and what is allowed). Any exception that is
not a ``SimsearchError`` with a status here is a bug or a broken deployment (``ConfigError``): it is
logged with its traceback and the caller gets a generic 500 with the request id, never its text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as NoRouteError

from simsearch.errors import (
    ImageTooLargeError,
    IndexUnavailableError,
    InvalidImageError,
    InvalidRequestError,
    InvalidVectorError,
    NotFoundError,
    SimsearchError,
    StorageUnavailableError,
    UnsupportedMediaTypeError,
)

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

HTTP_STATUS: Mapping[type[SimsearchError], HTTPStatus] = {
    InvalidRequestError: HTTPStatus.BAD_REQUEST,
    InvalidImageError: HTTPStatus.BAD_REQUEST,
    InvalidVectorError: HTTPStatus.BAD_REQUEST,
    UnsupportedMediaTypeError: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
    NotFoundError: HTTPStatus.NOT_FOUND,
    ImageTooLargeError: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    IndexUnavailableError: HTTPStatus.SERVICE_UNAVAILABLE,
    StorageUnavailableError: HTTPStatus.SERVICE_UNAVAILABLE,
}
"""Looked up along the class's MRO, so a subclass inherits its parent's status unless listed itself."""

RETRY_AFTER_SECONDS = 5
"""Sent with every 503; the adapters have already retried at once, so the next try should wait a little."""


def status_for(error: SimsearchError) -> HTTPStatus | None:
    """The status for ``error``'s class or its nearest listed ancestor; None for an unexpected one."""
    return next((HTTP_STATUS[cls] for cls in type(error).__mro__ if cls in HTTP_STATUS), None)


def error_response(
    status: HTTPStatus,
    *,
    code: str,
    message: str,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[dict[str, object]]:
    """The JSON error body, with ``Retry-After`` on a 503."""
    headers = dict(headers or {})
    if status == HTTPStatus.SERVICE_UNAVAILABLE:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=error_body(code=code, message=message, request_id=request_id),
        headers=headers,
    )


def error_body(*, code: str, message: str, request_id: str | None = None) -> dict[str, object]:
    """``{"error": {"code": ..., "message": ...}}``: every error response's body, the local gateway's too."""
    error: dict[str, str] = {"code": code, "message": message}
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


def register(
    app: APIGatewayRestResolver, *, logger: Logger, allowed_methods: Callable[[str], Sequence[str]]
) -> None:
    """Install the exception handlers that turn every error into one of the responses above.

    ``allowed_methods(path)`` lists the methods a path has, so a known path asked with another method
    gets 405 with ``Allow`` rather than 404.
    """

    @app.exception_handler(SimsearchError)  # type: ignore[untyped-decorator]  # Powertools leaves it untyped
    def expected(error: SimsearchError) -> Response[dict[str, object]]:
        status = status_for(error)
        if status is None:
            return internal_error(app, logger, error)
        logger.info("request refused", status=status.value, code=error.code, reason=str(error))
        return error_response(status, code=error.code, message=str(error))

    @app.exception_handler(NoRouteError)  # type: ignore[untyped-decorator]
    def no_route(_error: NoRouteError) -> Response[dict[str, object]]:
        event = app.current_event
        allowed = allowed_methods(event.path)
        if allowed and event.http_method not in allowed:
            message = f"{event.path} takes {', '.join(allowed)}, not {event.http_method}"
            return error_response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                code="method_not_allowed",
                message=message,
                headers={"Allow": ", ".join(allowed)},
            )
        message = f"no route for {event.http_method} {event.path}; GET /openapi.json lists the routes"
        return error_response(HTTPStatus.NOT_FOUND, code=NotFoundError.code, message=message)

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def unexpected(error: Exception) -> Response[dict[str, object]]:
        return internal_error(app, logger, error)


def internal_error(
    app: APIGatewayRestResolver, logger: Logger, error: Exception
) -> Response[dict[str, object]]:
    """Log ``error`` with its traceback and the request id; answer a 500 that says only the request id."""
    request_id = app.current_event.request_context.request_id
    logger.exception("unexpected error", request_id=request_id, error_type=type(error).__name__)
    message = f"an unexpected error occurred; quote request id {request_id} when reporting it"
    return error_response(
        HTTPStatus.INTERNAL_SERVER_ERROR, code=SimsearchError.code, message=message, request_id=request_id
    )
