"""Where images live: the object-store port and its S3 adapter (also used against moto locally).

Client failures become typed errors here, so ingestion can tell a missing object (permanent: the
image was deleted since the event) from throttling or an outage (retryable).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from simsearch.errors import ConfigError, ImageTooLargeError, NotFoundError, StorageUnavailableError

_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_DENIED = {"403", "AccessDenied", "Forbidden", "KMS.AccessDeniedException"}


@dataclass(frozen=True, kw_only=True)
class StoredObject:
    """An object's identity and headers; ``etag`` is unquoted, ``metadata`` holds ``x-amz-meta-*``."""

    bucket: str
    key: str
    etag: str
    size: int
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class ImageStore(Protocol):
    def head(self, bucket: str, key: str) -> StoredObject:
        """The object's headers; ``NotFoundError`` when it does not exist (any more)."""
        ...

    def read(self, obj: StoredObject) -> bytes:
        """The bytes of exactly the version ``head`` saw (``If-Match`` on its ETag)."""
        ...

    def fetch(self, bucket: str, key: str, *, max_bytes: int) -> tuple[StoredObject, bytes | None]:
        """What ``head`` and ``read`` give, in one round trip (a GET): the headers and the bytes of one
        version, the bytes left unread (None) when there are more than ``max_bytes`` of them.

        ``NotFoundError`` when the object does not exist (any more).
        """
        ...

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        """Every object under ``prefix``, for backfills."""
        ...

    def presigned_get(self, bucket: str, key: str, *, ttl_seconds: int) -> str: ...

    def presigned_post(self, bucket: str, key: str, *, max_bytes: int, ttl_seconds: int) -> dict[str, Any]:
        """A form (``url`` + ``fields``) that uploads one image of at most ``max_bytes`` to ``key``."""
        ...

    def close(self) -> None: ...


class S3ImageStore:
    """``ImageStore`` over a boto3 S3 client (retries and timeouts are the client's configuration)."""

    def __init__(self, client: Any) -> None:
        self._s3 = client

    def head(self, bucket: str, key: str) -> StoredObject:
        with _translated(bucket, key):
            response = self._s3.head_object(Bucket=bucket, Key=key)
        return _stored(bucket, key, response, size=response["ContentLength"])

    def read(self, obj: StoredObject) -> bytes:
        with _translated(obj.bucket, obj.key):
            response = self._s3.get_object(Bucket=obj.bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')
            body: bytes = response["Body"].read(obj.size + 1)
        if len(body) > obj.size:  # the object grew between head and get: never trust a stale size
            raise ImageTooLargeError(f"s3://{obj.bucket}/{obj.key} changed size while being read")
        return body

    def fetch(self, bucket: str, key: str, *, max_bytes: int) -> tuple[StoredObject, bytes | None]:
        with _translated(bucket, key):
            response = self._s3.get_object(Bucket=bucket, Key=key)
            stream = response["Body"]
            try:
                obj = _stored(bucket, key, response, size=response["ContentLength"])
                body: bytes | None = stream.read(obj.size + 1) if obj.size <= max_bytes else None
            finally:
                stream.close()  # an unread body is dropped with its connection
        if body is not None and len(body) > obj.size:  # a lying Content-Length: never trust a stale size
            raise ImageTooLargeError(f"s3://{bucket}/{key} changed size while being read")
        return obj, body

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        with _translated(bucket, prefix):
            for page in pages:
                for item in page.get("Contents", []):
                    yield StoredObject(
                        bucket=bucket, key=item["Key"], etag=item["ETag"].strip('"'), size=item["Size"]
                    )

    def presigned_get(self, bucket: str, key: str, *, ttl_seconds: int) -> str:
        url: str = self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
        return url

    def presigned_post(self, bucket: str, key: str, *, max_bytes: int, ttl_seconds: int) -> dict[str, Any]:
        """S3 itself enforces the size and an ``image/*`` content type (a POST policy has no "one of")."""
        conditions: list[Any] = [
            ["content-length-range", 1, max_bytes],
            ["starts-with", "$Content-Type", "image/"],
        ]
        post: dict[str, Any] = self._s3.generate_presigned_post(
            Bucket=bucket, Key=key, Conditions=conditions, ExpiresIn=ttl_seconds
        )
        return post

    def close(self) -> None:
        """Close the client's connection pool."""
        self._s3.close()


def _stored(bucket: str, key: str, response: Mapping[str, Any], *, size: int) -> StoredObject:
    return StoredObject(
        bucket=bucket,
        key=key,
        etag=str(response["ETag"]).strip('"'),
        size=size,
        content_type=response.get("ContentType"),
        metadata=dict(response.get("Metadata", {})),
    )


@contextmanager
def _translated(bucket: str, key: str) -> Iterator[None]:
    where = f"s3://{bucket}/{key}"
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in _MISSING or code == "PreconditionFailed":
            raise NotFoundError(f"{where} does not exist (or changed since it was announced)") from error
        if code in _DENIED:
            raise ConfigError(f"access to {where} denied ({code}); check the function's role") from error
        raise StorageUnavailableError(f"S3 refused {where}: {code or error}") from error
    except BotoCoreError as error:
        raise StorageUnavailableError(f"S3 unreachable for {where}: {error}") from error
