"""Where images live: the object-store port and its S3 adapter (also used against moto locally).

Client failures become typed errors here, so ingestion can tell a missing object (permanent: the
image was deleted since the event) from throttling or an outage (retryable).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import percent_encode

from simsearch import sigv4_query
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
        self._presigner = GetPresigner(client)

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
        """The URL ``generate_presigned_url`` would make, for a fraction of its cost (``GetPresigner``)."""
        return self._presigner.url(bucket, key, ttl_seconds=ttl_seconds)

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


MAX_URL_LIFETIME_S = 7 * 24 * 3600
"""SigV4's longest presigned URL (``X-Amz-Expires``): seven days."""
REUSE_SHARE = 0.25
"""For what share of its ``ttl_seconds`` a presigned GET is handed out again."""
REUSED_URLS = 4096
"""Presigned GETs kept for reuse (~1.5 KB each with a session token)."""


def reuse_seconds(ttl_seconds: int) -> int:
    """How long a URL asked for ``ttl_seconds`` is handed out again; it is signed for that much longer."""
    return max(0, min(int(ttl_seconds * REUSE_SHARE), MAX_URL_LIFETIME_S - ttl_seconds))


@dataclass(frozen=True)
class _Prefix:
    """What every presigned GET of one bucket shares: the URL up to the key, that URL's path, and the
    ``host`` header it signs."""

    url: str
    path: str
    host: str


_PROBE_KEY = "presign-probe"


class GetPresigner:
    """Presigned GET URLs of one boto3 S3 client, the very URLs its ``generate_presigned_url`` makes.

    ``generate_presigned_url`` resolves the endpoint through S3's rule set and serialises the request
    anew for every URL (~0.25 ms), and botocore's SigV4 query signer alone still takes ~0.1 ms, while a
    search answers with up to a hundred URLs. All URLs of a bucket share everything up to the key, so
    the client presigns one probe key per bucket (the endpoint and addressing style it picks; botocore
    derives the signed ``host`` from it), and every later URL is that prefix, the key encoded as botocore
    encodes it, signed by ``simsearch.sigv4_query`` with the client's credentials, fetched per URL as the
    client does (expiring role credentials refresh). The probe is checked: signed that way at the
    instant the client signed it, it must be the client's URL byte for byte, signature included, else
    that bucket keeps the client's way. So does a client that does not sign with SigV4 (the query side's
    ``QUERY_S3`` does).

    A URL, once signed, is handed out again for a while (``REUSE_SHARE`` of ``ttl_seconds``): it is
    signed to live that much longer, so every URL still has at least ``ttl_seconds`` to live when given.
    A popular image then keeps one URL across searches, which the browser can cache, and costs no
    signing. The most recent ``REUSED_URLS`` URLs are kept; new credentials mean new URLs.
    """

    def __init__(self, client: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock
        self._issued: OrderedDict[tuple[str, str, int, Any], tuple[str, float]] = OrderedDict()
        signer = getattr(client, "_request_signer", None)  # botocore's, holding the client's credentials
        self._credentials = getattr(signer, "_credentials", None)
        self._region = client.meta.region_name
        fast = client.meta.config.signature_version == "s3v4" and self._credentials is not None
        self._fast = fast and self._region is not None
        self._prefixes: dict[str, _Prefix | None] = {}
        self._lock = threading.Lock()

    def url(self, bucket: str, key: str, *, ttl_seconds: int) -> str:
        """A URL that stays valid at least ``ttl_seconds`` from now (as long as the credentials do)."""
        credentials = self._credentials.get_frozen_credentials() if self._credentials is not None else None
        issued = (bucket, key, ttl_seconds, credentials)
        now, reuse = self._clock(), reuse_seconds(ttl_seconds)
        with self._lock:
            reused = self._issued.get(issued)
            if reused is not None and now < reused[1] + reuse:  # signed at reused[1]
                self._issued.move_to_end(issued)
                return reused[0]
        url = self._sign(bucket, key, ttl_seconds + reuse, credentials)
        with self._lock:
            self._issued[issued] = (url, now)
            self._issued.move_to_end(issued)
            while len(self._issued) > REUSED_URLS:
                self._issued.popitem(last=False)
        return url

    def _sign(self, bucket: str, key: str, lifetime: int, credentials: Any) -> str:
        prefix = self._prefix(bucket) if self._fast else None
        if prefix is None:
            return self._client_url(bucket, key, lifetime)
        return self._signed(prefix, percent_encode(key, safe="/~"), lifetime, credentials, now=_utc_now())

    def _prefix(self, bucket: str) -> _Prefix | None:
        """Every URL of ``bucket`` up to its key, or None when the client must presign them itself."""
        with self._lock:
            if bucket not in self._prefixes:
                self._prefixes[bucket] = self._probe(bucket)
            return self._prefixes[bucket]

    def _probe(self, bucket: str) -> _Prefix | None:
        credentials = self._credentials.get_frozen_credentials()  # type: ignore[union-attr]  # _fast
        made = self._client_url(bucket, _PROBE_KEY, 60)
        parts = urlsplit(made)
        signed_at = dict(parse_qsl(parts.query)).get("X-Amz-Date", "")
        if not parts.path.endswith(f"/{_PROBE_KEY}") or not signed_at:
            return None
        path = parts.path.removesuffix(_PROBE_KEY)
        url = f"{parts.scheme}://{parts.netloc}{path}"
        auth = S3SigV4QueryAuth(credentials, "s3", self._region, expires=60)
        host = auth.headers_to_sign(AWSRequest(method="GET", url=url))["host"]
        prefix = _Prefix(url=url, path=path, host=host)
        now = datetime.strptime(signed_at, sigv4_query.TIMESTAMP)
        return prefix if self._signed(prefix, _PROBE_KEY, 60, credentials, now=now) == made else None

    def _signed(self, prefix: _Prefix, key: str, ttl_seconds: int, credentials: Any, *, now: datetime) -> str:
        return sigv4_query.presigned_get(
            base=prefix.url + key,
            path=prefix.path + key,
            host=prefix.host,
            region=self._region,
            credentials=credentials,
            expires=ttl_seconds,
            now=now,
        )

    def _client_url(self, bucket: str, key: str, ttl_seconds: int) -> str:
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
        return url


def _utc_now() -> datetime:
    """The signing time, naive UTC as botocore's signers read it (the probe signs at the client's own
    instant instead, read from its URL)."""
    return datetime.now(UTC).replace(tzinfo=None)


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
