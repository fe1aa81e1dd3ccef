"""Presigned S3 GET URLs signed here, by AWS Signature Version 4 in the query string, as botocore's
``S3SigV4QueryAuth`` signs them.

A search answers with up to ``MAX_RESULTS`` (100) presigned URLs. botocore signs one in ~0.1 ms, most of
it building, parsing and re-encoding a request object, so a hundred results cost ~10 ms. The signature
itself is a canonical request hashed, then an HMAC with a signing key that stays the same for a whole
UTC day, region and secret (so it is derived once a day, not per URL). The algorithm is AWS's
("Authenticating Requests: Using Query Parameters", Amazon S3 API Reference).

``simsearch.storage.GetPresigner`` uses this signer for a bucket only after the URL it makes for a
probe key equals, byte for byte and signature included, the one the S3 client makes at the same
instant; otherwise the client signs. ``tests/unit/test_storage_presign.py`` holds the two equal over
keys with every special character, regions, endpoints and session tokens.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from functools import lru_cache
from typing import Any

from botocore.utils import percent_encode

ALGORITHM = "AWS4-HMAC-SHA256"
TIMESTAMP = "%Y%m%dT%H%M%SZ"
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def presigned_get(
    *, base: str, path: str, host: str, region: str, credentials: Any, expires: int, now: datetime
) -> str:
    """``base``, the object's URL without a query (its key encoded as the client encodes it), signed for
    a GET with ``credentials`` (botocore's frozen ones) at ``now`` (naive UTC), valid for ``expires``
    seconds. ``path`` is ``base``'s path and ``host`` the host header it signs, both as botocore
    derives them."""
    timestamp = now.strftime(TIMESTAMP)
    day = timestamp[:8]  # YYYYMMDD
    scope = f"{day}/{region}/s3/aws4_request"
    encoded = [  # in botocore's order; only the credential and the token have characters to encode
        f"X-Amz-Algorithm={ALGORITHM}",
        f"X-Amz-Credential={_encoded(f'{credentials.access_key}/{scope}')}",
        f"X-Amz-Date={timestamp}",
        f"X-Amz-Expires={expires:d}",
        "X-Amz-SignedHeaders=host",
    ]
    if credentials.token is not None:
        encoded.append(f"X-Amz-Security-Token={_encoded(credentials.token)}")
    canonical = "\n".join(
        ("GET", path, "&".join(sorted(encoded)), f"host:{host}\n", "host", _UNSIGNED_PAYLOAD)
    )
    to_sign = "\n".join((ALGORITHM, timestamp, scope, hashlib.sha256(canonical.encode()).hexdigest()))
    key = _signing_key(credentials.secret_key, day, region)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{base}?{'&'.join(encoded)}&X-Amz-Signature={signature}"


@lru_cache(maxsize=16)
def _encoded(value: str) -> str:
    """A credential scope or session token encoded for the query string: the same for hours, and a
    session token is ~1 KB."""
    encoded: str = percent_encode(value)
    return encoded


@lru_cache(maxsize=16)
def _signing_key(secret: str, day: str, region: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
