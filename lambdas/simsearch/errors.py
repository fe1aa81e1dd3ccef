"""One small hierarchy of errors raised on purpose; any other exception is a bug.

Each error carries a stable ``code`` (used in API error bodies, failure records and metrics) and a
``retryable`` flag: ingestion retries only retryable failures, the API maps each class to one HTTP
status in ``handlers/http_errors.py``.
"""

from __future__ import annotations

from typing import ClassVar


class SimsearchError(Exception):
    """Base of every error raised on purpose."""

    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False


class ConfigError(SimsearchError):
    """Settings or a model manifest are missing or inconsistent: fix the deployment, not the input."""

    code = "config_error"


class InvalidImageError(SimsearchError):
    """The bytes are not a decodable image we accept (empty, truncated, SVG, text, decompression bomb)."""

    code = "invalid_image"


class UnsupportedImageError(InvalidImageError):
    """A real image in a format we do not decode (HEIC, SVG, JPEG XL, ...; ``simsearch.formats`` has ours)."""

    code = "unsupported_image"


class ImageTooLargeError(SimsearchError):
    """The encoded image exceeds the byte limit, or its pixel count exceeds the pixel limit."""

    code = "image_too_large"


class InvalidVectorError(SimsearchError):
    """A vector has the wrong dimension or is not finite; raised before anything is written."""

    code = "invalid_vector"


class InvalidRequestError(SimsearchError):
    """A request parameter is malformed or out of range; the message names it."""

    code = "invalid_request"


class UnsupportedMediaTypeError(InvalidRequestError):
    """A request body of a content type the endpoint does not take; the message lists the accepted ones."""

    code = "unsupported_media_type"


class InvalidNotificationError(SimsearchError):
    """A queue message that is not an S3 event notification we can read; acknowledged, never retried."""

    code = "invalid_notification"


class NotFoundError(SimsearchError):
    """The image id, object key or index does not exist."""

    code = "not_found"


class IndexUnavailableError(SimsearchError):
    """The vector index could not be reached or refused the request for now (timeouts, 429, 5xx)."""

    code = "index_unavailable"
    retryable = True


class StorageUnavailableError(SimsearchError):
    """The object store could not be reached or throttled us; worth retrying."""

    code = "storage_unavailable"
    retryable = True
